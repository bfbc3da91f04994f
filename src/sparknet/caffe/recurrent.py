"""Caffe 1.0's recurrent layers: LSTM, RNN and LSTMUnit (one LSTM time step).

Caffe unrolls LSTM and RNN into an inner net over the T time steps of a (T, N, ...) input;
here the same arithmetic runs as a loop. The sequence-continuation input ``cont`` (T, N)
multiplies the previous hidden state (and zeroes LSTM's forget gate) where a sequence
starts. Blobs in Caffe's order: LSTM ``W_xc, b_c, [W_xc_static], W_hc`` (gates i, f, o, g);
RNN ``W_xh, b_h, [W_xh_static], W_hh, W_ho, b_o``. With ``expose_hidden`` the initial state
is given as bottoms and the final one is extra tops, which carry no gradient (Caffe shares
only their data). Without it each forward pass starts from the state the previous pass
ended with (h_T, and c_T for LSTM; zero before the first), gated by ``cont`` at t = 0 like
any state, and no gradient flows back into the previous pass: Caffe's RecurrentLayer copies
its unrolled net's final-state blobs into the initial-state blobs before each forward pass.
When N changes between passes the state is read as Caffe reads the reshaped blobs: the first
N·H values of the stored ones, zeros once N·H exceeds the most ever held.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from sparknet.caffe.fillers import fill
from sparknet.caffe.layers import CaffeLayer, Shape
from sparknet.errors import CaffeFormatError


def lstm_step(c_prev: torch.Tensor, gates: torch.Tensor, cont: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Caffe's LSTMUnit on (N, H) states and (N, 4H) gate inputs: c = f c_prev + i g,
    h = o tanh(c), with the forget gate 0 where cont is 0 (else cont * sigmoid)."""
    hidden = c_prev.shape[-1]
    i = torch.sigmoid(gates[..., :hidden])
    keep = cont.unsqueeze(-1)
    f = torch.where(keep == 0, torch.zeros_like(i),
                    keep * torch.sigmoid(gates[..., hidden:2 * hidden]))
    o = torch.sigmoid(gates[..., 2 * hidden:3 * hidden])
    g = torch.tanh(gates[..., 3 * hidden:])
    c = f * c_prev + i * g
    return c, o * torch.tanh(c)


