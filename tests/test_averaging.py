"""Pure aggregation and outer optimizers, checked against torch.optim and NumPy references."""

import numpy as np
import pytest
import torch

from sparknet.averaging import (
    INT8_CHUNK,
    OuterState,
    decode_delta,
    encode_delta,
    init_outer_state,
    outer_step,
)
from sparknet.config import OuterConfig


@pytest.fixture
def delta() -> np.ndarray:
    return np.random.default_rng(0).normal(0, 1e-2, 3 * INT8_CHUNK + 123).astype(np.float32)


def test_bf16_halves_and_int8_quarters_the_bytes(delta):
    full = encode_delta(delta, "none").nbytes
    assert full == delta.size * 4
    assert encode_delta(delta, "bf16").nbytes == full // 2
    int8 = encode_delta(delta, "int8")
    # One float32 scale per 4096-value chunk on top of one byte per value.
    assert int8.nbytes == delta.size + 4 * 4
    assert int8.nbytes / full < 0.2505


def test_bf16_round_trip_matches_torch_bfloat16(delta):
    decoded = decode_delta(encode_delta(delta, "bf16"))
    reference = torch.from_numpy(delta).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(decoded, reference)


def test_int8_error_is_at_most_half_a_quantisation_step(delta):
    encoded = encode_delta(delta, "int8")
    decoded = decode_delta(encoded)
    assert decoded.dtype == np.float32 and decoded.shape == delta.shape
    steps = np.repeat(encoded.scales, INT8_CHUNK)[: delta.size]
    assert np.all(np.abs(decoded - delta) <= steps / 2 + 1e-9)


def test_int8_of_zeros_stays_zero():
    zeros = np.zeros(100, np.float32)
    np.testing.assert_array_equal(decode_delta(encode_delta(zeros, "int8")), zeros)


def test_average_adds_the_mean_change():
    weights = np.arange(6, dtype=np.float32)
    change = np.full(6, 0.5, np.float32)
    config = OuterConfig(name="average")
    state = init_outer_state(config, 6)
    new, after = outer_step(config, weights, change, state, np.ones(6, bool))
    np.testing.assert_array_equal(new, weights + change)
    assert after.momentum is None and after.tensors() == {}


def test_nesterov_outer_step_equals_torch_sgd_nesterov_on_minus_the_change():
    rng = np.random.default_rng(1)
    config = OuterConfig(name="nesterov", lr=0.7, momentum=0.9)
    weights = rng.normal(size=50).astype(np.float32)
    mask = np.ones(50, bool)
    state = init_outer_state(config, 50)
    param = torch.nn.Parameter(torch.from_numpy(weights.copy()))
    reference = torch.optim.SGD([param], lr=0.7, momentum=0.9, nesterov=True)
    for _ in range(4):
        change = rng.normal(0, 0.1, 50).astype(np.float32)
        weights, state = outer_step(config, weights, change, state, mask)
        param.grad = torch.from_numpy(-change)
        reference.step()
    np.testing.assert_allclose(weights, param.detach().numpy(), rtol=1e-5, atol=1e-6)
    # The state survives a checkpoint round trip as plain tensors.
    restored = OuterState.from_tensors(state.tensors())
    np.testing.assert_array_equal(restored.momentum, state.momentum)


def test_nesterov_averages_buffers_plainly():
    config = OuterConfig(name="nesterov", lr=0.7, momentum=0.9)
    weights = np.zeros(4, np.float32)
    change = np.array([1, 1, 2, 2], np.float32)
    mask = np.array([True, True, False, False])
    new, state = outer_step(config, weights, change, init_outer_state(config, 4), mask)
    np.testing.assert_allclose(new[2:], [2, 2])  # running statistics: w + mean change
    np.testing.assert_allclose(new[:2], [0.7 * 1.9, 0.7 * 1.9], rtol=1e-6)
    np.testing.assert_array_equal(state.momentum[2:], [0, 0])


def test_outer_step_does_not_modify_its_inputs(delta):
    config = OuterConfig(name="nesterov")
    weights = np.ones_like(delta)
    state = init_outer_state(config, delta.size)
    before_w, before_m = weights.copy(), state.momentum.copy()
    outer_step(config, weights, delta, state, np.ones(delta.size, bool))
    np.testing.assert_array_equal(weights, before_w)
    np.testing.assert_array_equal(state.momentum, before_m)
