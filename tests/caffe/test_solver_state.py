"""Caffe's solver snapshots: a real ``.solverstate`` (tests/data/caffe_solverstate) read,
restored into a CaffeSolver and continued to Caffe's own weights of the last iteration;
sparknet's snapshot after the same iterations equal to Caffe's; refusals in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparknet.caffe import build_net, make_optimizer, parse_net_text, parse_solver_text
from sparknet.caffe.solver_state import (
    read_solverstate,
    restore_solverstate,
    solverstate_message,
    write_solverstate,
)
from sparknet.errors import CaffeFormatError

from .oracle_cases import SOLVER_RTOL, SolverCase, mismatch, params_by_layer, step_solver

FOLDER = Path(__file__).resolve().parents[1] / "data" / "caffe_solverstate"


def _case() -> tuple[SolverCase, dict[str, np.ndarray]]:
    with np.load(FOLDER / "nesterov.npz", allow_pickle=False) as npz:
        stored = {k: npz[k] for k in npz.files}
    case = SolverCase(name="nesterov", solver_type="Nesterov", lr_policy="multistep",
                      solver=(FOLDER / "nesterov.solver.prototxt").read_text(),
                      net=(FOLDER / "nesterov.net.prototxt").read_text(), iterations=4,
                      arrays={k: v for k, v in stored.items() if not k.startswith("caffe:")})
    return case, {k.removeprefix("caffe:"): v for k, v in stored.items()
                  if k.startswith("caffe:")}


def test_restored_caffe_snapshot_continues_as_caffe() -> None:
    case, caffe = _case()
    state = read_solverstate(FOLDER / "nesterov.solverstate")
    assert state.iteration == 2 and len(state.history) == 4
    assert any(np.abs(h).max() > 0 for h in state.history)
    config = parse_solver_text(case.solver)
    net = build_net(parse_net_text(case.net), phase="TRAIN",
                    weights=params_by_layer(caffe, "iter2:param:"))
    solver = make_optimizer(net, config)
    restore_solverstate(solver, net, state)
    step_solver(case, net, solver, 3, 4)
    problems = [mismatch(blob, caffe[f"iter4:param:{layer}:{i}"], f"{layer}:{i}",
                         rtol=SOLVER_RTOL)
                for layer, blobs in net.caffe_blobs().items() for i, blob in enumerate(blobs)]
    assert not [p for p in problems if p], problems


def test_our_snapshot_equals_caffes(tmp_path: Path) -> None:
    case, _ = _case()
    caffe_state = read_solverstate(FOLDER / "nesterov.solverstate")
    net = build_net(parse_net_text(case.net), phase="TRAIN",
                    weights=params_by_layer(case.arrays))
    solver = make_optimizer(net, parse_solver_text(case.solver))
    step_solver(case, net, solver, 1, 2)
    write_solverstate(solver, net, tmp_path / "ours.solverstate", learned_net="x.caffemodel")
    ours = read_solverstate(tmp_path / "ours.solverstate")
    assert (ours.iteration, ours.current_step, ours.learned_net) == (
        caffe_state.iteration, caffe_state.current_step, "x.caffemodel")
    for a, b in zip(ours.history, caffe_state.history, strict=True):
        assert mismatch(a, b, "history", rtol=SOLVER_RTOL) is None


def test_bad_snapshots_are_one_line(tmp_path: Path) -> None:
    case, _ = _case()
    (tmp_path / "junk.solverstate").write_bytes(b"\xff\xff\xff")
    with pytest.raises(CaffeFormatError, match="is not a Caffe .solverstate"):
        read_solverstate(tmp_path / "junk.solverstate")
    state = read_solverstate(FOLDER / "nesterov.solverstate")
    net = build_net(parse_net_text(case.net), phase="TRAIN")
    adam = parse_solver_text(case.solver.replace('type: "Nesterov"', 'type: "Adam"'))
    with pytest.raises(CaffeFormatError, match="holds 4 history blobs, but a Adam solver"):
        restore_solverstate(make_optimizer(net, adam), net, state)
    assert solverstate_message(make_optimizer(net, adam), net).iter == 0
