"""A driver killed mid-training resumes bit-identically; exhausted retries fail clearly."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet import weights_dir
from sparknet_testing.chaos import Driver, run_driver, wait_for
from sparknet_testing.faults import FAIL

pytestmark = pytest.mark.cluster


def latest_round(run_dir: Path) -> int:
    latest = weights_dir.latest_checkpoint(run_dir)
    return -1 if latest is None else int(latest.name.removeprefix("round-"))


def test_killed_driver_resumes_to_identical_weights(small_run: Any, faults: Path,
                                                   assert_matches_reference: Any,
                                                   tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    driver = Driver.start(small_run.command(run_dir), log=tmp_path / "killed.log")
    try:
        # SIGKILL the driver (its Python process and its JVM) once a checkpoint exists.
        wait_for(lambda: latest_round(run_dir) >= 2 or driver.popen.poll() is not None,
                 timeout=240, what="the first checkpoint")
    finally:
        driver.kill()
    assert not driver.processes()
    killed_at = latest_round(run_dir)
    assert 2 <= killed_at < small_run.rounds, driver.output()[-2000:]
    assert not (run_dir / "final").exists(), "the driver finished before it was killed"

    small_run.train(run_dir, "--resume", str(run_dir))

    assert_matches_reference(run_dir)
    rounds = [int(line.split('"round": ')[1].split(",")[0])
              for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rounds == list(range(1, small_run.rounds + 1))


@pytest.mark.slow
def test_exhausted_retries_name_round_and_error_and_keep_checkpoint(
        small_run: Any, faults: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = small_run.command(run_dir, "--checkpoint-every", "1",
                                model="sparknet_testing.faults:failing_net")

    def break_network_after_round_two() -> None:
        wait_for(lambda: latest_round(run_dir) >= 2, timeout=240, what="round 2's checkpoint")
        (faults / FAIL).touch()  # from now on the network raises in every attempt

    breaker = threading.Thread(target=break_network_after_round_two, daemon=True)
    breaker.start()
    code, output = run_driver(command, log=tmp_path / "failing.log", timeout=300)
    breaker.join(5)

    assert code == 2, output[-3000:]
    error = [line for line in output.splitlines() if line.startswith("sparknet: error:")]
    assert len(error) == 1, output[-3000:]
    match = re.search(r"round (\d+) failed in all 4 attempts of a task; the worker's error: "
                      r"RuntimeError: injected failure: this network fails in every forward "
                      r"pass\. The last good checkpoint is kept: (\S+)\.$", error[0])
    assert match, error[0]
    failed_round, kept = int(match.group(1)), Path(match.group(2))
    # checkpoint_every=1: the kept checkpoint holds exactly the rounds before the failed one.
    assert failed_round >= 2
    assert kept == weights_dir.latest_checkpoint(run_dir)
    assert kept.name == f"round-{failed_round:06d}"
    snapshot = weights_dir.read(kept)
    assert snapshot.meta["round"] == failed_round
    assert all(np.isfinite(t).all() for t in snapshot.tensors.values())
    assert not (run_dir / "final").exists()
