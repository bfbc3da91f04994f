"""Faults around the default master, starting Spark, evaluation and Ctrl-C: each ends in the
truth in one line (or, where Spark can retry, in the same weights as an undisturbed run)."""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

from sparknet_testing.chaos import Driver, Killer, arm_tripwire, run_driver, wait_for
from sparknet_testing.faults import FAIL
from sparknet_testing.standalone import FAULT_DIR_ENV, StandaloneCluster, start_cluster


def local_command(fashion_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    """The shared small run (tiny MLP, K=2, tau=10, 6 rounds) on the default master."""
    return [sys.executable, "-m", "sparknet.cli.main", "train", "--no-progress",
            "--model", "sparknet_testing.faults:tripwire_net", "--num-workers", "2",
            "--tau", "10", "--batch-size", "32", "--rounds", "6", "--lr", "0.05",
            "--eval-every", "0", "--checkpoint-every", "2", "--seed", "3",
            "--train-limit", "4000", "--test-limit", "1000", "--data-dir", str(fashion_dir),
            "--output", str(run_dir), *extra]


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("sparknet: error:")]


@pytest.mark.spark
@pytest.mark.slow
def test_default_master_retries_a_killed_worker_bit_identically(
        fashion_dir: Path, tmp_path: Path) -> None:
    faults = tmp_path / "faults"
    faults.mkdir()
    env = {FAULT_DIR_ENV: str(faults)}
    code, output = run_driver(local_command(fashion_dir, tmp_path / "reference"),
                         log=tmp_path / "reference.log", env=env)
    assert code == 0, output[-3000:]

    arm_tripwire(faults, after_forwards=3 * 10 + 4)  # inside round 3's tasks
    killer = Killer(faults, "python").start()
    code, output = run_driver(local_command(fashion_dir, tmp_path / "killed"),
                         log=tmp_path / "killed.log", env=env)
    killer.join()
    assert code == 0, output[-3000:]
    assert killer.killed and "sparknet.engine.quiet_daemon" in killer.killed[0]
    want = load_file(str(tmp_path / "reference" / "final" / "model.safetensors"))
    got = load_file(str(tmp_path / "killed" / "final" / "model.safetensors"))
    assert all(np.array_equal(got[name], want[name]) for name in want)


@pytest.mark.spark
@pytest.mark.slow
def test_plain_local_master_says_it_does_not_retry(fashion_dir: Path, tmp_path: Path) -> None:
    faults = tmp_path / "faults"
    faults.mkdir()
    arm_tripwire(faults, after_forwards=10 + 4)
    killer = Killer(faults, "python").start()
    code, output = run_driver(local_command(fashion_dir, tmp_path / "run", "--master", "local[2]"),
                         log=tmp_path / "run.log", env={FAULT_DIR_ENV: str(faults)})
    killer.join()
    assert code == 2, output[-3000:]
    errors = error_lines(output)
    assert len(errors) == 1, output[-3000:]
    assert "failed on its first attempt, with no retry (master local[2] does not retry " \
           "tasks; local[K,4] does)" in errors[0]
    assert "Traceback" not in output


@pytest.mark.spark
@pytest.mark.slow
def test_ctrl_c_is_one_line_and_the_run_resumes(fashion_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = local_command(fashion_dir, run_dir, "--checkpoint-every", "1", "--rounds", "400")
    driver = Driver.start(command, log=tmp_path / "run.log")
    try:
        wait_for(lambda: (run_dir / "checkpoints" / "LATEST").is_file(), timeout=240,
                 what="the first checkpoint")
        driver.popen.send_signal(signal.SIGINT)
        code = driver.wait(60)
    finally:
        driver.kill()
    output = driver.output()
    assert code == 130, output[-3000:]
    assert output.strip().splitlines()[-1] == "sparknet: interrupted"
    assert "Traceback" not in output and "py4j" not in output
    done = int((run_dir / "checkpoints" / "LATEST").read_text().strip().removeprefix("round-"))
    code, output = run_driver([*local_command(fashion_dir, run_dir)[:4], "--resume", str(run_dir),
                          "--no-progress", "--rounds", str(done + 1), "--model",
                          "sparknet_testing.faults:tripwire_net"], log=tmp_path / "resume.log")
    assert code == 0, output[-3000:]
    assert f"done: {done + 1} rounds" in output


@pytest.mark.spark
def test_a_master_that_never_answers_is_one_line(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except OSError:
                continue

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    master = f"spark://127.0.0.1:{silent.getsockname()[1]}"
    started = time.monotonic()
    try:
        code, output = run_driver([sys.executable, "-m", "sparknet.cli.main", "train", "--master",
                              master, "--start-timeout", "8", "--train-limit", "256",
                              "--output", str(tmp_path / "run")], log=tmp_path / "run.log")
    finally:
        stop.set()
        acceptor.join(5)
        silent.close()
    assert code == 2, output[-3000:]
    assert time.monotonic() - started < 60
    errors = error_lines(output)
    assert len(errors) == 1 and f"Spark did not start with master {master} within 8 s" \
        in errors[0], output[-3000:]
    assert "Traceback" not in output


@pytest.mark.cluster
@pytest.mark.slow  # waits out the start timeout: about 70 s
def test_a_cluster_with_no_workers_is_one_line(tmp_path: Path) -> None:
    empty = start_cluster(tmp_path / "empty", num_workers=0)
    try:
        started = time.monotonic()
        code, output = run_driver([sys.executable, "-m", "sparknet.cli.main", "train", "--master",
                              empty.master_url, "--start-timeout", "60", "--train-limit",
                              "256", "--output", str(tmp_path / "run")], log=tmp_path / "run.log")
        elapsed = time.monotonic() - started
    finally:
        empty.stop()
    assert code == 2, output[-3000:]
    assert elapsed < 240
    errors = error_lines(output)
    assert len(errors) == 1 and "no executor registered with master" in errors[0], output
    assert "Traceback" not in output


@pytest.mark.cluster
@pytest.mark.slow
def test_evaluation_failure_on_the_cluster_is_one_line(
        cluster: StandaloneCluster, small_run: Any, faults: Path, tmp_path: Path) -> None:
    (faults / FAIL).touch()  # every evaluation forward pass raises, training runs on
    code, output = run_driver(small_run.command(tmp_path / "run", "--eval-every", "2",
                                           model="sparknet_testing.faults:eval_failing_net"),
                         log=tmp_path / "run.log")
    assert code == 2, output[-3000:]
    errors = error_lines(output)
    assert len(errors) == 1, output[-3000:]
    assert "evaluation failed in all 4 attempts of a task; the worker's error: RuntimeError: " \
           "injected failure: this network fails in every evaluation pass" in errors[0]
    assert "Traceback" not in output
