"""What one worker does in one round, as a pure function of its inputs; no Spark here.

A task's output depends only on (seed, round, partition, the broadcast state), never on which
executor or attempt runs it, so a retried task reproduces its first attempt bit for bit.
"""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sparknet.averaging import EncodedDelta, encode_delta
from sparknet.config import Compression, Precision
from sparknet.data.shards import ShardRows
from sparknet.engine.device import (
    forward_precision,
    gathered,
    memory_format,
    on_device,
    stage,
    tf32_scope,
)
from sparknet.flat import (
    Entry,
    FlatLayout,
    flat_parameters_view,
    load_flat_state,
    state_tensors,
)
from sparknet.models.kinds import InputPrep, LocalOptimizer, reset_carried_state
from sparknet.models.objectives import MULTICLASS, Objective


@dataclass(frozen=True, kw_only=True)
class LocalPlan:
    """Plain data describing one worker's round; it crosses to executors with the closure.

    ``optimizer`` and ``input_prep`` come from the model kind (``sparknet.models.kinds``).
    ``precision`` and ``channels_last`` are the engine settings of that name; ``prefetch``
    gathers each batch while the previous step runs (the results are the same without it).
    """

    seed: int
    round_index: int
    step_offset: int
    tau: int
    batch_size: int
    optimizer: LocalOptimizer
    input_prep: InputPrep
    compression: Compression
    sample_weight: bool
    threads: int
    objective: Objective = MULTICLASS
    precision: Precision = "fp32"
    channels_last: bool = False
    prefetch: bool = True
    row_weights: bool = False  # the labels end with each row's weight (InputSpec.row_weights)
    label_width: int = 0  # the targets' width (0: class indices) when row_weights


@dataclass(frozen=True)
class RoundState:
    """What the driver broadcasts each round."""

    floats: np.ndarray
    ints: np.ndarray
    momentum: np.ndarray | None = None

    def arrays(self) -> tuple[np.ndarray | None, ...]:
        """The state as a tuple of arrays, the form a transport carries."""
        return self.floats, self.ints, self.momentum

    @classmethod
    def of(cls, arrays: tuple[np.ndarray | None, ...]) -> RoundState:
        floats, ints, momentum = arrays
        assert floats is not None and ints is not None
        return cls(floats, ints, momentum)


@dataclass
class WorkerResult:
    """One worker's (or a partial sum of several workers') contribution to a round.

    ``delta`` is the weighted sum of weight changes, still encoded when it comes from a single
    worker; ``weight`` the sum of weights it was multiplied by.
    """

    delta: EncodedDelta | np.ndarray
    weight: float
    loss_sum: float
    correct: int
    samples: int
    ints_max: np.ndarray
    momentum_sum: np.ndarray | None
    bytes_sent: int
    workers: int = 1
    compute_seconds: float = 0.0  # slowest worker's time in its steps; not part of the state


def stream_seed(seed: int, *path: int) -> int:
    """A 63-bit seed derived from a path of integers (seed, stream, round, partition...)."""
    return int(np.random.SeedSequence([seed, *path]).generate_state(2, np.uint64)[0] >> 1)


def batch_indices(*, num_examples: int, batch_size: int, steps: int, step_offset: int,
                  seed: int, partition: int) -> np.ndarray:
    """Indices for ``steps`` batches, continuing a seeded epoch-wise permutation of the shard.

    Sampling is without replacement within each pass over the shard, and depends only on the
    global step, so every partition does exactly ``steps`` steps whatever its size.
    """
    start = step_offset * batch_size
    stop = start + steps * batch_size
    out = np.empty(stop - start, dtype=np.int64)
    position = start
    while position < stop:
        epoch, offset = divmod(position, num_examples)
        order = np.random.default_rng(stream_seed(seed, 1, partition, epoch)).permutation(
            num_examples)
        take = min(num_examples - offset, stop - position)
        out[position - start: position - start + take] = order[offset: offset + take]
        position += take
    return out.reshape(steps, batch_size)


def run_local_steps(model: nn.Module, layout: FlatLayout, shard: ShardRows, state: RoundState,
                    plan: LocalPlan, *, partition: int, device: torch.device) -> WorkerResult:
    """Loads the broadcast state, runs ``plan.tau`` SGD steps on the shard, reports the change.

    The state goes to the device in one copy, and the change comes back in one: the weights
    stay on the device in between.
    """
    torch.set_num_threads(plan.threads)
    model.to(device)
    if plan.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    start = torch.from_numpy(state.floats).to(device)
    load_flat_state(model, layout, start, state.ints)
    model.train()
    reset_carried_state(model)  # a recurrent state carries over this task's steps only
    optimizer = plan.optimizer.make(model, iteration=plan.step_offset)
    params = flat_parameters_view(model, layout)
    momentum_key = plan.optimizer.momentum_key
    if state.momentum is not None:
        _load_momentum(optimizer, params, state.momentum, momentum_key)

    started = time.perf_counter()
    micro = plan.optimizer.micro_batches
    indices = batch_indices(num_examples=len(shard), batch_size=plan.batch_size,
                            steps=plan.tau * micro, step_offset=plan.step_offset * micro,
                            seed=plan.seed, partition=partition)
    with tf32_scope(plan.precision), \
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(stream_seed(plan.seed, 2, plan.round_index, partition))
        loss_sum, correct = _steps(model, optimizer, shard, indices, plan, partition=partition,
                                   device=device)
    optimizer.zero_grad(set_to_none=True)  # a cached network holds no gradients between rounds

    weight = float(len(shard)) if plan.sample_weight else 1.0
    floats, ints = state_tensors(model, layout)
    delta = ((floats - start) * weight).cpu().numpy()
    compute_seconds = time.perf_counter() - started
    encoded = encode_delta(delta, plan.compression)
    momentum = None
    if state.momentum is not None:
        momentum = (flat_momentum(optimizer, params, layout.num_floats, momentum_key)
                    * np.float32(weight))
    return WorkerResult(delta=encoded, weight=weight, loss_sum=float(loss_sum.item()),
                        correct=int(correct.item()), samples=plan.tau * micro * plan.batch_size,
                        ints_max=ints.cpu().numpy(), momentum_sum=momentum,
                        bytes_sent=encoded.nbytes + (0 if momentum is None else momentum.nbytes),
                        compute_seconds=compute_seconds)


