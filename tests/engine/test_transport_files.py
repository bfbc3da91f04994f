"""State files in a shared ``--state-dir``: checked against their digest, named per run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparknet.engine.transport import FileTransport
from sparknet.errors import TrainingError


def _arrays() -> tuple[np.ndarray | None, ...]:
    return (np.arange(10, dtype=np.float32), None, np.ones(3, np.int64))


def test_a_state_file_reads_back_and_a_damaged_or_missing_one_is_one_line(
        tmp_path: Path) -> None:
    transport = FileTransport(tmp_path)
    shared = transport.share(_arrays())
    got = shared.value
    assert np.array_equal(got[0], _arrays()[0]) and got[1] is None
    path = Path(shared.path)  # type: ignore[attr-defined]
    raw = bytearray(path.read_bytes())
    raw[5] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(TrainingError, match=f"state file {path} does not match its digest"):
        shared.value  # noqa: B018 - reading is the check
    path.unlink()
    with pytest.raises(TrainingError, match=f"state file {path} cannot be read"):
        shared.value  # noqa: B018
