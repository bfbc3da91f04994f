"""Model references -> model kinds; plug-in kinds are found by their reference's prefix.

A reference is a string: a built-in name (``lenet``, ``cnn``), a factory
``package.module:function`` that returns an ``nn.Module``, or a plug-in reference such as
``caffe:NET.prototxt[@WEIGHTS.caffemodel][#C,H,W]``. On the Python API a callable works too.
Plug-ins are modules of this package named in ``PLUGINS``, imported only when a reference with
their prefix is resolved, so the engine never loads them for other networks.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import marshal
import pickle
from typing import Any

from sparknet.config import TrainConfig
from sparknet.errors import ConfigError
from sparknet.models.kinds import BuiltinModel, FactoryModel, ModelKind, import_factory
from sparknet.models.zoo import BUILTIN_MODELS, ModelFactory

# prefix -> module whose ``resolve(ref: str) -> ModelKind`` handles it
PLUGINS = {"caffe:": "sparknet.caffe.model_kind"}


def resolve_model(model: str | ModelFactory | ModelKind, *,
                  args: str | None = None) -> ModelKind:
    """Validates a model reference on the driver (imports it, checks files) and resolves it.

    ``args``: keyword arguments (a JSON object) for a factory network.
    """
    if isinstance(model, ModelKind):
        return model
    canonical = None if args is None else json.dumps(json.loads(args), sort_keys=True)
    suffix = "" if canonical is None else f" {canonical}"
    if callable(model) and not isinstance(model, str):
        return FactoryModel(key=callable_key(model) + suffix, factory=model, args=canonical)
    if not isinstance(model, str) or not model:
        raise ConfigError(f"model={model!r} is invalid: name a built-in model "
                          f"({', '.join(sorted(BUILTIN_MODELS))}), a factory "
                          "'package.module:function', or 'caffe:NET.prototxt'")
    for prefix, plugin in PLUGINS.items():
        if model.startswith(prefix):
            resolved: ModelKind = importlib.import_module(plugin).resolve(model)
            return resolved
    if model in BUILTIN_MODELS:
        return BuiltinModel(key=model)
    if ":" not in model:
        raise ConfigError(f"unknown model {model!r}: use one of {sorted(BUILTIN_MODELS)}, "
                          "a factory 'package.module:function', or 'caffe:NET.prototxt'")
    import_factory(model)
    return FactoryModel(key=model + suffix, args=canonical)


def model_of(config: TrainConfig) -> ModelKind:
    """The model kind a training configuration names (with its networkArgs)."""
    return resolve_model(config.model, args=config.model_args)


def callable_key(factory: Any) -> str:
    """A key that names the same callable in every process: never ``id()``.

    Importable functions and classes pickle by reference (module and name); other callables
    (lambdas, closures) are named by their code and the values they close over.
    """
    name = f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', '?')}"
    try:
        body = pickle.dumps(factory, protocol=4)
    except Exception:  # noqa: BLE001 - any pickling failure means: describe it another way
        code = getattr(factory, "__code__", None)
        cells = tuple(c.cell_contents for c in getattr(factory, "__closure__", None) or ())
        body = (marshal.dumps(code) if code is not None else b"") + \
            repr((cells, getattr(factory, "__defaults__", None))).encode()
    return f"callable:{name}:{hashlib.sha256(body).hexdigest()[:16]}"
