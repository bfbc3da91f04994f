"""Training that starts from a Caffe snapshot (``optimizer.caffe_snapshot``, ``sparknet train
--caffe-snapshot``), on a real Caffe ``.solverstate`` (tests/data/caffe_solverstate, Nesterov
after 2 iterations): the engine goes on from the snapshot's weights, iteration and history
exactly as a CaffeSolver restored from it (itself checked against Caffe's own weights in
test_solver_state.py, and the CLI against real Caffe's continuation in
tests/caffe_oracle/test_caffe_snapshot_oracle.py); bad or mismatched snapshots are one line
before Spark starts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from sparknet.caffe import build_net, make_optimizer, parse_net_text, parse_solver_text
from sparknet.caffe.solver_state import read_solverstate, restore_solverstate
from sparknet.caffe.weights import read_caffemodel
from sparknet.cli.main import main
from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
from sparknet.data.shards import InputSpec
from sparknet.engine.loop import LoopOptions, run_rounds
from sparknet.engine.runner import InProcessRunner
from sparknet.errors import ConfigError
from sparknet.flat import load_flat_state
from sparknet.models.registry import resolve_model

from .oracle_cases import params_by_layer

FOLDER = Path(__file__).resolve().parents[1] / "data" / "caffe_solverstate"
START, MAX_ITER = 2, 10  # the snapshot's iteration; the solver's max_iter
BATCH = 2  # the net's MemoryData batch: the data here is one batch, every step sees it all


@pytest.fixture()
def snapshot(tmp_path: Path) -> dict[str, Any]:
    """Caffe's snapshot beside its caffemodel (Caffe's weights of iteration 2, named as its
    learned_net says), the net and the solver, and one batch of the case's data."""
    with np.load(FOLDER / "nesterov.npz", allow_pickle=False) as npz:
        stored = {k: npz[k] for k in npz.files}
    net_text = (FOLDER / "nesterov.net.prototxt").read_text()
    state_path = tmp_path / "snaps" / "nesterov.solverstate"
    state_path.parent.mkdir()
    shutil.copy(FOLDER / "nesterov.solverstate", state_path)
    learned = read_solverstate(state_path).learned_net
    net = build_net(parse_net_text(net_text), phase="TRAIN",
                    weights=params_by_layer(stored, "caffe:iter2:param:"))
    net.to_caffemodel(state_path.parent / Path(learned).name)
    (tmp_path / "net.prototxt").write_text(net_text)
    (tmp_path / "solver.prototxt").write_text((FOLDER / "nesterov.solver.prototxt").read_text())
    return {"state": state_path, "net": tmp_path / "net.prototxt",
            "solver": tmp_path / "solver.prototxt", "weights": net.caffe_blobs(),
            "features": stored["data"][:BATCH], "labels": stored["label"][:BATCH]}


def _restored_loop(snap: dict[str, Any], *, steps: int, reset_every: int | None = None
                   ) -> dict[str, list[np.ndarray]]:
    """A CaffeSolver restored from the snapshot, ``steps`` steps on the batch (with
    ``reset_every``: a fresh solver every that many steps, as momentum_policy reset does)."""
    config = parse_solver_text(snap["solver"].read_text())
    net = build_net(parse_net_text(snap["net"].read_text()), phase="TRAIN",
                    weights=snap["weights"])
    solver = make_optimizer(net, config)
    restore_solverstate(solver, net, read_solverstate(snap["state"]))
    x, y = torch.from_numpy(snap["features"]), torch.from_numpy(snap["labels"])
    for step in range(steps):
        if reset_every and step and step % reset_every == 0:
            solver = make_optimizer(net, config)
            solver.iteration = START + step
        solver.zero_grad()
        net.total_loss(net(data=x, label=y)).backward()
        solver.step()
    return net.caffe_blobs()


