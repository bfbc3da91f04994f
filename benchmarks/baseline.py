"""The plain single-process PyTorch loop that every benchmark compares sparknet against.

Same network, initial weights, sampling and step as one sparknet worker: batches come from
the engine's own sampler (``batch_indices``) on partition 0, the index stream the engine's
worker draws for K = 1 (over its shard, which the engine shuffles once); one step is SGD
momentum 0.9 on uint8 images scaled to [0, 1]. Also: a throughput timer that warms up first,
and two 1-thread loops side by side.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sparknet.engine.local_steps import batch_indices
from sparknet.models.zoo import LeNet

BATCH = 64
SEED = 0
WARMUP_STEPS = 20
Factory = Callable[[], nn.Module]


def initial_network(seed: int = SEED, factory: Factory = LeNet) -> nn.Module:
    """The network as sparknet's trainer starts it: built right after seeding torch."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(seed)
        return factory()


def sgd(model: nn.Module, lr: float = 0.01) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def batches(num_examples: int, *, partition: int = 0, seed: int = SEED,
            batch_size: int = BATCH) -> Iterator[np.ndarray]:
    """Endless seeded epoch-wise batches of indices, the stream sparknet's worker draws."""
    chunk, offset = 100, 0
    while True:
        yield from batch_indices(num_examples=num_examples, batch_size=batch_size, steps=chunk,
                                 step_offset=offset, seed=seed, partition=partition)
        offset += chunk


def sgd_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: np.ndarray,
             labels: np.ndarray | torch.Tensor) -> None:
    """One step on uint8 images scaled to [0, 1], as every contender's worker does."""
    labels = torch.as_tensor(labels)
    loss = F.cross_entropy(model(torch.from_numpy(images).float() * (1 / 255)), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, images: np.ndarray,
                labels: np.ndarray, stream: Iterator[np.ndarray], steps: int) -> None:
    for _ in range(steps):
        batch = next(stream)
        sgd_step(model, optimizer, images[batch], labels[batch])


def loop_throughput(images: np.ndarray, labels: np.ndarray, *, threads: int, steps: int,
                    factory: Factory = LeNet) -> float:
    """Samples/s of ``steps`` timed steps after WARMUP_STEPS untimed ones (lr: speed-neutral)."""
    with torch_threads(threads):
        model = initial_network(SEED, factory)
        optimizer = sgd(model)
        stream = batches(len(labels))
        train_steps(model, optimizer, images, labels, stream, WARMUP_STEPS)
        started = time.perf_counter()
        train_steps(model, optimizer, images, labels, stream, steps)
        return steps * BATCH / (time.perf_counter() - started)


def _alone_on_fashion_mnist(steps: int, factory: Factory) -> float:
    from sparknet.data import fashion_mnist

    split = fashion_mnist.load_split("train")
    return loop_throughput(split.images, split.labels, threads=1, steps=steps, factory=factory)


def side_by_side(steps: int, factory: Factory = LeNet) -> list[float]:
    """Samples/s of two 1-thread loops on Fashion-MNIST, run at once in two processes.

    Their ratio to one loop alone is the ceiling of K = 2 efficiency on this machine: the two
    cores slow each other down (shared caches, memory bandwidth) before Spark adds anything.
    """
    # spawn, not fork: safe after Spark's JVM gateway threads have started
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        return pool.starmap(_alone_on_fashion_mnist, [(steps, factory)] * 2, chunksize=1)
