"""A process killed while writing checkpoints never leaves one that loads wrong.

A child process writes checkpoints in a loop, each holding tensors derived from its round;
it is SIGKILLed at many different moments. After every kill the checkpoint ``LATEST`` names
must load and hold exactly its own round's data, and a later run writes over the debris.
(No cluster needed: this is the driver's side of a killed driver.)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sparknet import weights_dir

WRITER = """
import sys, numpy as np
from pathlib import Path
from sparknet import weights_dir
run_dir, start = Path(sys.argv[1]), int(sys.argv[2])
for r in range(start, start + 100000):
    big = np.full(200_000, r, np.float32)  # ~800 kB, so a write takes a while
    snap = weights_dir.WeightsDir({"w": big, "step": np.array([r], np.int64)},
                               {"outer_m": big[:1000] * 2}, {"round": r})
    weights_dir.save_checkpoint(run_dir, snap, round_index=r)
    if r == start:
        print("writing", flush=True)
"""


def assert_consistent(run_dir: Path) -> int:
    latest = weights_dir.latest_checkpoint(run_dir)
    assert latest is not None
    snap = weights_dir.read(latest)
    r = snap.meta["round"]
    assert latest.name == f"round-{r:06d}"
    assert np.array_equal(snap.tensors["w"], np.full(200_000, r, np.float32))
    assert snap.tensors["step"].tolist() == [r]
    assert np.array_equal(snap.optimizer["outer_m"], np.full(1000, 2 * r, np.float32))
    return int(r)


@pytest.mark.slow
def test_sigkill_while_writing_never_leaves_a_bad_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    start, seen = 0, []
    for attempt in range(8):
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(run_dir), str(start)],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "writing"
        # Kill at a different point of the write/rename/LATEST/cleanup cycle each time.
        time.sleep(0.005 * attempt)
        child.kill()
        child.wait(timeout=30)
        seen.append(assert_consistent(run_dir))
        start = seen[-1] + 1  # as a resumed run would: continue after the checkpoint
    assert seen == sorted(seen)
    leftovers = [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    # Debris of interrupted writes may stay; it never counts as a checkpoint.
    assert all(".tmp-" in name for name in leftovers)
