"""Small networks for fault tests, importable by executors as ``sparknet_testing.faults:NAME``.

Faults are armed by files in the folder named by ``$SPARKNET_FAULT_DIR`` (the standalone
cluster sets it for its executors), so a test decides when a fault happens without the
network's weights or the training configuration changing:

- ``tripwire_net``: with ``tripwire.json`` = ``{"after_forwards": N}``, the first Python
  worker to run its N-th forward pass writes its pid to ``tripped`` and then waits there,
  inside a round, to be killed by the test. Every other process (and every retry) runs on.
  With ``"hold": true`` it waits instead until a file ``release`` appears, then goes on
  (the test adds or decommissions a worker meanwhile).
- ``failing_net``: while a file ``fail`` exists, every forward pass raises.
- ``eval_failing_net``: while a file ``fail`` exists, every forward pass in eval mode (the
  test-set evaluation) raises; training runs on.

Without those files both behave exactly like ``tiny_net``, so an undisturbed run with the
same seed is the reference for a disturbed one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from torch import nn

from sparknet_testing.standalone import FAULT_DIR_ENV

TRIPWIRE_PLAN = "tripwire.json"
TRIPPED = "tripped"
FAIL = "fail"
# With ``"hold": true`` in the plan the tripped worker waits for this file, then goes on.
RELEASE = "release"
# A tripped worker that nobody kills gives up after this long and fails its task instead.
TRIPWIRE_TIMEOUT_S = 120.0


def tiny_net() -> nn.Module:
    """784 -> 32 -> 10 MLP for 1x28x28 inputs: a few milliseconds per step on one core."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 32), nn.ReLU(), nn.Linear(32, 10))


def _fault_dir() -> Path | None:
    folder = os.environ.get(FAULT_DIR_ENV)
    return Path(folder) if folder else None


class _Tripwire(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_net()
        self.forwards = 0  # per process: a Python worker caches the module across tasks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        folder = _fault_dir()
        plan = folder / TRIPWIRE_PLAN if folder is not None else None
        if plan is not None and plan.is_file():
            settings = json.loads(plan.read_text())
            if self.forwards == int(settings["after_forwards"]) and \
                    _claim(plan.with_name(TRIPPED)):
                if settings.get("hold"):
                    _wait_for_release(plan.with_name(RELEASE))
                else:
                    _wait_to_be_killed()
        return self.net(x)


def _claim(marker: Path) -> bool:
    """Creates ``marker`` with this pid; only the first process anywhere succeeds."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(str(os.getpid()))
    return True


def _wait_to_be_killed() -> None:
    deadline = time.monotonic() + TRIPWIRE_TIMEOUT_S
    while time.monotonic() < deadline:
        time.sleep(0.05)  # the test's signal ends this process here
    raise RuntimeError(f"tripwire: nobody killed process {os.getpid()} within "
                       f"{TRIPWIRE_TIMEOUT_S:.0f} s")


def _wait_for_release(release: Path) -> None:
    """Holds the task inside its round (the test changes the cluster meanwhile)."""
    deadline = time.monotonic() + TRIPWIRE_TIMEOUT_S
    while not release.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"tripwire: nobody released process {os.getpid()} within "
                               f"{TRIPWIRE_TIMEOUT_S:.0f} s")
        time.sleep(0.05)


class _Failing(nn.Module):
    def __init__(self, *, only_in_eval: bool = False) -> None:
        super().__init__()
        self.net = tiny_net()
        self.only_in_eval = only_in_eval

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        folder = _fault_dir()
        armed = folder is not None and (folder / FAIL).is_file()
        if armed and not (self.only_in_eval and self.training):
            raise RuntimeError("injected failure: this network fails in every "
                               f"{'evaluation' if self.only_in_eval else 'forward'} pass")
        return self.net(x)


def tripwire_net() -> nn.Module:
    return _Tripwire()


def failing_net() -> nn.Module:
    return _Failing()


def eval_failing_net() -> nn.Module:
    return _Failing(only_in_eval=True)