class LSTMUnit(CaffeLayer):
    """One LSTM step: bottoms c_prev (1, N, H), gate input (1, N, 4H), cont (1, N); tops c,
    h (1, N, H)."""

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        if len(shapes) != 3 or shapes[1][-1] != 4 * shapes[0][-1]:
            raise CaffeFormatError(f"{self.where()}: needs c_prev (1, N, H), gates (1, N, 4H) "
                                   f"and cont (1, N), got {list(shapes)}")

    def forward(self, c_prev: torch.Tensor, gates: torch.Tensor, cont: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return lstm_step(c_prev, gates, cont.detach())


class Recurrent(CaffeLayer):
    """What LSTM and RNN share: their bottoms, blobs and the per-step loop around
    ``step``."""

    gates = 1  # rows of the input transform per hidden unit (LSTM: 4)
    states = 1  # recurrent state blobs (LSTM: h and c)

    def __init__(self, param: Any, shapes: Sequence[Shape], gen: torch.Generator | None) -> None:
        super().__init__(param)
        p = param.recurrent_param
        where = self.where()
        self.hidden = int(p.num_output)
        if self.hidden <= 0:
            raise CaffeFormatError(f"{where}: recurrent_param.num_output must be positive")
        self.expose = bool(p.expose_hidden)
        if len(shapes[0]) < 2 or len(shapes) < 2 or tuple(shapes[1]) != tuple(shapes[0][:2]):
            raise CaffeFormatError(f"{where}: needs x (T, N, ...) and cont (T, N), got "
                                   f"{list(shapes)}")
        extra = len(shapes) - 2 - (self.states if self.expose else 0)
        if extra not in (0, 1):
            raise CaffeFormatError(f"{where}: {len(shapes)} bottoms do not fit x, cont, an "
                                   "optional static input and, with expose_hidden, the "
                                   "initial state")
        self.static = extra == 1
        # Caffe's final-state blobs, flat, in their allocated size (Blob capacity): zeros of
        # the built batch, as the unrolled net allocates them.
        count = 0 if self.expose else int(shapes[0][1]) * self.hidden
        self._carried = [torch.zeros(count) for _ in range(self.states)]
        width = self.gates * self.hidden
        inputs = 1
        for d in shapes[0][2:]:
            inputs *= d
        wf = p.weight_filler if p.HasField("weight_filler") else None
        bf = p.bias_filler if p.HasField("bias_filler") else None

        def weight(shape: Shape) -> None:
            self.add_blob(fill(shape, wf, default="constant", generator=gen, where=where))

        weight((width, inputs))
        self.add_blob(fill((width,), bf, default="constant", generator=gen, where=where))
        if self.static:
            static_inputs = 1
            for d in shapes[2][1:]:
                static_inputs *= d
            weight((width, static_inputs))
        weight((width, self.hidden))
        self.add_output_blobs(weight, bf, gen, where)

    def add_output_blobs(self, weight: Any, bias_filler: Any, gen: Any, where: str) -> None:
        """Blobs after the recurrent weight (RNN's output transform)."""

    def forward(self, x: torch.Tensor, cont: torch.Tensor, *rest: torch.Tensor
                ) -> tuple[torch.Tensor, ...]:
        steps, batch = int(x.shape[0]), int(x.shape[1])
        blobs = list(self.blobs)
        transformed = F.linear(x.reshape(steps, batch, -1), blobs[0], blobs[1])
        static = None
        if self.static:
            static = F.linear(rest[0].reshape(batch, -1), blobs[2])
            rest = rest[1:]
        recurrent = blobs[3 if self.static else 2]
        if self.expose:
            state = [s.reshape(batch, self.hidden) for s in rest[:self.states]]
        else:
            state = self._carried_state(batch, transformed)
        keep = cont.detach().reshape(steps, batch)
        outputs = []
        for t in range(steps):
            total = F.linear(keep[t].unsqueeze(-1) * state[0], recurrent) + transformed[t]
            if static is not None:
                total = total + static
            state, output = self.step(total, state, keep[t])
            outputs.append(output)
        tops = [torch.stack(outputs)]
        if self.expose:  # Caffe shares only the data of the final state: no gradient
            tops += [s.detach().reshape(1, batch, self.hidden) for s in state]
        else:
            self._carry(state)
        return tuple(tops)

    def _carried_state(self, batch: int, like: torch.Tensor) -> list[torch.Tensor]:
        """The initial state of this pass: the first N·H values of the final-state blobs
        (reallocated as zeros when they grow past their size, as Caffe's Blob::Reshape)."""
        count = batch * self.hidden
        self._carried = [c.to(like.device) if c.numel() >= count
                         else torch.zeros(count, device=like.device) for c in self._carried]
        return [c[:count].reshape(batch, self.hidden).to(like.dtype) for c in self._carried]

    def _carry(self, state: list[torch.Tensor]) -> None:
        # New tensors, not writes into the old ones: autograd may still hold those.
        flat = [s.detach().reshape(-1).float() for s in state]
        self._carried = [torch.cat([f, c[f.numel():].to(f.device)])
                         for f, c in zip(flat, self._carried, strict=True)]

    def reset_carried_state(self) -> None:
        """Zero the carried state (Caffe's RecurrentLayer::Reset)."""
        self._carried = [torch.zeros_like(c) for c in self._carried]

    @contextlib.contextmanager
    def probing(self) -> Iterator[None]:
        kept = list(self._carried)
        try:
            yield
        finally:
            self._carried = kept

    def step(self, total: torch.Tensor, state: list[torch.Tensor], cont: torch.Tensor
             ) -> tuple[list[torch.Tensor], torch.Tensor]:
        raise NotImplementedError


class LSTM(Recurrent):
    """Caffe's LSTM: gates W_xc x + b_c (+ W_xc_static x_static) + W_hc (cont h_prev)."""

    gates = 4
    states = 2  # h, c (bottoms h_0, c_0 and tops h_T, c_T in that order)

    def step(self, total: torch.Tensor, state: list[torch.Tensor], cont: torch.Tensor
             ) -> tuple[list[torch.Tensor], torch.Tensor]:
        c, h = lstm_step(state[1], total, cont)
        return [h, c], h


class RNN(Recurrent):
    """Caffe's RNN: h = tanh(W_xh x + b_h (+ W_xh_static x_static) + W_hh (cont h_prev)),
    output o = tanh(W_ho h + b_o)."""

    def add_output_blobs(self, weight: Any, bias_filler: Any, gen: Any, where: str) -> None:
        weight((self.hidden, self.hidden))
        self.add_blob(fill((self.hidden,), bias_filler, default="constant", generator=gen,
                           where=where))

    def step(self, total: torch.Tensor, state: list[torch.Tensor], cont: torch.Tensor
             ) -> tuple[list[torch.Tensor], torch.Tensor]:
        h = torch.tanh(total)
        blobs = list(self.blobs)
        return [h], torch.tanh(F.linear(h, blobs[-2], blobs[-1]))
