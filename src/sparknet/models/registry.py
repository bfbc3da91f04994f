"""Model references: how a network crosses to Spark executors as plain data.

A reference is a string: a built-in name (``lenet``, ``cnn``), a factory
``package.module:function`` that returns an ``nn.Module``, or ``caffe:NET.prototxt`` (optionally
``caffe:NET.prototxt@WEIGHTS.caffemodel``, and ``#C,H,W`` for nets with a Data layer; see
``sparknet.models.caffe_ref``). Executors build the network once per Python worker
and cache it; every task then loads the broadcast weights into the cached module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from sparknet.errors import ConfigError
from sparknet.models.zoo import BUILTIN_MODELS

ModelFactory = Callable[[], nn.Module]


@dataclass(frozen=True)
class ModelSource:
    """A model reference plus, for the Python API, an in-process factory callable.

    ``key`` identifies the network in executors' caches; callables are shipped by Spark's
    closure serializer like any function a user passes to an RDD operation.
    """

    key: str
    factory: ModelFactory | None = field(default=None, compare=False)

    def build(self) -> nn.Module:
        factory = self.factory if self.factory is not None else resolve_factory(self.key)
        module = factory()
        if not isinstance(module, nn.Module):
            raise ConfigError(f"model factory {self.key!r} returned {type(module).__name__}, "
                              "not a torch.nn.Module: make it return the network")
        return module


def model_source(model: str | ModelFactory) -> ModelSource:
    """Validates a model reference on the driver (imports it) and wraps it for executors."""
    if callable(model) and not isinstance(model, str):
        name = getattr(model, "__qualname__", type(model).__name__)
        return ModelSource(key=f"callable:{getattr(model, '__module__', '?')}.{name}:{id(model)}",
                           factory=model)
    resolve_factory(model)
    return ModelSource(key=model)


def resolve_factory(ref: str) -> ModelFactory:
    if ref in BUILTIN_MODELS:
        return BUILTIN_MODELS[ref]
    if ref.startswith("caffe:"):
        return _caffe_factory(ref.removeprefix("caffe:"))
    if ":" not in ref:
        raise ConfigError(f"unknown model {ref!r}: use one of {sorted(BUILTIN_MODELS)}, "
                          "a factory 'package.module:function', or 'caffe:NET.prototxt'")
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module_name!r} of model factory {ref!r} "
                          f"({exc}): check the name and that it is on PYTHONPATH") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"module {module_name!r} has no callable {attr!r} for model factory "
                          f"{ref!r}: name a function that returns an nn.Module")
    return factory


def _caffe_factory(spec: str) -> ModelFactory:
    from sparknet.models.caffe_ref import build_model, parse_caffe_ref

    ref = parse_caffe_ref(spec)

    def build() -> nn.Module:
        return build_model(ref)

    return build
