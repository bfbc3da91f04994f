"""Model references -> model kinds; plug-in kinds are found by their reference's prefix.

A reference is a string: a built-in name (``lenet``, ``cnn``), a factory
``package.module:function`` that returns an ``nn.Module``, or a plug-in reference such as
``caffe:NET.prototxt[@WEIGHTS.caffemodel][#C,H,W]``. On the Python API a callable works too.
Plug-ins are modules of this package named in ``PLUGINS``, imported only when a reference with
their prefix is resolved, so the engine never loads them for other networks.

A reference read from a file (a run directory, a saved model) goes through
``resolve_saved_model``: built-in networks and plug-in kinds load from data, but a factory is
imported only when this process's code named it (``resolve_model``, ``trust_factory``), so a
file can never make sparknet import a module or call a function.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import marshal
import pickle
from typing import Any

from sparknet.config import TrainConfig
from sparknet.errors import ConfigError, DataError
from sparknet.models.kinds import BuiltinModel, FactoryModel, ModelKind, import_factory
from sparknet.models.zoo import BUILTIN_MODELS, ModelFactory, builtin_factory

# prefix -> module whose ``resolve(ref: str) -> ModelKind`` handles it
PLUGINS = {"caffe:": "sparknet.caffe.model_kind"}

# Factory references this process's code has named: the only ones a file may name.
_TRUSTED_FACTORIES: set[str] = set()


def trust_factory(ref: str) -> None:
    """Lets files (saved models, run directories) name the factory ``ref``, e.g. before
    ``SparkNetModel.load`` of a model trained on ``ref``; the module is imported now."""
    resolve_model(ref)


def resolve_saved_model(ref: Any, *, origin: str,
                        given: str | ModelFactory | ModelKind | None = None,
                        args: str | None = None, fix: str | None = None) -> ModelKind:
    """The model kind a file names, without importing code the file chose.

    ``given`` is the caller's own reference for it (a factory, a callable, a kind): it is used
    and must be the same reference when both are strings. Without it, a factory reference
    resolves only if this process named it before (``resolve_model``, ``trust_factory``).
    ``args``: the factory's saved keyword arguments (a JSON object). ``fix``: how the caller's
    user names the factory (the refusal's hint); default: ``trust_factory``.
    """
    if not isinstance(ref, str) or not ref:
        raise DataError(f"{origin} names no model (found {ref!r}): the file is corrupt")
    if given is not None:
        if isinstance(given, str) and given != ref:
            raise ConfigError(f"{origin} was trained with model {ref!r}, not {given!r}: pass "
                              "the run's own model")
        return resolve_model(given, args=args)
    if builtin_factory(ref) is not None or ref in _TRUSTED_FACTORIES or \
            any(ref.startswith(prefix) for prefix in PLUGINS):
        return resolve_model(ref, args=args)
    if fix is None:
        fix = f"call sparknet.models.trust_factory({ref[:80]!r}) first"
    raise ConfigError(f"{origin} names the network factory {ref!r}; sparknet never imports code "
                      f"a file names: {fix}")


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
    if builtin_factory(model) is not None:
        return BuiltinModel(key=model)
    if ":" not in model:
        raise ConfigError(f"unknown model {model!r}: use one of {sorted(BUILTIN_MODELS)}, "
                          "a factory 'package.module:function', or 'caffe:NET.prototxt'")
    import_factory(model)
    _TRUSTED_FACTORIES.add(model)
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
