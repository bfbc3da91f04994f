"""The worker's device handling on the CPU: look-ahead batches change nothing, the change is
computed as the NumPy formula computes it, and the precision setting does what it says."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sparknet.config import OptimizerConfig
from sparknet.data.shards import Shard
from sparknet.engine.device import gathered, on_device, tf32_scope
from sparknet.engine.local_steps import LocalPlan, RoundState, WorkerResult, run_local_steps
from sparknet.flat import FlatLayout, flatten_state
from sparknet.models import LeNet
from sparknet.models.kinds import ScaledInput, TorchOptimizer

CPU = torch.device("cpu")


def _plan(**overrides: object) -> LocalPlan:
    values: dict[str, object] = dict(
        seed=5, round_index=1, step_offset=3, tau=4, batch_size=8,
        optimizer=TorchOptimizer(OptimizerConfig(lr=0.05, momentum=0.9)),
        input_prep=ScaledInput((1, 28, 28), 1 / 255), compression="none",
        sample_weight=True, threads=1)
    values.update(overrides)
    return LocalPlan(**values)  # type: ignore[arg-type]


def _shard(n: int = 50) -> Shard:
    rng = np.random.default_rng(1)
    return Shard(rng.integers(0, 256, size=(n, 1, 28, 28), dtype=np.uint8),
                 rng.integers(0, 10, size=n).astype(np.int64))


def _round(plan: LocalPlan, *, momentum: bool = False) -> tuple[WorkerResult, nn.Module,
                                                                 RoundState]:
    torch.manual_seed(0)
    model = LeNet()
    layout = FlatLayout.of(model)
    floats, ints = flatten_state(model, layout)
    state = RoundState(floats.copy(), ints.copy(),
                       np.full(floats.size, 1e-3, np.float32) if momentum else None)
    result = run_local_steps(model, layout, _shard(), state, plan, partition=2, device=CPU)
    return result, model, state


def test_look_ahead_gives_bit_identical_weights_on_cpu() -> None:
    ahead, model_a, _ = _round(_plan(prefetch=True), momentum=True)
    plain, model_b, _ = _round(_plan(prefetch=False), momentum=True)
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert np.array_equal(np.asarray(ahead.delta.data), np.asarray(plain.delta.data))
    assert ahead.loss_sum == plain.loss_sum and ahead.correct == plain.correct
    assert ahead.momentum_sum is not None and plain.momentum_sum is not None
    assert np.array_equal(ahead.momentum_sum, plain.momentum_sum)


def test_the_change_computed_on_the_device_equals_the_numpy_formula() -> None:
    result, model, state = _round(_plan())
    assert result.weight == 50.0
    after, _ = flatten_state(model, FlatLayout.of(model))
    expected = (after - state.floats) * np.float32(result.weight)  # the CPU/NumPy version
    got = np.asarray(result.delta.data)
    assert got.dtype == np.float32 and got.tobytes() == expected.tobytes()


def test_gathered_keeps_order_and_raises_in_place() -> None:
    seen: list[int] = []

    def gather(index: int) -> int:
        if index == 3:
            raise ValueError("bad batch 3")
        seen.append(index)
        return index * 10

    assert list(gathered(lambda i: i * 10, 5, ahead=True)) == [0, 10, 20, 30, 40]
    out = gathered(gather, 5, ahead=True)
    assert [next(out), next(out), next(out)] == [0, 10, 20]
    with pytest.raises(ValueError, match="bad batch 3"):
        next(out)
    batches = [(torch.ones(2), torch.zeros(2)), (torch.zeros(2), torch.ones(2))]
    assert list(on_device(iter(batches), CPU)) == batches  # the CPU: passed through


def _hooked_round(precision: str) -> tuple[list[torch.dtype], list[tuple[bool, bool]]]:
    dtypes: list[torch.dtype] = []
    flags: list[tuple[bool, bool]] = []
    torch.manual_seed(0)
    model = LeNet()

    def hook(_: nn.Module, __: object, out: torch.Tensor) -> None:
        dtypes.append(out.dtype)
        flags.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))

    model.ip1.register_forward_hook(hook)
    layout = FlatLayout.of(model)
    floats, ints = flatten_state(model, layout)
    run_local_steps(model, layout, _shard(), RoundState(floats, ints),
                    _plan(precision=precision, tau=2), partition=0, device=CPU)
    return dtypes, flags


def test_bf16_runs_the_forward_pass_under_autocast_on_cpu() -> None:
    dtypes, _ = _hooked_round("bf16")
    assert dtypes == [torch.bfloat16] * 2
    dtypes, _ = _hooked_round("fp32")
    assert dtypes == [torch.float32] * 2


@pytest.mark.parametrize(("precision", "tf32"), [("fp32", False), ("tf32", True),
                                                 ("bf16", True)])
def test_precision_sets_tf32_during_the_steps_and_restores_it(precision: str,
                                                              tf32: bool) -> None:
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.allow_tf32 = not tf32  # the opposite, to see it set and restored
    try:
        _, flags = _hooked_round(precision)
        assert flags == [(tf32, tf32)] * 2
        assert torch.backends.cudnn.allow_tf32 is (not tf32)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    with tf32_scope("fp32"):
        assert not torch.backends.cuda.matmul.allow_tf32
        assert not torch.backends.cudnn.allow_tf32


def test_channels_last_trains_to_the_same_weights_within_rounding() -> None:
    plain, _, _ = _round(_plan(tau=1, sample_weight=False))  # one step: no chaos
    nhwc, model, _ = _round(_plan(tau=1, sample_weight=False, channels_last=True))
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(np.asarray(nhwc.delta.data), np.asarray(plain.delta.data),
                               rtol=1e-3, atol=1e-4)
