"""Workers as separate hosts on virtual links: one network namespace per worker, joined to a
bridge on this host by a veth pair, so a test can cut a worker's link or slow it down.

Needs root and iproute2 (``ip``, and ``tc`` with the kernel's netem for added latency);
``unavailable()`` says why not when they are missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field


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
    probe = f"snprobe{os.getpid() % 10000}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass
class VirtualHosts:
    """A bridge with this host at ``.1`` and worker ``i`` in namespace ``ns(i)`` at ``.10+i``."""

    count: int
    tag: str = field(default_factory=lambda: f"sn{os.getpid() % 10000}")
    subnet: str = "10.213.0"
    created: list[str] = field(default_factory=list)

    @property
    def host_ip(self) -> str:
        return f"{self.subnet}.1"

    def worker_ip(self, index: int) -> str:
        return f"{self.subnet}.{10 + index}"

    def namespace(self, index: int) -> str:
        return f"{self.tag}w{index}"

    def link(self, index: int) -> str:
        """The host side of worker ``index``'s veth pair (what ``cut`` takes down)."""
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
                namespace, host_end, guest_end = (self.namespace(index), self.link(index),
                                                  f"{self.tag}g{index}")
                _ip("netns", "add", namespace)
                self.created.append(f"netns:{namespace}")
                _ip("link", "add", host_end, "type", "veth", "peer", "name", guest_end)
                self.created.append(f"link:{host_end}")
                _ip("link", "set", host_end, "master", self.bridge)
                _ip("link", "set", host_end, "up")
                _ip("link", "set", guest_end, "netns", namespace)
                inside = ["netns", "exec", namespace, "ip"]
                _ip(*inside, "addr", "add", f"{self.worker_ip(index)}/24", "dev", guest_end)
                _ip(*inside, "link", "set", guest_end, "up")
                _ip(*inside, "link", "set", "lo", "up")
                _ip(*inside, "route", "add", "default", "via", self.host_ip)
        except BaseException:
            self.destroy()
            raise
        return self

    def cut(self, index: int) -> None:
        """Takes worker ``index``'s link down: its host is cut off, its processes live on."""
        _ip("link", "set", self.link(index), "down")

    def delay(self, milliseconds: int) -> None:
        """Adds ``milliseconds`` of one-way delay on every worker link (netem)."""
        for index in range(self.count):
            result = subprocess.run(["tc", "qdisc", "replace", "dev", self.link(index), "root",
                                     "netem", "delay", f"{milliseconds}ms"],
                                    capture_output=True, text=True, timeout=30)
            if result.returncode != 0:
                raise NetnsError(f"tc netem on {self.link(index)}: {result.stderr.strip()}")

    def namespace_of(self, pid: int) -> int | None:
        """The index of the worker namespace process ``pid`` runs in, if any."""
        found = _ip("netns", "identify", str(pid), check=False).stdout.split()
        for index in range(self.count):
            if self.namespace(index) in found:
                return index
        return None

    def destroy(self) -> None:
        for item in reversed(self.created):
            kind, name = item.split(":", 1)
            with contextlib.suppress(NetnsError):
                _ip(kind, "del", name, check=False)
        self.created.clear()


def netem_unavailable(hosts: VirtualHosts) -> str | None:
    """Why added latency cannot be made here (a kernel without sch_netem), or None."""
    try:
        hosts.delay(1)
    except NetnsError as exc:
        return str(exc)
    for index in range(hosts.count):
        subprocess.run(["tc", "qdisc", "del", "dev", hosts.link(index), "root"],
                       capture_output=True, timeout=30)
    return None
