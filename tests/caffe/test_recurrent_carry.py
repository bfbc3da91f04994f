"""What LSTM and RNN without expose_hidden carry from one forward pass to the next, beyond
the real-Caffe references (tests/data/caffe_layer_references/*_passes_*): two passes over a
sequence's halves are one pass over the whole sequence, no gradient reaches back into the
earlier pass, building the net carries nothing, and ``reset_carried_state`` starts over."""

from __future__ import annotations

import pytest
import torch

from sparknet.caffe import CaffeNet, build_net, parse_net_text

STEPS, BATCH, FEATURES, HIDDEN = 5, 2, 4, 3


def _net(kind: str, steps: int) -> CaffeNet:
    return build_net(parse_net_text(
        f'layer {{ name: "in" type: "Input" top: "x" top: "c" input_param {{ shape {{ '
        f"dim: {steps} dim: {BATCH} dim: {FEATURES} }} shape {{ dim: {steps} dim: {BATCH} }} "
        f'}} }}\nlayer {{ name: "r" type: "{kind}" bottom: "x" bottom: "c" top: "y" '
        f"recurrent_param {{ num_output: {HIDDEN} weight_filler {{ type: 'gaussian' std: 0.5 }}"
        " bias_filler { type: 'gaussian' } } }\n"))


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_passes_over_halves_are_one_pass_over_the_sequence(kind: str) -> None:
    torch.manual_seed(0)
    x, cont = torch.randn(STEPS, BATCH, FEATURES), torch.ones(STEPS, BATCH)
    cont[0] = 0
    whole, halves = _net(kind, STEPS), _net(kind, 3)
    halves.load_caffe_blobs(whole.caffe_blobs())
    expected = whole(x=x, c=cont)["y"].detach()
    first = halves(x=x[:3], c=cont[:3])["y"]
    second_input = x[3:].clone().requires_grad_(True)
    second = halves(x=second_input, c=cont[3:])["y"]
    torch.testing.assert_close(torch.cat([first, second]).detach(), expected, rtol=0,
                               atol=1e-6)
    # No gradient into the earlier pass (Caffe cannot back-propagate across batches).
    x_first = x[:3].clone().requires_grad_(True)
    halves.reset_carried_state()
    halves(x=x_first, c=cont[:3])
    halves(x=second_input, c=cont[3:])["y"].sum().backward()
    assert x_first.grad is None
    # Reset: the second half alone, from zero state.
    halves.reset_carried_state()
    alone = halves(x=x[3:], c=cont[3:])["y"].detach()
    assert (alone - second.detach()).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_cont_zero_at_the_first_step_drops_the_carried_state(kind: str) -> None:
    torch.manual_seed(1)
    net = _net(kind, 2)
    x, cont = torch.randn(2, BATCH, FEATURES), torch.ones(2, BATCH)
    net(x=torch.randn(2, BATCH, FEATURES), c=cont)  # leaves a state behind
    cont[0] = 0  # every sequence starts here
    carried = net(x=x, c=cont)["y"].detach()
    net.reset_carried_state()
    torch.testing.assert_close(net(x=x, c=cont)["y"].detach(), carried, rtol=0, atol=0)
