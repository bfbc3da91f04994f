"""LSTM and RNN without ``expose_hidden`` over several forward and backward passes in a row,
against real Caffe: each pass starts from the state the previous one ended with (gated by
``cont`` at t = 0, no gradient into the previous pass), in TRAIN (with a step of the weights
after each pass, as a solver's iterations) and TEST, with the batch N changing between
passes now and then (Caffe then reads its reshaped state blobs: a prefix, or zeros once they
grow).

With SPARKNET_ORACLE_REFERENCES=DIR the first three matching cases of each type that step
the weights or change the batch are written there as reference cases (the default suite
compares those in tests/data/caffe_layer_references)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from sparknet.errors import SparknetError
from tests.caffe.oracle_cases import Arrays, NetCase, compare_net, run_sparknet_net, save_case

from .conftest import case_rng, record, setting
from .generators import Rng, _shape, _single, finish, values
from .oracle import run_oracle

pytestmark = pytest.mark.caffe_oracle


def passes_case(kind: str, rng: Rng) -> NetCase:
    """2-4 passes of one LSTM/RNN layer; the batch of pass 1 is the built one."""
    steps, hidden, first = (int(v) for v in rng.integers(1, 4, size=3))
    features = _shape(rng, int(rng.integers(1, 3)), 1, 3)
    static = int(rng.integers(1, 4)) if rng.random() < 0.3 else 0
    shapes = [(steps, first, *features), (steps, first)] + ([(first, static)] if static else [])
    case = _single(kind, rng, shapes, f"recurrent_param {{ num_output: {hidden} }}")
    case.passes = int(rng.integers(2, 5))
    case.lr = 0.1 if case.phase == "TRAIN" and rng.random() < 0.6 else 0.0
    case.note += f" passes={case.passes} lr={case.lr}"
    batches = [first] + [first if rng.random() < 0.6 else int(rng.integers(1, 5))
                         for _ in range(case.passes - 1)]
    case.note += f" batches={batches}"
    arrays: Arrays = {}
    for k, n in enumerate(batches, 1):
        # cont: mostly 1 at t = 0 (the carried state counts), now and then 0 (a new sequence)
        cont = (rng.random((steps, n)) > 0.2).astype(np.float32)
        cont[0] = (rng.random(n) > 0.3).astype(np.float32)
        arrays[f"pass{k}:input:x0"] = values(rng, (steps, n, *features), False)
        arrays[f"pass{k}:input:x1"] = cont
        if static:
            arrays[f"pass{k}:input:x2"] = values(rng, (n, static), False)
        arrays[f"pass{k}:top_diff:y0"] = rng.normal(size=(steps, n, hidden)).astype(np.float32)
    case.arrays = arrays
    return case


def _cases(kind: str, count: int) -> tuple[list[NetCase], dict[str, str]]:
    cases, rejected = [], {}
    for i in range(count):
        rng = case_rng("passes", kind, i)
        case = passes_case(kind, rng)
        case.name = f"{kind.lower()}_passes_{i:03d}"
        per_pass = dict(case.arrays)
        error = finish(case, rng)  # the weights (and pass 1's gradients, dropped here)
        if error is not None:
            rejected[case.name] = error
        case.arrays = {**{k: v for k, v in case.arrays.items() if k.startswith("param:")},
                       **per_pass}
        cases.append(case)
    return cases, rejected


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_state_carried_over_passes_matches_caffe(kind: str, oracle_ready: None,
                                                 tmp_path: Path) -> None:
    cases, rejected = _cases(kind, setting("SPARKNET_ORACLE_CASES", 12))
    caffe = run_oracle(list(cases), tmp_path)
    problems: list[str] = []
    mismatched = []
    compared = saved = 0
    references = os.environ.get("SPARKNET_ORACLE_REFERENCES")
    for case in cases:
        result = caffe[case.name]
        if isinstance(result, str) or case.name in rejected:
            problems.append(f"{case.name}: {result if isinstance(result, str) else ''} "
                            f"{rejected.get(case.name, '')} [{case.note}]")
            continue
        try:
            found = compare_net(case, run_sparknet_net(case), result)
        except (SparknetError, RuntimeError) as err:
            found = [f"sparknet fails: {err}"]
        compared += 1
        if found:
            mismatched.append((case, result, found))
            problems += [f"{case.name}: {p} [{case.note}]" for p in found]
        elif references and saved < 3 and (case.lr or len(set(case.note.split("batches=")[1]
                                                                .strip("[]").split(", "))) > 1):
            save_case(case, result, Path(references), found="reference: real Caffe's results")
            saved += 1
    record({"kind": "layer", "type": f"{kind} (state carried over 2-4 passes)",
            "generated": len(cases), "forward": compared, "backward": compared,
            "both_refused": 0, "mismatched": len({p.split(":")[0] for p in problems})},
           mismatched)
    assert compared > 0
    assert not problems, "\n".join(problems)
