"""Spark Connect: a server that never answers ends in one line within the start timeout;
runs sharing a ``--state-dir`` name their files apart."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparknet.engine.frame_runner import ResultFiles
from sparknet.errors import ConfigError


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


@pytest.mark.spark
def test_a_silent_connect_server_is_one_line_within_the_timeout(silent_listener: int,
                                                                spark) -> None:
    """Also while this process holds a classic session (the ``spark`` fixture)."""
    from sparknet.engine.spark_session import remote_session

    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        remote_session(f"sc://127.0.0.1:{silent_listener}", timeout=3)
    waited = time.monotonic() - started
    assert waited < 10, f"waited {waited:.0f} s"
    message = str(caught.value)
    assert "\n" not in message and f"sc://127.0.0.1:{silent_listener}" in message
    assert "did not answer within 3 s" in message and "--start-timeout" in message


def test_runs_sharing_a_state_dir_keep_their_own_files(tmp_path: Path) -> None:
    mine, theirs = ResultFiles(str(tmp_path), 3, "aaaa"), ResultFiles(str(tmp_path), 3, "bbbb")
    for files in (mine, theirs):
        files.path(0, 0).write_bytes(b"x")
        files.path(1, 0).write_bytes(b"y")
    assert mine.path(0, 0) != theirs.path(0, 0)
    mine.remove()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        theirs.path(0, 0).name, theirs.path(1, 0).name]