def _config(snap: dict[str, Any], *, policy: str, tau: int, rounds: int) -> TrainConfig:
    return TrainConfig(
        model=f"caffe:{snap['net']}#2,4,4", seed=1, checkpoint_every=0,
        engine=EngineConfig(num_workers=1, tau=tau, batch_size=BATCH, rounds=rounds,
                            eval_every=0),
        optimizer=OptimizerConfig(name="caffe", caffe_solver=snap["solver"].read_text(),
                                  caffe_snapshot=str(snap["state"]), momentum_policy=policy),
        outer=OuterConfig(name="average"))


def _engine(snap: dict[str, Any], config: TrainConfig) -> dict[str, list[np.ndarray]]:
    arrays = (snap["features"], snap["labels"].astype(np.int64))
    model = resolve_model(config.model)
    result = run_rounds(InProcessRunner(arrays, num_workers=1, seed=config.seed), config=config,
                        model=model, spec=InputSpec(shape=(2, 4, 4), num_classes=3),
                        options=LoopOptions())
    assert result.metrics[-1]["steps_per_worker"] == START + config.engine.rounds * 2
    module = model.build()
    load_flat_state(module, result.layout, result.floats, result.ints)
    return module.net.caffe_blobs()  # type: ignore[union-attr, operator]


def _assert_close(ours: dict[str, list[np.ndarray]], expected: dict[str, list[np.ndarray]]
                  ) -> None:
    for layer, blobs in expected.items():
        for a, b in zip(ours[layer], blobs, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_engine_goes_on_as_the_restored_solver_with_averaged_momentum(snapshot: Any) -> None:
    ours = _engine(snapshot, _config(snapshot, policy="average", tau=2, rounds=3))
    _assert_close(ours, _restored_loop(snapshot, steps=6))
    assert np.abs(ours["ip"][0] - snapshot["weights"]["ip"][0]).max() > 1e-4


def test_with_reset_the_first_round_starts_from_the_snapshots_history(snapshot: Any) -> None:
    # Round 0 from the snapshot's history, round 1 from zero (momentum_policy reset).
    ours = _engine(snapshot, _config(snapshot, policy="reset", tau=2, rounds=2))
    _assert_close(ours, _restored_loop(snapshot, steps=4, reset_every=2))
    # The history matters: a solver at iteration 2 without it takes other steps.
    config = parse_solver_text(snapshot["solver"].read_text())
    net = build_net(parse_net_text(snapshot["net"].read_text()), phase="TRAIN",
                    weights=snapshot["weights"])
    solver = make_optimizer(net, config)
    solver.iteration = START
    x, y = torch.from_numpy(snapshot["features"]), torch.from_numpy(snapshot["labels"])
    for _ in range(2):
        solver.zero_grad()
        net.total_loss(net(data=x, label=y)).backward()
        solver.step()
    first_round = _engine(snapshot, _config(snapshot, policy="reset", tau=2, rounds=1))
    assert np.abs(first_round["ip"][0] - net.caffe_blobs()["ip"][0]).max() > 1e-6


@pytest.mark.spark
def test_the_cli_continues_a_caffe_snapshot(snapshot: Any, tmp_path: Path, spark: Any) -> None:
    data = tmp_path / "batch.parquet"
    pq.write_table(pa.table({"features": [row.reshape(-1).tolist()
                                          for row in snapshot["features"]],
                             "label": snapshot["labels"].astype(np.int64)}), data)
    out = tmp_path / "run"
    assert main(["train", "--caffe-solver", str(snapshot["solver"]),
                 "--caffe-snapshot", str(snapshot["state"]), "--model",
                 f"caffe:{snapshot['net']}", "--parquet", str(data),
                 "--input-shape", "2,4,4", "--num-workers", "1", "--tau", "2",
                 "--outer", "average", "--eval-every", "0", "--checkpoint-every", "0",
                 "--output", str(out), "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["optimizer"]["caffe_snapshot"] == str(snapshot["state"].absolute())
    assert config["engine"]["rounds"] == (MAX_ITER - START) // 2  # the iterations left
    assert config["optimizer"]["momentum_policy"] == "average"
    written = read_caffemodel(out / "final" / "model.caffemodel")
    expected = _restored_loop(snapshot, steps=MAX_ITER - START)
    for layer, blobs in expected.items():
        for a, b in zip(written[layer], blobs, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def _refused(args: list[str], capsys: Any, tmp_path: Path) -> str:
    out = tmp_path / "refused"
    assert main(["train", *args, "--num-workers", "1", "--tau", "2", "--output", str(out),
                 "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert not (out / "spark.log").exists()  # refused before Spark started
    return lines[0]


def test_bad_and_mismatched_snapshots_are_one_line_before_spark(snapshot: Any, tmp_path: Path,
                                                                capsys: Any) -> None:
    common = ["--caffe-solver", str(snapshot["solver"]), "--model",
              f"caffe:{snapshot['net']}", "--input-shape", "2,4,4",
              "--parquet", str(tmp_path / "missing.parquet")]

    def refused(state: Path, *extra: str, solver: str | None = None) -> str:
        args = list(common)
        if solver is not None:
            (tmp_path / "other.solver.prototxt").write_text(solver)
            args[1] = str(tmp_path / "other.solver.prototxt")
        return _refused([*args, "--caffe-snapshot", str(state), *extra], capsys, tmp_path)

    junk = tmp_path / "junk.solverstate"
    junk.write_bytes(b"\xff\xff\xff")
    assert "is not a Caffe .solverstate" in refused(junk)
    hdf5 = tmp_path / "state.h5"
    hdf5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(8))
    assert "HDF5 solver state" in refused(hdf5)
    assert "cannot be read" in refused(tmp_path / "absent.solverstate")
    text = snapshot["solver"].read_text()
    assert "holds 4 history blobs, but a Adam solver" in refused(
        snapshot["state"], solver=text.replace('type: "Nesterov"', 'type: "Adam"'))
    assert "gives step 0: continue with the solver the snapshot was taken with" in refused(
        snapshot["state"], solver=text.replace("stepvalue: 1", "stepvalue: 3"))
    assert "nothing is left to train" in refused(
        snapshot["state"], solver=text.replace("max_iter: 10", "max_iter: 2"))
    other = tmp_path / "other.net.prototxt"
    other.write_text(snapshot["net"].read_text().replace("num_output: 3 }", "num_output: 4 }"))
    args = [*common[:3], f"caffe:{other}", *common[4:], "--caffe-snapshot",
            str(snapshot["state"])]
    assert "blob 0 has shape (3, 48) but the layer expects (4, 48)" in _refused(
        args, capsys, tmp_path)
    moved = tmp_path / "alone" / "nesterov.solverstate"
    moved.parent.mkdir()
    shutil.copy(snapshot["state"], moved)
    assert "put the caffemodel Caffe wrote with the snapshot beside" in refused(moved)
    caffemodel = next(snapshot["state"].parent.glob("*.caffemodel"))
    args = [*common[:3], f"caffe:{snapshot['net']}@{caffemodel}", *common[4:],
            "--caffe-snapshot", str(snapshot["state"])]
    assert "give a snapshot to resume training or weights to fine-tune, not both" in _refused(
        args, capsys, tmp_path)
    line = _refused(["--caffe-snapshot", str(snapshot["state"]), "--model",
                     f"caffe:{snapshot['net']}#2,4,4", "--rounds", "1"], capsys, tmp_path)
    assert "a Caffe snapshot continues a Caffe solver" in line


def test_snapshot_needs_the_caffe_optimizer() -> None:
    with pytest.raises(ConfigError, match="optimizer.caffe_snapshot='s.solverstate' is "
                                          "invalid: a Caffe snapshot continues a Caffe solver"):
        OptimizerConfig(caffe_snapshot="s.solverstate")
