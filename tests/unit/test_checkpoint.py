import numpy as np
import pytest

from sparknet import checkpoint
from sparknet.errors import DataError


def _snapshot(value: float) -> checkpoint.Snapshot:
    return checkpoint.Snapshot({"w": np.full(3, value, np.float32)},
                               {"outer_momentum": np.zeros(3, np.float32)}, {"round": value})


def test_checkpoints_round_trip_and_keep_the_newest(tmp_path):
    for r in (1, 2, 3):
        checkpoint.save_checkpoint(tmp_path, _snapshot(r), round_index=r)
    latest = checkpoint.latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "round-000003"
    snap = checkpoint.read_snapshot(latest)
    assert snap.meta["round"] == 3 and np.array_equal(snap.tensors["w"], np.full(3, 3.0))
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("round-*")) == [
        "round-000002", "round-000003"]


def test_a_crash_while_writing_leaves_the_previous_checkpoint(tmp_path):
    checkpoint.save_checkpoint(tmp_path, _snapshot(1), round_index=1)
    # A writer killed mid-way leaves only its temporary directory behind.
    partial = tmp_path / "checkpoints" / ".round-000002.tmp-999"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\x00" * 10)
    latest = checkpoint.latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "round-000001"
    assert checkpoint.read_snapshot(latest).meta["round"] == 1
    checkpoint.save_checkpoint(tmp_path, _snapshot(2), round_index=2)
    assert not partial.exists()  # the next successful write removes the leftover


def test_zero_dimensional_tensors_keep_their_shape(tmp_path):
    snap = checkpoint.Snapshot({"counter": np.array(7, np.int64)}, {}, {})
    checkpoint.write_snapshot(tmp_path / "ck", snap)
    assert checkpoint.read_snapshot(tmp_path / "ck").tensors["counter"].shape == ()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    target = tmp_path / "ck"
    checkpoint.write_snapshot(target, _snapshot(1))
    (target / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataError, match="corrupt"):
        checkpoint.read_snapshot(target)
    with pytest.raises(DataError, match="not a sparknet checkpoint"):
        checkpoint.read_snapshot(tmp_path)
