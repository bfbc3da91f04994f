"""Caffe's solvers: SolverConfig from a solver prototxt, learning-rate policies and the
update rules (sgd_solver.cpp and friends) as a torch optimizer.

Caffe's order per iteration: clip the gradients summed over iter_size, scale them by
1/iter_size, add weight decay, then the solver-specific update with the learning rate inside
the history (momentum) buffer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparknet.caffe import schema
from sparknet.caffe.net import ParamSpec
from sparknet.caffe.prototxt import parse_text, read_text
from sparknet.errors import ConfigError

LR_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")
SOLVER_TYPES = ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam")
_LEGACY_TYPES = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad",
                 "RMSPROP": "RMSProp", "ADADELTA": "AdaDelta", "ADAM": "Adam"}


@dataclass(frozen=True, kw_only=True)
class SolverConfig:
    """A Caffe solver definition. Field names and defaults are Caffe's SolverParameter."""

    net: Path | None = None  # resolved against the solver file's folder
    type: str = "SGD"
    base_lr: float = 0.01
    lr_policy: str = "fixed"
    gamma: float = 0.0
    power: float = 0.0
    stepsize: int = 0
    stepvalue: tuple[int, ...] = ()
    max_iter: int = 0
    momentum: float = 0.0
    momentum2: float = 0.999
    delta: float = 1e-8
    rms_decay: float = 0.99
    weight_decay: float = 0.0
    regularization_type: str = "L2"
    iter_size: int = 1
    clip_gradients: float = -1.0
    test_iter: tuple[int, ...] = ()
    test_interval: int = 0
    test_initialization: bool = True
    display: int = 0
    average_loss: int = 1
    snapshot: int = 0
    snapshot_prefix: str = ""
    snapshot_after_train: bool = True
    random_seed: int = -1
    extra: Mapping[str, str] = field(default_factory=dict)  # fields read but not used

    def __post_init__(self) -> None:
        if self.lr_policy not in LR_POLICIES:
            raise ConfigError(f"lr_policy={self.lr_policy!r} is unknown; use one of "
                              f"{', '.join(LR_POLICIES)}")
        if self.type not in SOLVER_TYPES:
            raise ConfigError(f"type={self.type!r} is unknown; use one of "
                              f"{', '.join(SOLVER_TYPES)}")
        if self.regularization_type not in ("L1", "L2"):
            raise ConfigError(f"regularization_type={self.regularization_type!r}; use 'L1' or 'L2'")
        if self.iter_size < 1:
            raise ConfigError(f"iter_size={self.iter_size} must be >= 1")
        if self.max_iter < 0:
            raise ConfigError(f"max_iter={self.max_iter} must be >= 0")
        if self.lr_policy == "step" and self.stepsize <= 0:
            raise ConfigError(f"stepsize={self.stepsize}: lr_policy 'step' needs stepsize > 0")
        if self.lr_policy in ("step", "exp", "inv", "multistep", "sigmoid") and self.gamma < 0:
            raise ConfigError(f"gamma={self.gamma}: lr_policy {self.lr_policy!r} needs gamma "
                              ">= 0 (Caffe refuses a negative one)")
        if self.type in ("AdaGrad", "RMSProp") and self.momentum != 0:
            raise ConfigError(f"momentum={self.momentum}: Caffe's {self.type} takes no "
                              "momentum; remove it")
        if self.type == "RMSProp" and not 0 <= self.rms_decay < 1:
            raise ConfigError(f"rms_decay={self.rms_decay} must be in [0, 1)")
        if self.lr_policy == "poly" and self.max_iter <= 0:
            raise ConfigError("lr_policy 'poly' needs max_iter > 0; set max_iter")
        if list(self.stepvalue) != sorted(self.stepvalue):
            raise ConfigError(f"stepvalue={self.stepvalue} must increase; sort the values")
        if self.test_interval < 0 or any(t < 0 for t in self.test_iter):
            raise ConfigError("test_interval and test_iter must be >= 0")


