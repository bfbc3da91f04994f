"""Model kinds: what a model reference resolves to, and what the engine asks of it.

A ``ModelKind`` is plain, picklable data that crosses to executors. It supplies the network
(``build``), how stored features become network input (``input_prep``), the local optimizer
(``local_optimizer``) and extra files a finished run writes (``write_exports``). The engine
only calls these methods; a kind such as Caffe's lives in its own package and is found through
``sparknet.models.registry``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from sparknet.config import OptimizerConfig, scheduled_lr
from sparknet.data.shards import InputSpec
from sparknet.errors import ConfigError
from sparknet.models.references import import_callable
from sparknet.models.zoo import ModelFactory, builtin_factory


class InputPrep(Protocol):
    """Stored features ``[n, *stored shape]`` -> a float32 network input batch on ``device``.

    The features come as a NumPy array or a tensor in their stored dtype: already on
    ``device`` when ``on_device`` (the worker copies them there as uint8 and the preparation
    converts them on the device), else on the CPU.
    """

    @property
    def network_shape(self) -> tuple[int, ...]: ...

    @property
    def on_device(self) -> bool:
        """Whether the preparation runs on the device (it takes the stored batch there)."""
        ...

    def __call__(self, features: np.ndarray | torch.Tensor, device: torch.device, *,
                 train: bool, rng: np.random.Generator) -> torch.Tensor: ...

    def serving(self, features: torch.Tensor) -> torch.Tensor:
        """The evaluation-time preparation as torch operations (for ONNX graphs)."""
        ...


class LocalOptimizer(Protocol):
    """Builds the optimizer a worker runs its tau steps with."""

    @property
    def micro_batches(self) -> int:
        """Mini-batches whose gradients one step sums (Caffe's iter_size)."""
        ...

    @property
    def momentum_key(self) -> str:
        """Key of the momentum buffer in the optimizer's per-parameter state."""
        ...

    @property
    def has_momentum(self) -> bool:
        """Whether that state is one momentum buffer (what momentum_policy auto averages)."""
        ...

    def make(self, module: nn.Module, *, iteration: int) -> torch.optim.Optimizer: ...


def reset_carried_state(module: nn.Module) -> None:
    """Zero what ``module`` carries from one forward pass to the next (Caffe's LSTM and RNN
    without expose_hidden): the first module down each branch that has a
    ``reset_carried_state`` method resets its part. A task calls this first, so that its
    result does not depend on what its Python worker's cached network ran before."""
    reset = getattr(module, "reset_carried_state", None)
    if callable(reset):
        reset()
        return
    for child in module.children():
        reset_carried_state(child)


@dataclass(frozen=True)
class ScaledInput:
    """``x = features.astype(float32) * scale``, reshaped to the network's input shape."""

    shape: tuple[int, ...]
    scale: float

    @property
    def network_shape(self) -> tuple[int, ...]:
        return self.shape

    @property
    def on_device(self) -> bool:
        return True

    def __call__(self, features: np.ndarray | torch.Tensor, device: torch.device, *,
                 train: bool, rng: np.random.Generator) -> torch.Tensor:
        if not isinstance(features, torch.Tensor):
            features = torch.from_numpy(np.ascontiguousarray(features))
        # Copied in the stored dtype (uint8: a quarter of float32's bytes), converted there.
        x = features.to(device, non_blocking=True).to(torch.float32)
        if self.scale != 1.0:
            x = x * self.scale
        return x.reshape(features.shape[0], *self.shape)

    def serving(self, features: torch.Tensor) -> torch.Tensor:
        return features * self.scale


@dataclass(frozen=True)
class TorchOptimizer:
    """PyTorch's SGD or Adam with the config's settings."""

    config: OptimizerConfig
    micro_batches: int = 1
    momentum_key: str = "momentum_buffer"

    @property
    def has_momentum(self) -> bool:
        return self.config.name == "sgd" and self.config.momentum > 0

    def make(self, module: nn.Module, *, iteration: int) -> torch.optim.Optimizer:
        """The optimizer for steps from local step ``iteration`` on, its rate following
        ``lr_schedule`` and the warm-up step by step (``scheduled_lr``)."""
        c = self.config
        optimizer: torch.optim.Optimizer
        if c.name == "adam":
            optimizer = torch.optim.Adam(module.parameters(), lr=c.lr,
                                         weight_decay=c.weight_decay)
        else:
            optimizer = torch.optim.SGD(module.parameters(), lr=c.lr, momentum=c.momentum,
                                        nesterov=c.nesterov, weight_decay=c.weight_decay)
        if c.lr_schedule == "constant" and c.lr_warmup_steps == 0:
            return optimizer
        steps = [iteration]

        def set_rate() -> None:
            for group in optimizer.param_groups:
                group["lr"] = scheduled_lr(c, steps[0])

        def advance(*_: Any) -> None:
            steps[0] += 1
            set_rate()

        set_rate()
        optimizer.register_step_post_hook(advance)
        return optimizer


@dataclass(frozen=True)
class ModelKind:
    """A resolved model reference; ``key`` names the network in executors' caches."""

    key: str

    def build(self) -> nn.Module:
        raise NotImplementedError

    def input_prep(self, spec: InputSpec) -> InputPrep:
        return ScaledInput(spec.shape, spec.scale)

    def network_shape(self, stored_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape one example has as network input, for examples stored as given."""
        return stored_shape

    def local_optimizer(self, config: OptimizerConfig) -> LocalOptimizer:
        if config.name == "caffe":
            raise ConfigError(f"optimizer 'caffe' runs a Caffe solver on a Caffe-defined net, "
                              f"but the model is {self.key!r}: use --model caffe:NET.prototxt, "
                              "or optimizer sgd/adam")
        return TorchOptimizer(config)

    def write_exports(self, module: nn.Module, folder: Path) -> list[Path]:
        """Extra files a finished run writes next to its weights (none by default)."""
        return []

    def starting_point(self, config: OptimizerConfig, module: nn.Module) -> int:
        """Put the freshly built ``module`` where training starts and return the local step
        (iteration) it starts at: 0 by default; a run that continues a solver snapshot
        (Caffe's .solverstate) starts from the snapshot's weights and iteration, and the
        local optimizer made for that iteration holds the snapshot's state."""
        return 0


def _checked(module: object, key: str) -> nn.Module:
    if not isinstance(module, nn.Module):
        raise ConfigError(f"model factory {key!r} returned {type(module).__name__}, not a "
                          "torch.nn.Module: make it return the network")
    return module


@dataclass(frozen=True)
class BuiltinModel(ModelKind):
    """One of sparknet's own networks (``lenet``, ``resnet50#10``: see ``models.zoo``)."""

    def build(self) -> nn.Module:
        factory = builtin_factory(self.key)
        assert factory is not None, self.key
        return factory()


@dataclass(frozen=True)
class FactoryModel(ModelKind):
    """A user's factory: ``package.module:function``, or a callable on the Python API.

    A callable crosses to executors with Spark's closure serializer like any function passed
    to an RDD operation; a reference string is imported there. ``args`` (a JSON object) are
    the factory's keyword arguments; the key names them too, so executors' caches keep
    networks of different sizes apart.
    """

    factory: ModelFactory | None = field(default=None, compare=False)
    args: str | None = None

    @property
    def ref(self) -> str:
        return self.key.partition(" ")[0]

    def build(self) -> nn.Module:
        factory = self.factory if self.factory is not None else import_factory(self.ref)
        kwargs = json.loads(self.args) if self.args is not None else {}
        try:
            module = factory(**kwargs)
        except TypeError as exc:
            if not kwargs:
                raise
            raise ConfigError(f"model factory {self.ref!r} does not take networkArgs "
                              f"{self.args} ({exc}): give the keyword arguments it "
                              "accepts") from None
        return _checked(module, self.ref)


def import_factory(ref: str) -> ModelFactory:
    factory: ModelFactory = import_callable(ref, what="model factory",
                                            returns="an nn.Module")
    return factory


def network_outputs(model: ModelKind, stored_shape: tuple[int, ...], *,
                    expected: int | None = None) -> int:
    """The network's number of outputs, from a trial run on the driver with one zero example.

    Runs before any Spark job: a factory that raises, a network that cannot take the input,
    an output that is not ``[batch, outputs]``, or (``expected``) the wrong number of outputs
    is one line here instead of a wall of executor tracebacks later. Whether the outputs fit
    the objective is the objective's ``check_outputs``."""
    shape = model.network_shape(stored_shape)
    try:
        with torch.random.fork_rng(devices=[]):  # the trial leaves the seeded streams alone
            module = model.build().eval()
            with torch.no_grad():
                out = module(torch.zeros((1, *shape)))
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of user code becomes one line
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ConfigError(f"network {model.key!r} failed a trial run on the driver with one "
                          f"example of shape {list(shape)} ({type(exc).__name__}: {first}): fix "
                          "the network or the input shape") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        found = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"network {model.key!r} returns {found} for one example; it must "
                          "return [batch, outputs] (logits for a classifier, predictions for "
                          "regression): fix the network's last layer")
    outputs = int(out.shape[1])
    if expected is not None and outputs != expected:
        raise ConfigError(f"network {model.key!r} returns {tuple(out.shape)} for one example, "
                          f"not [1, {expected}] logits for the data's {expected} classes: fix "
                          "the network's last layer or the number of classes")
    return outputs
