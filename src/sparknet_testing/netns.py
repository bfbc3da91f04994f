"""Workers as separate hosts on virtual links: one network namespace per worker, joined to a
bridge on this host, so a test can cut a worker's link or slow it down.

Each link is a pair of TAP devices, one on the bridge and one in the worker's namespace, and
a ``FramePump`` thread in this process copies Ethernet frames between them: a veth pair in
user space, whose frames towards the worker can be held back by a set delay. (The kernel's
netem would do the same, but kernels without the sch_netem module, such as this project's VM,
cannot load it; the pump needs only /dev/net/tun.) Needs root and iproute2;
``unavailable()`` says why not when something is missing.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import select
import shutil
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field

_TUNSETIFF = 0x400454CA
_IFF_TAP, _IFF_NO_PI = 0x0002, 0x1000


class NetnsError(RuntimeError):
    """A namespace, link or queueing discipline could not be set up."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def unavailable() -> str | None:
    """Why virtual hosts cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's ip command is not installed"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing (no TAP devices)"
    probe = f"snprobe{os.getpid() % 10000}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _open_tap(name: str) -> int:
    """A new TAP device ``name`` in this namespace; it lives while the descriptor is open."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TAP | _IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


class FramePump:
    """Copies frames between a bridge-side and a worker-side TAP device; frames towards the
    worker wait ``delay`` seconds first (a constant delay keeps them in order)."""

    def __init__(self, bridge_fd: int, worker_fd: int) -> None:
        self.bridge_fd, self.worker_fd = bridge_fd, worker_fd
        self.delay = 0.0
        self._towards_worker: collections.deque[tuple[float, bytes]] = collections.deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sparknet-frame-pump",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fds = [self.bridge_fd, self.worker_fd]
        while not self._stop.is_set():
            wait = 0.05
            if self._towards_worker:
                wait = max(0.0, min(wait, self._towards_worker[0][0] - time.monotonic()))
            readable, _, _ = select.select(fds, [], [], wait)
            for fd in readable:
                with contextlib.suppress(BlockingIOError, OSError):
                    while True:
                        frame = os.read(fd, 65536)
                        if fd == self.bridge_fd:
                            self._towards_worker.append((time.monotonic() + self.delay, frame))
                        else:
                            self._write(self.bridge_fd, frame)
            now = time.monotonic()
            while self._towards_worker and self._towards_worker[0][0] <= now:
                self._write(self.worker_fd, self._towards_worker.popleft()[1])

    @staticmethod
    def _write(fd: int, frame: bytes) -> None:
        with contextlib.suppress(OSError):  # a link that is down drops the frame, as a wire would
            os.write(fd, frame)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for fd in (self.bridge_fd, self.worker_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass
class VirtualHosts:
    """A bridge with this host at ``.1`` and worker ``i`` in namespace ``ns(i)`` at ``.10+i``."""

    count: int
    tag: str = field(default_factory=lambda: f"sn{os.getpid() % 10000}")
    subnet: str = "10.213.0"
    created: list[str] = field(default_factory=list)
    pumps: list[FramePump] = field(default_factory=list)

    @property
    def host_ip(self) -> str:
        return f"{self.subnet}.1"

    def worker_ip(self, index: int) -> str:
        return f"{self.subnet}.{10 + index}"

    def namespace(self, index: int) -> str:
        return f"{self.tag}w{index}"

    def link(self, index: int) -> str:
        """The bridge side of worker ``index``'s link (what ``cut`` takes down)."""
        return f"{self.tag}h{index}"

    @property
    def bridge(self) -> str:
        return f"{self.tag}br"

    def command_prefix(self, index: int) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(index)]

    def create(self) -> VirtualHosts:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self.created.append(f"link:{self.bridge}")
            _ip("addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for index in range(self.count):
                self._add_worker(index)
        except BaseException:
            self.destroy()
            raise
        return self

    def _add_worker(self, index: int) -> None:
        namespace, bridge_end, worker_end = (self.namespace(index), self.link(index),
                                             f"{self.tag}g{index}")
        _ip("netns", "add", namespace)
        self.created.append(f"netns:{namespace}")
        try:
            bridge_fd, worker_fd = _open_tap(bridge_end), _open_tap(worker_end)
        except OSError as exc:
            raise NetnsError(f"cannot create TAP devices {bridge_end}/{worker_end}: {exc}"
                             ) from None
        self.pumps.append(FramePump(bridge_fd, worker_fd))
        _ip("link", "set", bridge_end, "master", self.bridge)
        _ip("link", "set", bridge_end, "up")
        _ip("link", "set", worker_end, "netns", namespace)
        inside = ["netns", "exec", namespace, "ip"]
        _ip(*inside, "addr", "add", f"{self.worker_ip(index)}/24", "dev", worker_end)
        _ip(*inside, "link", "set", worker_end, "up")
        _ip(*inside, "link", "set", "lo", "up")
        _ip(*inside, "route", "add", "default", "via", self.host_ip)

    def cut(self, index: int) -> None:
        """Takes worker ``index``'s link down: its host is cut off, its processes live on."""
        _ip("link", "set", self.link(index), "down")

    def delay(self, milliseconds: float) -> None:
        """Holds every frame towards a worker back by ``milliseconds`` (round trip +that)."""
        for pump in self.pumps:
            pump.delay = milliseconds / 1000

    def namespace_of(self, pid: int) -> int | None:
        """The index of the worker namespace process ``pid`` runs in, if any."""
        found = _ip("netns", "identify", str(pid), check=False).stdout.split()
        for index in range(self.count):
            if self.namespace(index) in found:
                return index
        return None

    def destroy(self) -> None:
        for pump in self.pumps:
            pump.stop()  # closing the descriptors removes the TAP devices
        self.pumps.clear()
        for item in reversed(self.created):
            kind, name = item.split(":", 1)
            _ip(kind, "del", name, check=False)
        self.created.clear()