def parse_solver_text(text: str, *, folder: Path = Path("."), source: str = "<solver>"
                      ) -> SolverConfig:
    """A SolverConfig from solver prototxt text; ``net`` is resolved against ``folder``."""
    p = parse_text(text, schema.SolverParameter(), source=source)
    if not p.ListFields():
        raise ConfigError(f"{source} is empty; give a Caffe solver definition (lr_policy, "
                          "base_lr, ...)")
    _refuse_unsupported(p, source)
    if p.HasField("type"):
        kind = p.type
    elif p.HasField("solver_type"):
        kind = _LEGACY_TYPES[schema.enum_name("SolverType", p.solver_type)]
    else:
        kind = "SGD"
    net_name = p.net if p.HasField("net") else (p.train_net if p.HasField("train_net") else None)
    if not p.HasField("lr_policy"):
        raise ConfigError(f"{source}: lr_policy is not set; Caffe requires it (e.g. 'fixed')")
    return SolverConfig(
        net=folder / net_name if net_name else None, type=kind, base_lr=p.base_lr,
        lr_policy=p.lr_policy, gamma=p.gamma, power=p.power, stepsize=p.stepsize,
        stepvalue=tuple(p.stepvalue), max_iter=p.max_iter, momentum=p.momentum,
        momentum2=p.momentum2, delta=p.delta, rms_decay=p.rms_decay,
        weight_decay=p.weight_decay, regularization_type=p.regularization_type,
        iter_size=p.iter_size, clip_gradients=p.clip_gradients, test_iter=tuple(p.test_iter),
        test_interval=p.test_interval, test_initialization=p.test_initialization,
        display=p.display, average_loss=p.average_loss, snapshot=p.snapshot,
        snapshot_prefix=p.snapshot_prefix, snapshot_after_train=p.snapshot_after_train,
        random_seed=p.random_seed,
    )


def _refuse_unsupported(p: Any, source: str) -> None:
    """Solver fields that would change the trained net or its data, which sparknet does not
    implement: one line each (fields that only concern Caffe's own process, such as
    solver_mode or display, are read and not used)."""
    inline = "write the net to a file and name it with net: (or pass --model caffe:NET)"
    for name, fix in (("net_param", inline), ("train_net_param", inline),
                      ("snapshot_format", "drop it: the engine writes its own checkpoints")):
        if p.HasField(name) and not (name == "snapshot_format" and p.snapshot_format == 1):
            raise ConfigError(f"{source}: field {name} of SolverParameter is not supported; "
                              f"{fix}")
    state = p.train_state
    if p.HasField("train_state") and (state.HasField("level") or len(state.stage)):
        raise ConfigError(f"{source}: field train_state (level/stage) of SolverParameter is "
                          "not supported; set the level and stages in the net's own state")


def load_solver(path: str | Path) -> SolverConfig:
    """Read a solver ``.prototxt``; its ``net:`` path is relative to the solver's folder."""
    path = Path(path)
    return parse_solver_text(read_text(path), folder=path.parent, source=str(path))


