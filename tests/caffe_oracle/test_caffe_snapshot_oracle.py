"""``sparknet train --caffe-snapshot`` against real Caffe continuing from the same snapshot,
for every solver type: Caffe trains 2 iterations and snapshots, then ``solver.restore`` (what
``caffe train --snapshot`` does) runs the 4 iterations left to max_iter; sparknet's CLI
(K=1, outer average, on Spark) starts from that .solverstate and its caffemodel and must end
at Caffe's weights. The data is one batch, so every iteration of both sees the same rows
(sparknet's engine draws its own batch order). SGD and Nesterov average their momentum over
several rounds (the history carries on); the adaptive solvers run the 4 iterations in one
round (they reset their state between rounds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sparknet.caffe import parse_solver_text
from sparknet.caffe.weights import read_caffemodel
from sparknet.cli.main import main
from tests.caffe.oracle_cases import SOLVER_RTOL, SolverCase, mismatch

from .conftest import case_rng
from .oracle import run_request
from .solver_generators import BATCH, CHANNELS, SIZE, SOLVER_TYPES, solver_case

pytestmark = [pytest.mark.caffe_oracle, pytest.mark.spark]
SNAPSHOT_AT, MAX_ITER = 2, 6
POLICIES = {"SGD": "step", "Nesterov": "multistep", "AdaGrad": "inv", "RMSProp": "exp",
            "AdaDelta": "poly", "Adam": "sigmoid"}
TAU = {"SGD": 2, "Nesterov": 1}  # rounds of averaged momentum; the others: one round


def _cases() -> list[SolverCase]:
    cases = []
    for kind in SOLVER_TYPES:
        for attempt in range(20):  # a draw both refuse (momentum with AdaGrad) is redrawn
            case = solver_case(case_rng("snapshot-cli", kind, attempt), kind, POLICIES[kind])
            case.solver = case.solver.replace("max_iter: 10", f"max_iter: {MAX_ITER}")
            try:
                config = parse_solver_text(case.solver)
            except Exception:  # noqa: BLE001 - any refusal: draw again
                continue
            if kind in TAU and config.momentum == 0:  # a history to carry over rounds
                continue
            case.name = f"cli_{kind.lower()}"
            case.solver += f'\nsnapshot_prefix: "{case.name}"\n'
            for key in ("data", "label"):  # one batch: every iteration sees all of it
                case.arrays[key] = case.arrays[key][:BATCH]
            cases.append(case)
            break
    return cases


def _entry(folder: Path, case: SolverCase, **fields: Any) -> dict[str, Any]:
    np.savez(folder / f"{case.name}.npz", **case.arrays)  # type: ignore[arg-type]
    net = f"{case.name}.net.prototxt"
    (folder / net).write_text(case.net)
    (folder / f"{case.name}.solver.prototxt").write_text(f'net: "{net}"\n{case.solver}')
    return {"name": case.name, "kind": "solver", "arrays": f"{case.name}.npz",
            "solver": f"{case.name}.solver.prototxt", **fields}


def test_cli_continues_a_snapshot_as_caffe(oracle_ready: None, spark: Any,
                                           tmp_path: Path) -> None:
    cases = _cases()
    assert len(cases) == len(SOLVER_TYPES)
    first, then = tmp_path / "first", tmp_path / "then"
    first.mkdir()
    then.mkdir()
    # Caffe: 2 iterations and its snapshot; then, restored from it, the iterations left.
    snapped = run_request(first, [_entry(first, c, iterations=SNAPSHOT_AT,
                                         snapshot_at=SNAPSHOT_AT) for c in cases])
    for case in cases:
        assert not isinstance(snapped[case.name], str), snapped[case.name]
        for made in (first / "out").glob(f"{case.name}*"):
            if made.suffix in (".solverstate", ".caffemodel"):
                shutil.copy(made, then / made.name)
    continued = run_request(then, [_entry(then, c, iterations=MAX_ITER - SNAPSHOT_AT,
                                          restore=f"{c.name}.solverstate") for c in cases])
    problems: list[str] = []
    for case in cases:
        caffe = continued[case.name]
        assert not isinstance(caffe, str), f"{case.name}: {caffe}"
        assert f"iter{MAX_ITER}:param:ip:0" in caffe  # Caffe counted on from the snapshot
        problems += [f"{case.name}: {p}" for p in _sparknet_run(case, first / "out", caffe,
                                                                 tmp_path / case.name)]
    assert not problems, "\n".join(problems)


def _sparknet_run(case: SolverCase, snapshots: Path, caffe: dict[str, np.ndarray],
                  folder: Path) -> list[str]:
    folder.mkdir()
    net, solver, data = (folder / "net.prototxt", folder / "solver.prototxt",
                         folder / "batch.parquet")
    net.write_text(case.net)
    solver.write_text(case.solver)
    pq.write_table(pa.table({
        "features": [row.reshape(-1).tolist() for row in case.arrays["data"]],
        "label": case.arrays["label"].astype(np.int64)}), data)
    kind = case.solver_type
    tau = TAU.get(kind, MAX_ITER - SNAPSHOT_AT)
    out = folder / "run"
    # The learned_net Caffe wrote is relative to its working directory: sparknet finds the
    # caffemodel beside the .solverstate.
    rc = main(["train", "--caffe-solver", str(solver), "--caffe-snapshot",
               str(snapshots / f"{case.name}.solverstate"), "--model", f"caffe:{net}",
               "--parquet", str(data), "--input-shape", f"{CHANNELS},{SIZE},{SIZE}",
               "--num-workers", "1", "--tau", str(tau), "--outer", "average",
               "--eval-every", "0", "--checkpoint-every", "0", "--output", str(out),
               "--no-progress"])
    if rc != 0:
        return [f"sparknet train exited with {rc}"]
    config = json.loads((out / "config.json").read_text())
    rounds = (MAX_ITER - SNAPSHOT_AT) // tau
    if config["engine"]["rounds"] != rounds:
        return [f"{config['engine']['rounds']} rounds, not the {rounds} left"]
    policy = "average" if kind in TAU else "reset"
    if config["optimizer"]["momentum_policy"] != policy:
        return [f"momentum_policy {config['optimizer']['momentum_policy']}, not {policy}"]
    written = read_caffemodel(out / "final" / "model.caffemodel")
    problems = []
    for key, value in sorted(caffe.items()):
        if key.startswith("param:"):
            _, layer, index = key.split(":")
            problem = mismatch(written[layer][int(index)], value, key, rtol=SOLVER_RTOL)
            if problem:
                problems.append(problem)
    return problems
