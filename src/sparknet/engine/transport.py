"""How driver arrays (a round's state, a model's weights) reach the tasks: one transport for
the runners and for scoring.

- ``broadcast`` (classic sessions): one Spark broadcast; executors fetch it once each.
- ``inline`` (Spark Connect, which has no broadcasts): the arrays ride inside the plan.
- ``file`` (Spark Connect with a state directory every executor reads, for arrays too large
  for a plan): one file per value, named by this transport's own token, checked by its
  SHA-256 digest when read.

What a task gets has ``.value``: a tuple of arrays (None for an absent one). Sharing the same
arrays again (the same objects) returns the same handle, so a round and the evaluation after it
send the state once.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sparknet.data.placement import broadcast, is_connect, spark_context
from sparknet.errors import TrainingError

if TYPE_CHECKING:
    from pyspark import SparkContext

Arrays = tuple[np.ndarray | None, ...]


class Shared(Protocol):
    """What a task reads the arrays from (a broadcast, ``Inline`` or ``InFile``)."""

    @property
    def value(self) -> Arrays: ...


@dataclass(frozen=True)
class Inline:
    """The arrays inside the Spark plan."""

    value: Arrays


@dataclass(frozen=True)
class InFile:
    """The arrays in a file every executor reads; checked against its digest when read."""

    path: str
    digest: str
    parts: tuple[tuple[str, int] | None, ...]  # (dtype, count) of each array; None: absent

    @property
    def value(self) -> Arrays:
        try:
            raw = Path(self.path).read_bytes()
        except OSError as exc:
            raise TrainingError(f"state file {self.path} cannot be read ({exc.strerror or exc}): "
                                "it was deleted, or the folder is not on storage shared by "
                                "every executor (--state-dir)") from None
        if hashlib.sha256(raw).hexdigest() != self.digest:
            raise TrainingError(f"state file {self.path} does not match its digest: it was "
                                "changed or is not on storage shared by every executor")
        arrays: list[np.ndarray | None] = []
        offset = 0
        for part in self.parts:
            if part is None:
                arrays.append(None)
                continue
            array = np.frombuffer(raw, np.dtype(part[0]), part[1], offset)
            offset += array.nbytes
            arrays.append(array)
        return tuple(arrays)


class Transport:
    """Shares arrays with tasks, remembers the last handle, and frees what it made."""

    name = "inline"

    def __init__(self) -> None:
        self._last: tuple[Arrays, Any] | None = None

    def share(self, arrays: Arrays) -> Shared:
        if self._last is not None and len(self._last[0]) == len(arrays) and \
                all(a is b for a, b in zip(self._last[0], arrays, strict=True)):
            return self._last[1]
        handle = self._make(arrays)
        self.release()
        self._last = (arrays, handle)
        return handle

    def _make(self, arrays: Arrays) -> Shared:
        return Inline(arrays)

    def _free(self, handle: Any) -> None:
        pass

    def release(self) -> None:
        """Frees the last shared value (the broadcast blocks, the file)."""
        if self._last is not None:
            self._free(self._last[1])
        self._last = None


class BroadcastTransport(Transport):
    name = "broadcast"

    def __init__(self, sc: SparkContext) -> None:
        super().__init__()
        self.context = sc

    def _make(self, arrays: Arrays) -> Shared:
        return broadcast(self.context, arrays)

    def _free(self, handle: Any) -> None:
        handle.destroy()


class FileTransport(Transport):
    name = "file"

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self._token = uuid.uuid4().hex[:12]
        self._count = 0

    def _make(self, arrays: Arrays) -> Shared:
        parts = [np.ascontiguousarray(a) for a in arrays if a is not None]
        raw = b"".join(a.tobytes() for a in parts)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"state-{self._token}-{self._count:06d}.bin"
        self._count += 1
        temporary = path.with_suffix(f".tmp-{os.getpid()}")
        temporary.write_bytes(raw)
        temporary.replace(path)
        return InFile(str(path), hashlib.sha256(raw).hexdigest(),
                      tuple(None if a is None else (a.dtype.str, a.size) for a in arrays))

    def _free(self, handle: Any) -> None:
        Path(handle.path).unlink(missing_ok=True)


def transport_for(spark: Any, *, state_dir: str | Path | None = None) -> Transport:
    """Files in ``state_dir`` when one is given; else broadcasts on a classic session and the
    plan on Spark Connect."""
    if state_dir is not None:
        return FileTransport(Path(state_dir))
    return Transport() if is_connect(spark) else BroadcastTransport(spark_context(spark))
