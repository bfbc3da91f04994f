"""A memory cgroup with a limit: bounds the resident memory of a group of processes.

``RLIMIT_AS`` (``spark.executor.pyspark.memory``) limits address space, which PyTorch alone
reserves by the gigabyte; a memory cgroup limits what the processes really hold: their
anonymous memory plus the page cache they fill. The kernel reclaims that page cache when the
group reaches its limit and kills a process (an OOM kill, counted in the group's events) only
when the anonymous memory alone does not fit. This is the limit YARN and Kubernetes put on a
container.

A process must join the group *before* it allocates: Linux no longer moves memory already
charged elsewhere along with a process (cgroup v1's ``move_charge_at_immigrate`` is gone), so
the memory a process held before it joined stays charged to its old group. Spark's Python
daemon joins as it starts when ``PYSPARK_PYTHON`` is a launcher that joins the group and then
runs Python (``launcher_in_group``); every worker it forks inherits the group.

Works with cgroup v1 (``memory.limit_in_bytes``) and v2 (``memory.max``); needs write access
to a memory hierarchy (root, or a delegated subtree).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class CgroupUnavailable(RuntimeError):
    """No memory cgroup hierarchy this process may create a group in."""


@dataclass(frozen=True)
class MemoryEvents:
    """What the limit did: ``failcnt`` (v1: times usage hit the limit and the kernel had to
    reclaim; v2: ``max`` events), ``oom_kills`` (processes killed because even after
    reclaiming page cache they did not fit) and ``peak_bytes`` (the group's highest usage,
    page cache included)."""

    failcnt: int
    oom_kills: int
    peak_bytes: int


def _memory_mounts() -> list[tuple[Path, int]]:
    """(mount point, version) of each memory cgroup hierarchy, from /proc/self/mountinfo."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        kind = fields[fields.index("-") + 1]
        if kind == "cgroup2":
            found.append((Path(fields[4]), 2))
        elif kind == "cgroup" and "memory" in fields[-1].split(","):
            found.append((Path(fields[4]), 1))
    return found


def _own_group(version: int) -> str:
    """This process's group path inside the hierarchy of ``version``, from /proc/self/cgroup."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        number, controllers, path = line.split(":", 2)
        if version == 2 and number == "0" or version == 1 and "memory" in controllers.split(","):
            return path.lstrip("/")
    return ""


class MemoryCgroup:
    """A new memory cgroup (a folder) with a limit; ``remove()`` deletes it.

    Created under this process's own group when that is writable, else under the hierarchy's
    root. ``MemoryCgroup.create`` raises ``CgroupUnavailable`` with the reason when neither is.
    """

    def __init__(self, path: Path, version: int, mount: Path) -> None:
        self.path = path
        self.version = version
        self._name = "/" + str(path.relative_to(mount))  # as /proc/PID/cgroup shows it

    @classmethod
    def create(cls, name: str, *, limit_bytes: int) -> MemoryCgroup:
        limit_file = {1: "memory.limit_in_bytes", 2: "memory.max"}
        tried = []
        for mount, version in _memory_mounts():
            for parent in (mount / _own_group(version), mount):
                path = parent / name
                try:
                    path.mkdir()
                except OSError as exc:
                    tried.append(f"{path}: {exc.strerror}")
                    continue
                if not (path / limit_file[version]).is_file():  # v2 without memory delegated
                    path.rmdir()
                    tried.append(f"{path}: no {limit_file[version]}")
                    continue
                group = cls(path, version, mount)
                (path / limit_file[version]).write_text(str(limit_bytes))
                if version == 2:
                    with contextlib.suppress(OSError):
                        (path / "memory.swap.max").write_text("0")
                return group
        raise CgroupUnavailable("no writable memory cgroup: " + ("; ".join(tried) or
                                                                   "no memory hierarchy mounted"))

    @property
    def limit_bytes(self) -> int:
        name = "memory.limit_in_bytes" if self.version == 1 else "memory.max"
        return int((self.path / name).read_text())

    def add(self, pid: int) -> None:
        """Moves process ``pid`` into the group; its children forked from now on follow it."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]

    def holds(self, pid: int) -> bool:
        """Whether ``pid`` is in this group (False once it has exited)."""
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            return False
        return any(line.split(":", 2)[2] == self._name and
                   (self.version == 2) == line.startswith("0::") for line in lines)

    def events(self) -> MemoryEvents:
        if self.version == 1:
            oom = dict(line.split() for line in
                       (self.path / "memory.oom_control").read_text().splitlines())
            return MemoryEvents(int((self.path / "memory.failcnt").read_text()),
                                int(oom.get("oom_kill", 0)),
                                int((self.path / "memory.max_usage_in_bytes").read_text()))
        counts = dict(line.split() for line in
                      (self.path / "memory.events").read_text().splitlines())
        peak = self.path / "memory.peak"
        return MemoryEvents(int(counts.get("max", 0)), int(counts.get("oom_kill", 0)),
                            int(peak.read_text()) if peak.is_file() else 0)

    def remove(self, *, timeout: float = 10.0) -> None:
        """Moves any process still inside to the parent group, then deletes the group."""
        deadline = time.monotonic() + timeout
        while True:
            for pid in self.pids():
                with contextlib.suppress(OSError):  # exited meanwhile
                    (self.path.parent / "cgroup.procs").write_text(str(pid))
            try:
                self.path.rmdir()
                return
            except OSError:  # EBUSY while a moved process is still being accounted
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def __enter__(self) -> MemoryCgroup:
        return self

    def __exit__(self, *_: object) -> None:
        self.remove()


def launcher_in_group(group: MemoryCgroup, program: str, folder: Path) -> Path:
    """An executable in ``folder`` that joins ``group``, then runs ``program`` with its arguments.

    As ``PYSPARK_PYTHON`` it starts Spark's Python daemon (and so every worker the daemon
    forks) inside the group, before it has allocated anything.
    """
    path = folder / "python-in-memory-cgroup"
    procs = shlex.quote(str(group.path / "cgroup.procs"))
    path.write_text(f'#!/bin/sh\necho $$ > {procs} && exec {shlex.quote(program)} "$@"\n')
    path.chmod(0o755)
    return path


@contextlib.contextmanager
def pyspark_python(program: Path) -> Iterator[None]:
    """``PYSPARK_PYTHON`` set to ``program`` inside the block (a SparkContext reads it when it
    starts), restored after."""
    before = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = str(program)
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYSPARK_PYTHON"]
        else:
            os.environ["PYSPARK_PYTHON"] = before
