"""Differential fuzzing of every layer type sparknet supports against real Caffe.

With SPARKNET_ORACLE_REFERENCES=DIR the first two matching cases of each type are written
there as reference cases (tests/data/caffe_layer_references holds those of the Caffe 1.0
types added for the whole registry, compared in the default suite)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparknet.errors import SparknetError
from tests.caffe.oracle_cases import Arrays, NetCase, compare_net, run_sparknet_net, save_case

from .conftest import case_rng, record, setting
from .generators import GENERATORS, finish
from .oracle import run_oracle

pytestmark = pytest.mark.caffe_oracle


def _cases(layer_type: str, count: int) -> tuple[list[NetCase], dict[str, str]]:
    cases, rejected = [], {}
    for i in range(count):
        rng = case_rng("layer", layer_type, i)
        case = GENERATORS[layer_type](rng)
        case.name = f"{layer_type.lower()}_{i:03d}"
        error = finish(case, rng)
        if error is not None:
            rejected[case.name] = error
        cases.append(case)
    return cases, rejected


@pytest.mark.parametrize("layer_type", sorted(GENERATORS))
def test_layer_matches_caffe(layer_type: str, oracle_ready: None, tmp_path: Path) -> None:
    cases, rejected = _cases(layer_type, setting("SPARKNET_ORACLE_CASES", 12))
    caffe = run_oracle(list(cases), tmp_path)
    problems: list[str] = []
    mismatched: list[tuple[NetCase, Arrays, list[str]]] = []
    references = os.environ.get("SPARKNET_ORACLE_REFERENCES")  # a folder for reference cases
    forward = backward = both_refused = 0
    for case in cases:
        result = caffe[case.name]
        if isinstance(result, str):
            if case.name in rejected:
                both_refused += 1  # an invalid draw: neither runs it
                continue
            problems.append(f"{case.name}: sparknet runs it but {result} [{case.note}]")
            continue
        if case.name in rejected:
            found = [f"sparknet refuses it: {rejected[case.name]}"]
        else:
            try:
                found = compare_net(case, run_sparknet_net(case), result)
            except (SparknetError, RuntimeError) as err:  # built, but fails when run
                found = [f"sparknet fails: {err}"]
        forward += 1
        backward += case.backward
        if found:
            mismatched.append((case, result, found))
            problems += [f"{case.name}: {p} [{case.note}]" for p in found]
        elif references and forward <= 2:  # the first two matching cases of each type
            save_case(case, result, Path(references), found="reference: real Caffe's results")
    record({"kind": "layer", "type": layer_type, "generated": len(cases), "forward": forward,
            "backward": backward, "both_refused": both_refused,
            "mismatched": len({p.split(":")[0] for p in problems})}, mismatched)
    assert forward > 0, f"no {layer_type} configuration ran in both: {sorted(caffe.values())}"
    assert not problems, "\n".join(problems)
