"""How a worker uses its device: the arithmetic precision, and batches fed one step ahead.

Pure PyTorch, no Spark. Everything here also runs on the CPU, where it changes no result: the
same batches arrive in the same order with or without the look-ahead, and ``fp32`` is the
arithmetic the CPU does anyway.

Batches travel in their stored dtype (uint8 images stay uint8, a quarter of float32's bytes):
a background thread gathers the next batch from the shard while the current step runs, into
page-locked memory when the device is CUDA; its copy to the GPU is issued on a side stream
before the current step is queued, so it overlaps the step; the model kind's input
preparation then converts and normalises it on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TypeVar

import numpy as np
import torch

from sparknet.config import Precision
from sparknet.errors import ConfigError

T = TypeVar("T")
Batch = tuple[torch.Tensor, torch.Tensor]  # (stored features, int64 labels)


def check_device(device: str, master: str) -> None:
    """Before Spark starts: ``cuda`` on a master whose executors run on this machine
    (``local[K]``, ``local-cluster``) needs CUDA here. Other masters' executors decide (see
    ``engine.tasks.task_device``)."""
    if device == "cuda" and master.startswith("local") and not torch.cuda.is_available():
        raise ConfigError(f"device 'cuda' was asked for but this machine has no CUDA device "
                          f"(torch {torch.__version__}, master {master}): use --device auto or "
                          "cpu, or run on a machine with a GPU and a CUDA build of PyTorch")


@contextmanager
def tf32_scope(precision: Precision) -> Iterator[None]:
    """TF32 matmuls and convolutions on (``tf32``, ``bf16``) or off (``fp32``: exact float32)
    while the block runs; PyTorch's flags are restored after it (they are process-wide)."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (matmul.allow_tf32, cudnn.allow_tf32)
    matmul.allow_tf32 = cudnn.allow_tf32 = precision != "fp32"
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


def forward_precision(precision: Precision, device: torch.device) -> AbstractContextManager[None]:
    """The context for a forward pass and its loss: bfloat16 autocast for ``bf16``."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def stage(features: np.ndarray, labels: np.ndarray, device: torch.device) -> Batch:
    """A gathered batch as CPU tensors in its stored dtype, page-locked for a CUDA device (so
    that its copy can be asynchronous)."""
    x = torch.from_numpy(np.ascontiguousarray(features))
    y = torch.from_numpy(np.ascontiguousarray(labels))
    if device.type == "cuda":
        return x.pin_memory(), y.pin_memory()
    return x, y


def gathered(gather: Callable[[int], T], count: int, *,
             ahead: bool) -> Generator[T, None, None]:
    """``gather(0) ... gather(count - 1)`` in order; with ``ahead`` each is gathered on a
    background thread while the caller works on the previous one."""
    if not ahead or count < 2:
        for index in range(count):
            yield gather(index)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sparknet-gather") as pool:
        pending = pool.submit(gather, 0)
        for index in range(1, count + 1):
            ready = pending.result()
            if index < count:
                pending = pool.submit(gather, index)
            yield ready


def on_device(batches: Iterator[Batch], device: torch.device) -> Iterator[Batch]:
    """The batches copied to ``device``, one copy in flight ahead of the batch yielded.

    On CUDA each copy runs on a side stream and the compute stream waits for it only when the
    batch is used; on the CPU the batches pass through unchanged.
    """
    if device.type != "cuda":
        yield from batches
        return
    copier = torch.cuda.Stream(device)
    compute = torch.cuda.current_stream(device)

    def issue(batch: Batch) -> Batch:
        with torch.cuda.stream(copier):
            return (batch[0].to(device, non_blocking=True),
                    batch[1].to(device, non_blocking=True))

    pending: Batch | None = None
    for batch in batches:
        issued = issue(batch)
        if pending is not None:
            yield _ready(pending, compute, copier)
        pending = issued
    if pending is not None:
        yield _ready(pending, compute, copier)


def _ready(batch: Batch, compute: torch.cuda.Stream, copier: torch.cuda.Stream) -> Batch:
    compute.wait_stream(copier)
    for tensor in batch:  # the caching allocator must not reuse it before the compute is done
        tensor.record_stream(compute)
    return batch