def learning_rate(config: SolverConfig, iteration: int) -> float:
    """Caffe's SGDSolver::GetLearningRate for ``iteration`` (0-based)."""
    c, it = config, iteration
    if c.lr_policy == "fixed":
        return c.base_lr
    if c.lr_policy == "step":
        return c.base_lr * c.gamma ** (it // c.stepsize)
    if c.lr_policy == "exp":
        return c.base_lr * c.gamma**it
    if c.lr_policy == "inv":
        return c.base_lr * (1.0 + c.gamma * it) ** (-c.power)
    if c.lr_policy == "multistep":
        return c.base_lr * c.gamma ** sum(1 for v in c.stepvalue if it >= v)
    if c.lr_policy == "poly":
        return c.base_lr * (1.0 - it / c.max_iter) ** c.power
    return c.base_lr / (1.0 + math.exp(-c.gamma * (it - c.stepsize)))  # sigmoid


lr_at = learning_rate


class CaffeSolver(torch.optim.Optimizer):
    """Caffe's update rules. One param group per (lr_mult, decay_mult); ``step()`` applies
    iteration ``self.iteration`` and then advances it. Call ``backward`` ``iter_size`` times
    between steps: gradients are summed by torch and divided by iter_size here, as Caffe does.
    """

    def __init__(self, params: Iterable[tuple[torch.Tensor, ParamSpec]], config: SolverConfig
                 ) -> None:
        groups: dict[tuple[float, float], list[torch.Tensor]] = {}
        for tensor, spec in params:
            groups.setdefault((spec.lr_mult, spec.decay_mult), []).append(tensor)
        super().__init__(
            [{"params": ps, "lr_mult": lr, "decay_mult": dm} for (lr, dm), ps in groups.items()],
            {"lr_mult": 1.0, "decay_mult": 1.0},
        )
        self.config = config
        self.iteration = 0

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = closure() if closure is not None else None
        c = self.config
        rate = learning_rate(c, self.iteration)
        # Caffe computes no gradient for a blob with lr_mult 0: it is zero in the clip norm.
        grads = [(p, p.grad.clone() if g["lr_mult"] else torch.zeros_like(p))
                 for g in self.param_groups for p in g["params"] if p.grad is not None]
        if c.clip_gradients >= 0:  # Caffe clips the sum over iter_size, then divides
            norm = math.sqrt(sum(float((d * d).sum()) for _, d in grads))
            if norm > c.clip_gradients:
                for _, d in grads:
                    d.mul_(c.clip_gradients / norm)
        if c.iter_size > 1:
            for _, d in grads:
                d.div_(c.iter_size)
        diffs = dict((id(p), d) for p, d in grads)
        for group in self.param_groups:
            local_rate = rate * group["lr_mult"]
            local_decay = c.weight_decay * group["decay_mult"]
            for p in group["params"]:
                if id(p) not in diffs:
                    continue
                d = diffs[id(p)]
                if local_decay:
                    d.add_(p if c.regularization_type == "L2" else torch.sign(p),
                           alpha=local_decay)
                p.sub_(self._update(p, d, local_rate))
        self.iteration += 1
        return loss

    def _update(self, p: torch.Tensor, d: torch.Tensor, rate: float) -> torch.Tensor:
        c, state = self.config, self.state[p]
        h = state.setdefault("history", torch.zeros_like(p))
        if c.type == "SGD":
            h.mul_(c.momentum).add_(d, alpha=rate)
            return h.clone()
        if c.type == "Nesterov":
            previous = h.clone()
            h.mul_(c.momentum).add_(d, alpha=rate)
            return h * (1.0 + c.momentum) - previous * c.momentum
        if c.type == "AdaGrad":
            h.add_(d * d)
            return rate * d / (torch.sqrt(h) + c.delta)
        if c.type == "RMSProp":
            h.mul_(c.rms_decay).add_(d * d, alpha=1.0 - c.rms_decay)
            return rate * d / (torch.sqrt(h) + c.delta)
        if c.type == "AdaDelta":
            h2 = state.setdefault("update_history", torch.zeros_like(p))
            h.mul_(c.momentum).add_(d * d, alpha=1.0 - c.momentum)
            update = d * torch.sqrt((h2 + c.delta) / (h + c.delta))
            h2.mul_(c.momentum).add_(update * update, alpha=1.0 - c.momentum)
            return rate * update
        # Adam: history is m; v lives beside it; bias correction folded into the rate.
        v = state.setdefault("second", torch.zeros_like(p))
        t = self.iteration + 1
        h.mul_(c.momentum).add_(d, alpha=1.0 - c.momentum)
        v.mul_(c.momentum2).add_(d * d, alpha=1.0 - c.momentum2)
        correction = math.sqrt(1.0 - c.momentum2**t) / (1.0 - c.momentum**t)
        return rate * correction * h / (torch.sqrt(v) + c.delta)


def make_optimizer(net_or_module: nn.Module, solver_config: SolverConfig) -> CaffeSolver:
    """A CaffeSolver over the trainable parameters of a CaffeNet/CaffeLogits (using their
    ``param_specs``) or any module (lr_mult = decay_mult = 1)."""
    specs: Mapping[str, ParamSpec] = getattr(net_or_module, "param_specs", {})
    params = [(p, specs.get(name, ParamSpec())) for name, p in net_or_module.named_parameters()
              if p.requires_grad]
    return CaffeSolver(params, solver_config)


def should_test(config: SolverConfig, iteration: int) -> bool:
    """Whether Caffe runs the test nets before training iteration ``iteration``."""
    if not config.test_interval or not config.test_iter:
        return False
    return iteration % config.test_interval == 0 and (iteration > 0 or config.test_initialization)


def should_snapshot(config: SolverConfig, iteration: int) -> bool:
    """Whether Caffe snapshots after finishing ``iteration`` iterations (1-based count)."""
    if config.snapshot and iteration % config.snapshot == 0:
        return True
    return iteration == config.max_iter and config.snapshot_after_train


def snapshot_path(config: SolverConfig, iteration: int, *, folder: Path = Path(".")) -> Path:
    """Caffe's snapshot file name: ``<snapshot_prefix>_iter_<N>.caffemodel``."""
    return folder / f"{config.snapshot_prefix}_iter_{iteration}.caffemodel"
