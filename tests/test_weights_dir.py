import numpy as np
import pytest

from sparknet import weights_dir
from sparknet.errors import DataError


def _snapshot(value: float) -> weights_dir.WeightsDir:
    return weights_dir.WeightsDir({"w": np.full(3, value, np.float32)},
                               {"outer_momentum": np.zeros(3, np.float32)}, {"round": value})


def test_checkpoints_round_trip_and_keep_the_newest(tmp_path):
    for r in (1, 2, 3):
        weights_dir.save_checkpoint(tmp_path, _snapshot(r), round_index=r)
    latest = weights_dir.latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "round-000003"
    snap = weights_dir.read(latest)
    assert snap.meta["round"] == 3 and np.array_equal(snap.tensors["w"], np.full(3, 3.0))
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("round-*")) == [
        "round-000002", "round-000003"]


def test_a_crash_while_writing_leaves_the_previous_checkpoint(tmp_path):
    weights_dir.save_checkpoint(tmp_path, _snapshot(1), round_index=1)
    # A writer killed mid-way leaves only its temporary directory behind.
    partial = tmp_path / "checkpoints" / ".round-000002.tmp-999"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\x00" * 10)
    latest = weights_dir.latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "round-000001"
    assert weights_dir.read(latest).meta["round"] == 1
    weights_dir.save_checkpoint(tmp_path, _snapshot(2), round_index=2)
    assert not partial.exists()  # the next successful write removes the leftover


def test_zero_dimensional_tensors_keep_their_shape(tmp_path):
    snap = weights_dir.WeightsDir({"counter": np.array(7, np.int64)}, {}, {})
    weights_dir.write(tmp_path / "ck", snap)
    assert weights_dir.read(tmp_path / "ck").tensors["counter"].shape == ()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    target = tmp_path / "ck"
    weights_dir.write(target, _snapshot(1))
    (target / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataError, match="corrupt"):
        weights_dir.read(target)
    with pytest.raises(DataError, match="holds no sparknet checkpoint"):
        weights_dir.read(tmp_path)


def test_latest_must_name_a_checkpoint_of_this_run(tmp_path):
    weights_dir.save_checkpoint(tmp_path, _snapshot(1), round_index=1)
    pointer = tmp_path / "checkpoints" / "LATEST"
    for bad in ("../../elsewhere", "/etc", "round-1", "round-000001/.."):
        pointer.write_text(bad)
        with pytest.raises(DataError, match="not a checkpoint of this run"):
            weights_dir.latest_checkpoint(tmp_path)
    pointer.write_text("round-000001\n")
    assert weights_dir.latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "round-000001"


def test_a_cut_short_metrics_line_is_dropped_on_resume(tmp_path):
    from sparknet.metrics import MetricsLog

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"round": 1, "x": 1}\n{"round": 2, "x": 2}\n{"round": 3, "x"')
    log = MetricsLog(path)
    log.load_existing(up_to_round=2)
    assert [r["round"] for r in log.records] == [1, 2]
    assert path.read_text() == '{"round": 1, "x": 1}\n{"round": 2, "x": 2}\n'