def _steps(model: nn.Module, optimizer: torch.optim.Optimizer, shard: ShardRows,
           indices: np.ndarray, plan: LocalPlan, *, partition: int,
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The tau optimizer steps; (sum of losses, number correct) as device tensors."""
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    # Random crops/mirrors of a Caffe transform, like dropout, depend on (seed, round, partition).
    crop_rng = np.random.default_rng(stream_seed(plan.seed, 3, plan.round_index, partition))
    micro = plan.optimizer.micro_batches
    fmt = memory_format(plan.channels_last)

    def gather(index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return stage(*shard.rows(indices[index]), device)

    with closing(gathered(gather, len(indices), ahead=plan.prefetch)) as staged:
        # A preparation that runs on the device gets the batch there in its stored dtype.
        batches = on_device(staged, device) if plan.input_prep.on_device else staged
        for _ in range(plan.tau):
            optimizer.zero_grad(set_to_none=True)
            for _ in range(micro):  # Caffe's iter_size: gradients of micro-batches are summed
                features, labels = next(batches)
                x = plan.input_prep(features, device, train=True, rng=crop_rng)
                y = labels.to(device, non_blocking=True)
                weights = None
                if plan.row_weights:
                    y, weights = _split_row_weights(y, plan.label_width)
                with forward_precision(plan.precision, device):
                    outputs = model(x.contiguous(memory_format=fmt) if x.dim() == 4 else x)
                    loss = (plan.objective.loss(outputs, y) if weights is None
                            else plan.objective.weighted_loss(outputs, y, weights))
                loss.backward()
                loss_sum += loss.detach().double() * y.shape[0]
                right = plan.objective.correct(outputs.detach(), y)
                if right is not None:
                    correct += right
            optimizer.step()
    return loss_sum, correct


def _split_row_weights(labels: torch.Tensor, label_width: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stored labels ``[n, width + 1]`` -> (targets as the objective takes them, weights)."""
    targets = labels[:, 0].long() if label_width == 0 else labels[:, :-1]
    return targets, labels[:, -1]


def _load_momentum(optimizer: torch.optim.Optimizer, params: list[tuple[Entry, nn.Parameter]],
                   flat: np.ndarray, key: str) -> None:
    if not params:
        return
    source = torch.from_numpy(flat).to(params[0][1].device)  # one copy to the device
    for entry, param in params:
        optimizer.state[param][key] = (
            source[entry.offset: entry.offset + entry.size].reshape(param.shape)
            .to(param.dtype, copy=True))


def flat_momentum(optimizer: torch.optim.Optimizer, params: list[tuple[Entry, nn.Parameter]],
                  size: int, key: str) -> np.ndarray:
    """The optimizer's per-parameter buffer ``key`` as one flat float32 array of ``size``
    (zeros where a parameter has none), laid out as the flat weights."""
    if not params:
        return np.zeros(size, dtype=np.float32)
    flat = torch.zeros(size, dtype=torch.float32, device=params[0][1].device)
    for entry, param in params:
        buf = optimizer.state.get(param, {}).get(key)
        if buf is not None:
            flat[entry.offset: entry.offset + entry.size] = buf.detach().reshape(-1)
    return flat.cpu().numpy()  # one copy back


@torch.no_grad()
def evaluate_shard(model: nn.Module, layout: FlatLayout, shard: ShardRows, state: RoundState,
                   prep: InputPrep, *, batch_size: int, device: torch.device,
                   threads: int, objective: Objective = MULTICLASS) -> tuple[float, int, int]:
    """(sum of the objective's loss, number correct, number of examples) in eval mode."""
    torch.set_num_threads(threads)
    model.to(device)
    load_flat_state(model, layout, state.floats, state.ints)
    model.eval()
    reset_carried_state(model)
    loss_sum, correct = 0.0, 0
    rng = np.random.default_rng(0)  # only a Caffe transform with mirror draws in TEST phase
    for start in range(0, len(shard), batch_size):
        features, labels = shard.rows(slice(start, start + batch_size))
        x = prep(features, device, train=False, rng=rng)
        y = torch.from_numpy(labels).to(device)
        outputs = model(x)
        loss_sum += float(objective.loss(outputs, y).item()) * y.shape[0]
        right = objective.correct(outputs, y)
        correct += 0 if right is None else int(right.item())
    return loss_sum, correct, len(shard)
