"""A run directory belongs to one run: an earlier run is never silently replaced, two runs
never write one folder at once, and checkpoint retention counts this run's rounds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sparknet import weights_dir
from sparknet.engine.run_dir import LOCK_FILE, run_lock
from sparknet.errors import ConfigError

TRAIN = ["--train-limit", "256", "--num-workers", "2", "--tau", "2", "--batch-size", "16",
         "--eval-every", "0", "--checkpoint-every", "1", "--no-progress"]


def sparknet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sparknet.cli.main", *args],
                          capture_output=True, text=True, timeout=300)


def one_line(result: subprocess.CompletedProcess[str], expected: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert expected in lines[0], lines[0]
    return lines[0]


def test_a_new_run_into_an_earlier_runs_folder_is_refused(tmp_path: Path,
                                                          stopped_run) -> None:
    run_dir = stopped_run(tmp_path / "run")
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    line = one_line(sparknet("train", "--output", str(run_dir), *TRAIN),
                    f"output {run_dir} holds an earlier run (config.json)")
    assert f"--resume {run_dir}" in line and "--overwrite" in line
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before
    assert not (run_dir / "spark.log").exists()
    one_line(sparknet("train", "--resume", str(run_dir), "--overwrite", "--no-progress"),
             "--resume and --overwrite are both given")


@pytest.mark.spark
@pytest.mark.slow
def test_overwrite_replaces_the_earlier_run_and_keeps_its_own_checkpoints(
        tmp_path: Path, stopped_run) -> None:
    """The campaign's case: the earlier run had later rounds than the new one writes."""
    run_dir = stopped_run(tmp_path / "run")
    (run_dir / "notes.txt").write_text("mine")
    result = sparknet("train", "--output", str(run_dir), "--overwrite", *TRAIN, "--rounds", "1",
                      "--seed", "7")
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir()
                   if not p.name.startswith("."))
    assert names == ["LATEST", "round-000001"]
    latest = weights_dir.latest_checkpoint(run_dir)
    assert latest is not None and latest.is_dir()
    assert weights_dir.read(latest).meta["config"]["seed"] == 7
    assert (run_dir / "final" / weights_dir.META_FILE).is_file()
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    assert (run_dir / "notes.txt").read_text() == "mine"  # not a run's file: left alone


def test_retention_counts_rounds_of_this_run(tmp_path: Path) -> None:
    """Checkpoints of later rounds left by another run go; this run's newest two stay."""
    contents = weights_dir.WeightsDir({"w": np.zeros(2, np.float32)}, {}, {"round": 0})
    for r in (8, 9):
        weights_dir.save_checkpoint(tmp_path, contents, round_index=r)
    for r in (1, 2, 3):
        weights_dir.save_checkpoint(tmp_path, contents, round_index=r)
        latest = weights_dir.latest_checkpoint(tmp_path)
        assert latest is not None and latest.name == f"round-{r:06d}" and latest.is_dir()
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("round-*"))
    assert kept == ["round-000002", "round-000003"]


def test_a_second_run_on_a_locked_folder_is_refused(tmp_path: Path, stopped_run) -> None:
    run_dir = stopped_run(tmp_path / "run")
    fresh = tmp_path / "fresh"
    with run_lock(run_dir), run_lock(fresh), run_lock(run_dir):  # re-entrant in one process
        line = one_line(sparknet("train", "--resume", str(run_dir), "--no-progress"),
                        f"the run directory {run_dir} is in use by another sparknet run")
        assert f"(pid {os.getpid()})" in line
        one_line(sparknet("train", "--output", str(fresh), *TRAIN), "is in use by another")
    assert not (run_dir / "spark.log").exists() and not (fresh / "run.json").exists()
    with run_lock(run_dir):  # released when the last holder left
        pass


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    """A killed run leaves no lock behind: --resume may follow a SIGKILL at once."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from sparknet.engine.run_dir import run_lock
        with run_lock(Path({str(tmp_path)!r})):
            print("locked", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        refused = f"in use by another sparknet run \\(pid {holder.pid}\\)"
        with pytest.raises(ConfigError, match=refused), run_lock(tmp_path):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_a_linked_checkpoints_folder_is_refused_before_spark(tmp_path: Path,
                                                             stopped_run) -> None:
    run_dir = stopped_run(tmp_path / "run")
    elsewhere = tmp_path / "elsewhere"
    (run_dir / "checkpoints").rename(elsewhere)
    (run_dir / "checkpoints").symlink_to(elsewhere)
    one_line(sparknet("train", "--resume", str(run_dir), "--no-progress"),
             "checkpoints is a symbolic link")
    assert not (run_dir / "spark.log").exists()
