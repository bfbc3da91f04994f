"""Spark Connect: a server that never answers, dies mid-fit or freezes mid-fit ends the run in
one line within the start timeout (plus what the process needs to start and exit); a round
longer than the timeout is not cut; runs sharing a ``--state-dir`` name their files apart."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sparknet.engine.frame_runner import ResultFiles
from sparknet_testing.chaos import (
    Driver,
    arm_tripwire,
    release_tripwire,
    tripped_pid,
    wait_for,
)


@pytest.fixture()
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never says a word (the campaign's case)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


# What a child process needs beyond the timeout: to start (imports of PySpark, and for the
# command line PyTorch, 1.5-4 s on the 2-core VM) and to exit.
PROCESS_SECONDS = 8


def test_a_silent_connect_server_is_one_line_within_the_timeout(silent_listener: int) -> None:
    """In a child process (Connect cannot join this process's classic session); the child
    must also exit at once, not wait on the half-made session (it waited 5 s more while the
    connecting thread backed off between tries)."""
    url = f"sc://127.0.0.1:{silent_listener}"
    started = time.monotonic()
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from sparknet.engine.spark_session import remote_session
        from sparknet.errors import ConfigError
        started = time.monotonic()
        try:
            remote_session({url!r}, timeout=10)
        except ConfigError as exc:
            print(f"{{time.monotonic() - started:.1f}}", "refused:", exc)
    """)], capture_output=True, text=True, timeout=120)
    waited = time.monotonic() - started
    assert child.returncode == 0, child.stderr[-2000:]
    lines = child.stdout.strip().splitlines()
    assert len(lines) == 1, lines
    seconds, line = lines[0].split(" ", 1)
    assert 10 <= float(seconds) < 11, f"remote_session gave up after {seconds} s"
    assert waited < 10 + PROCESS_SECONDS, f"the child took {waited:.1f} s"
    assert line.startswith(f"refused: the Spark Connect server at {url} did not answer within "
                           "10 s"), line
    assert "--start-timeout" in line


def test_sparknet_train_against_a_silent_listener_ends_within_the_timeout(
        silent_listener: int, tmp_path: Path) -> None:
    """The command line, end to end: one line, exit status 2, within the start timeout."""
    url = f"sc://127.0.0.1:{silent_listener}"
    started = time.monotonic()
    child = subprocess.run(
        [sys.executable, "-m", "sparknet.cli.main", "train", "--remote", url, "--output",
         str(tmp_path / "run"), "--rounds", "1", "--train-limit", "256", "--test-limit", "64",
         "--start-timeout", "5"], capture_output=True, text=True, timeout=120)
    waited = time.monotonic() - started
    lines = [line for line in child.stderr.splitlines()
             if line.strip() and not line.startswith("WARNING: Using incubator modules")]
    assert child.returncode == 2, child.stderr[-2000:]
    assert lines == [f"sparknet: error: the Spark Connect server at {url} did not answer within "
                     "5 s (it accepts connections but says nothing): check that it is a Spark "
                     "Connect server and running, or raise --start-timeout"], lines
    assert waited < 5 + PROCESS_SECONDS, f"sparknet train took {waited:.1f} s"


def test_calls_to_a_lost_server_share_one_retry_budget() -> None:
    """Nothing listens on the port (a server that died): the first call retries for the
    budget (2 s), the calls right after it fail at once instead of retrying as long again,
    and once no call has failed for the budget's length a new outage gets it afresh."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: connections are refused
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pyspark.sql.connect.session import SparkSession
        from sparknet.engine.connect_deadlines import bound_client, channel

        session = SparkSession(connection=channel("sc://127.0.0.1:{port}", 2))
        bound_client(session, 2)

        def call():
            started = time.monotonic()
            try:
                session.version
            except Exception as exc:
                assert "UNAVAILABLE" in str(exc) or "RETRIES_EXCEEDED" in str(exc), exc
            return time.monotonic() - started

        first, second, third = call(), call(), call()
        time.sleep(2.5)  # no call fails meanwhile: the outage is over
        print(f"{{first:.2f}} {{second:.2f}} {{third:.2f}} {{call():.2f}}")
    """)], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-3000:]
    first, second, third, fresh = (float(v) for v in child.stdout.split())
    assert 1.5 <= first < 3.5, f"the first call retried for {first:.2f} s"
    assert second < 0.5 and third < 0.5, (second, third)
    assert 1.5 <= fresh < 3.5, f"a new outage's first call retried for {fresh:.2f} s"


def start_fit(server_url: str, run_dir: Path, fashion_dir: Path, *, start_timeout: int,
              tau: int = 5, rounds: int = 500, model: str | None = None) -> Driver:
    """``sparknet train --remote`` as its own process."""
    return Driver.start(
        [sys.executable, "-m", "sparknet.cli.main", "train", "--remote", server_url,
         "--output", str(run_dir), "--num-workers", "2", "--tau", str(tau), "--rounds",
         str(rounds), "--train-limit", "2000", "--test-limit", "200", "--eval-every", "0",
         "--data-dir", str(fashion_dir), "--no-progress", "--start-timeout", str(start_timeout),
         *(["--model", model] if model else [])], log=run_dir.with_suffix(".log"))


def one_error_line(driver: Driver) -> str:
    lines = [line for line in driver.output().splitlines()
             if line.strip() and not line.startswith("WARNING: Using incubator modules")
             and not line.startswith("training ")]
    assert len(lines) == 1 and lines[0].startswith("sparknet: error: "), lines
    return lines[0]


