"""``sparknet_testing.cgroup``: a memory limit that kills on anonymous memory, not on page cache.

Runs where a memory cgroup hierarchy is writable (root on this machine and in CI); skipped
with the reason elsewhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparknet_testing.cgroup import CgroupUnavailable, MemoryCgroup, launcher_in_group

MiB = 1 << 20


@pytest.fixture()
def group(request: pytest.FixtureRequest) -> Iterator[MemoryCgroup]:
    try:
        made = MemoryCgroup.create(f"sparknet-test-{os.getpid()}-{request.node.name}",
                                   limit_bytes=64 * MiB)
    except CgroupUnavailable as exc:
        pytest.skip(str(exc))
    yield made
    if made.path.exists():
        made.remove()


def _python(group: MemoryCgroup, tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    launcher = launcher_in_group(group, sys.executable, tmp_path)
    return subprocess.run([str(launcher), "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_a_launched_process_is_inside_under_the_limit(group: MemoryCgroup,
                                                      tmp_path: Path) -> None:
    done = _python(group, tmp_path, "import os; print(os.getpid()); print(open("
                   "'/proc/self/cgroup').read()); x = bytearray(16 << 20)")
    assert done.returncode == 0, done.stderr
    assert group.limit_bytes == 64 * MiB
    assert str(group.path.name) in done.stdout
    events = group.events()
    assert events.oom_kills == 0
    assert 16 * MiB < events.peak_bytes <= 64 * MiB


def test_anonymous_memory_over_the_limit_is_an_oom_kill(group: MemoryCgroup,
                                                        tmp_path: Path) -> None:
    done = _python(group, tmp_path, "x = bytearray(128 << 20); x[::4096] = b'1' * len(x[::4096])")
    assert done.returncode == -9
    assert group.events().oom_kills == 1


def test_page_cache_over_the_limit_is_reclaimed(group: MemoryCgroup, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    done = _python(group, tmp_path, f"""
with open({str(big)!r}, "wb") as out:  # 192 MiB of page cache through a 64 MiB limit
    for _ in range(24):
        out.write(bytes(8 << 20))
with open({str(big)!r}, "rb") as f:
    while f.read(1 << 20):
        pass
""")
    assert done.returncode == 0, done.stderr
    events = group.events()
    assert events.oom_kills == 0
    assert events.failcnt > 0  # the limit was reached, and the kernel reclaimed cache
    assert events.peak_bytes <= 64 * MiB


def test_remove_moves_what_is_left_out_and_deletes_the_group(group: MemoryCgroup,
                                                             tmp_path: Path) -> None:
    launcher = launcher_in_group(group, sys.executable, tmp_path)
    sleeper = subprocess.Popen([str(launcher), "-c", "import time; time.sleep(60)"])
    try:
        while sleeper.pid not in group.pids():  # the launcher joins as it starts
            assert sleeper.poll() is None
        assert group.holds(sleeper.pid)
        group.remove()
        assert not group.path.exists()
        assert not group.holds(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
