"""Caffe's solver state (``.solverstate``) against sparknet's, for every solver type: real
Caffe snapshots after 2 of 4 iterations; its iteration and history blobs must equal
sparknet's solver state after the same 2 iterations, and a CaffeSolver restored from Caffe's
snapshot (with Caffe's weights of iteration 2) must reach Caffe's weights of iteration 4.
With SPARKNET_SOLVERSTATE_REFERENCE=DIR the Nesterov case is kept there for the default suite
(tests/data/caffe_solverstate)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet.caffe import build_net, make_optimizer, parse_net_text, parse_solver_text
from sparknet.caffe.solver_state import (
    read_solverstate,
    restore_solverstate,
    solverstate_message,
)
from tests.caffe.oracle_cases import (
    SOLVER_RTOL,
    SolverCase,
    mismatch,
    params_by_layer,
    step_solver,
)

from .conftest import case_rng
from .oracle import run_request
from .solver_generators import SOLVER_TYPES, solver_case

pytestmark = pytest.mark.caffe_oracle
SNAPSHOT_AT, ITERATIONS = 2, 4


def _cases() -> list[SolverCase]:
    cases = []
    for kind in SOLVER_TYPES:
        for attempt in range(20):  # a draw both refuse (momentum with AdaGrad) is redrawn
            case = solver_case(case_rng("solverstate", kind, attempt), kind, "multistep")
            try:
                parse_solver_text(case.solver)
            except Exception:  # noqa: BLE001 - any refusal: draw again
                continue
            case.name = f"state_{kind.lower()}"
            case.solver += '\nsnapshot_prefix: "snap"\n'
            case.iterations = ITERATIONS
            cases.append(case)
            break
    return cases


def _request(folder: Path, cases: list[SolverCase]) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = []
    for case in cases:
        np.savez(folder / f"{case.name}.npz", **case.arrays)  # type: ignore[arg-type]
        net = f"{case.name}.net.prototxt"
        (folder / net).write_text(case.net)
        (folder / f"{case.name}.solver.prototxt").write_text(f'net: "{net}"\n{case.solver}')
        entries.append({"name": case.name, "kind": "solver", "arrays": f"{case.name}.npz",
                        "solver": f"{case.name}.solver.prototxt", "iterations": ITERATIONS,
                        "snapshot_at": SNAPSHOT_AT})
    return entries


def test_solver_state_matches_caffe(oracle_ready: None, tmp_path: Path) -> None:
    cases = _cases()
    assert len(cases) == len(SOLVER_TYPES)
    caffe = run_request(tmp_path, _request(tmp_path, cases))
    problems = []
    for case in cases:
        result = caffe[case.name]
        assert not isinstance(result, str), f"{case.name}: {result}"
        state = read_solverstate(tmp_path / "out" / f"{case.name}.solverstate")
        assert state.iteration == SNAPSHOT_AT
        config = parse_solver_text(case.solver)
        # 1. sparknet's own state after the same iterations equals Caffe's snapshot.
        net = build_net(parse_net_text(case.net), phase="TRAIN",
                        weights=params_by_layer(case.arrays))
        solver = make_optimizer(net, config)
        step_solver(case, net, solver, 1, SNAPSHOT_AT)
        ours = read_back(solverstate_message(solver, net).SerializeToString(), tmp_path)
        assert len(ours.history) == len(state.history), case.name
        assert (ours.iteration, ours.current_step) == (state.iteration, state.current_step)
        for i, (a, b) in enumerate(zip(ours.history, state.history, strict=True)):
            problem = mismatch(a.reshape(b.shape), b, f"{case.name} history {i}",
                               rtol=SOLVER_RTOL)
            if problem:
                problems.append(problem)
        # 2. Restored from Caffe's snapshot and its weights, sparknet goes on as Caffe does.
        restored = build_net(parse_net_text(case.net), phase="TRAIN",
                             weights=params_by_layer(result, f"iter{SNAPSHOT_AT}:param:"))
        again = make_optimizer(restored, config)
        restore_solverstate(again, restored, state)
        step_solver(case, restored, again, SNAPSHOT_AT + 1, ITERATIONS)
        for layer, blobs in restored.caffe_blobs().items():
            for i, blob in enumerate(blobs):
                key = f"iter{ITERATIONS}:param:{layer}:{i}"
                problem = mismatch(blob, result[key], f"{case.name} {key}", rtol=SOLVER_RTOL)
                if problem:
                    problems.append(problem)
        folder = os.environ.get("SPARKNET_SOLVERSTATE_REFERENCE")
        if folder and case.name == "state_nesterov":  # momentum: history matters
            keep = Path(folder)
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp_path / "out" / f"{case.name}.solverstate",
                        keep / "nesterov.solverstate")
            (keep / "nesterov.net.prototxt").write_text(case.net)
            (keep / "nesterov.solver.prototxt").write_text(case.solver)
            np.savez_compressed(keep / "nesterov.npz", **case.arrays,  # type: ignore[arg-type]
                                **{f"caffe:{k}": v for k, v in result.items()})
    assert not problems, "\n".join(problems)


def read_back(data: bytes, folder: Path) -> Any:
    path = folder / "ours.solverstate"
    path.write_bytes(data)
    return read_solverstate(path)