def first_round(run_dir: Path) -> None:
    metrics = run_dir / "metrics.jsonl"
    wait_for(lambda: metrics.is_file() and metrics.read_text().count("\n") >= 1,
             timeout=300, what="the first round")


@pytest.mark.connect
@pytest.mark.slow
def test_a_connect_server_killed_mid_fit_ends_the_client_in_one_line(
        fashion_dir: Path, tmp_path: Path) -> None:
    """``sparknet train --remote`` against a server of its own, SIGKILLed (its JVM and its
    Python workers) once a round is logged: every call the client makes after that shares one
    retry budget of ``--start-timeout`` seconds (it took 41 s at 10 s, when each call retried
    that long), then it says so in one line and exits 2."""
    from sparknet_testing.connect_server import connect_server

    start_timeout = 10
    run_dir = tmp_path / "run"
    with connect_server(tmp_path / "server") as server:
        driver = start_fit(server.url, run_dir, fashion_dir, start_timeout=start_timeout)
        try:
            first_round(run_dir)
            for proc in server.descendants():
                proc.kill()
            killed = time.monotonic()
            code = driver.wait(timeout=120)
            waited = time.monotonic() - killed
        finally:
            driver.kill()
    assert code == 2, driver.output()[-3000:]
    line = one_error_line(driver)
    assert "the Spark Connect server stopped answering" in line, line
    assert "--resume" in line, line
    print(f"killed server: the client gave up {waited:.1f} s after the kill")
    assert waited < start_timeout + 5, f"the client took {waited:.1f} s to give up"


@pytest.mark.connect
@pytest.mark.slow
def test_a_connect_server_frozen_mid_fit_ends_the_client_in_one_line(
        fashion_dir: Path, tmp_path: Path) -> None:
    """The server's processes SIGSTOPped once a round is logged: its connection stays open
    and says nothing. The client notices when a call's deadline passes or a ping goes
    unanswered, counts the silence against the retry budget, and gives up in one line. The
    bound: a ping at most every ``keepalive_seconds`` after the last answer, ``ping_answer``
    to answer it, then one connection attempt (half the timeout) by a call that gives up."""
    from sparknet.engine.connect_deadlines import keepalive_seconds, ping_answer_seconds
    from sparknet_testing.connect_server import connect_server

    start_timeout = 10
    run_dir = tmp_path / "run"
    with connect_server(tmp_path / "server") as server:
        driver = start_fit(server.url, run_dir, fashion_dir, start_timeout=start_timeout)
        frozen = []
        try:
            first_round(run_dir)
            for proc in server.descendants():
                with contextlib.suppress(psutil.Error):
                    proc.suspend()
                    frozen.append(proc)
            stopped = time.monotonic()
            code = driver.wait(timeout=180)
            waited = time.monotonic() - stopped
        finally:
            driver.kill()
            for proc in frozen:
                with contextlib.suppress(psutil.Error):
                    proc.resume()
    assert code == 2, driver.output()[-3000:]
    line = one_error_line(driver)
    assert "the Spark Connect server stopped answering" in line, line
    bound = (keepalive_seconds(start_timeout) + ping_answer_seconds(start_timeout)
             + start_timeout / 2 + 5)
    print(f"frozen server: the client gave up {waited:.1f} s after SIGSTOP")
    assert waited < bound, f"the client took {waited:.1f} s to give up (bound {bound:.0f} s)"


@pytest.mark.connect
@pytest.mark.slow
def test_a_round_longer_than_the_timeout_is_not_cut(fashion_dir: Path, tmp_path: Path) -> None:
    """A task held inside round 1 for 4 x the start timeout (and more than two keepalive
    periods): the job's result stream has no deadline and the live server answers the pings,
    so the run finishes."""
    from sparknet.engine.connect_deadlines import keepalive_seconds
    from sparknet_testing.connect_server import connect_server

    start_timeout, tau = 10, 5
    held = max(4 * start_timeout, 2 * keepalive_seconds(start_timeout) + 5)
    run_dir = tmp_path / "run"
    with connect_server(tmp_path / "server") as server:
        arm_tripwire(server.fault_dir, after_forwards=2 * tau + 3, hold=True)
        driver = start_fit(server.url, run_dir, fashion_dir, start_timeout=start_timeout,
                           tau=tau, rounds=3, model="sparknet_testing.faults:tripwire_net")
        try:
            tripped_pid(server.fault_dir)
            with pytest.raises(subprocess.TimeoutExpired):  # still waiting for the round
                driver.popen.wait(timeout=held)
            release_tripwire(server.fault_dir)
            code = driver.wait(timeout=300)
        finally:
            driver.kill()
    assert code == 0, driver.output()[-3000:]
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3


def test_runs_sharing_a_state_dir_keep_their_own_files(tmp_path: Path) -> None:
    mine, theirs = ResultFiles(str(tmp_path), 3, "aaaa"), ResultFiles(str(tmp_path), 3, "bbbb")
    for files in (mine, theirs):
        files.path(0, 0).write_bytes(b"x")
        files.path(1, 0).write_bytes(b"y")
    assert mine.path(0, 0) != theirs.path(0, 0)
    mine.remove()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        theirs.path(0, 0).name, theirs.path(1, 0).name]
