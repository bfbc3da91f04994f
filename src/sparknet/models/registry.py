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
from collections.abc import Mapping
from typing import Any

from sparknet.config import TrainConfig
from sparknet.errors import ConfigError, DataError
from sparknet.models.kinds import BuiltinModel, FactoryModel, ModelKind, import_factory
from sparknet.models.objectives import BUILTIN as BUILTIN_OBJECTIVES
from sparknet.models.references import is_trusted, trust
from sparknet.models.zoo import BUILTIN_MODELS, ModelFactory, builtin_factory
from sparknet.settings import train_settings

# prefix -> module whose ``resolve(ref: str) -> ModelKind`` handles it
PLUGINS = {"caffe:": "sparknet.caffe.model_kind"}

# what a reference field names -> (its words in messages, whether a value is code)
_REFERENCE_KINDS = {
    "network": ("network factory", lambda v: not _is_data_model(v)),
    "loss": ("loss factory", lambda v: v not in BUILTIN_OBJECTIVES),
}


def trust_factory(ref: str) -> None:
    """Lets files (saved models, run directories, saved estimators) name the network or loss
    factory ``ref``, e.g. before ``SparkNetModel.load`` of a model trained on ``ref``; the
    module is imported now."""
    resolve_model(ref)


def _is_data_model(ref: str) -> bool:
    """A built-in network or a plug-in kind: loading it imports no code the name chose."""
    return any(ref.startswith(prefix) for prefix in PLUGINS) or ":" not in ref or \
        builtin_factory(ref) is not None


def check_file_references(found: TrainConfig | Mapping[str, Any], *, origin: str,
                          given: Mapping[str, Any] | None = None) -> None:
    """Refuses, in one line and importing nothing, settings read from a file whose reference
    fields (``setting(reference=...)``: model, objective, any added later) name code that
    this process's code did not name. ``found``: a configuration, or values by dotted name
    (a saved estimator's Params). ``given``: the caller's own values by dotted name (flags,
    a TOML file, arguments): a reference equal to one of them is the caller's."""
    own = dict(given or {})
    for s in train_settings():
        if s.reference is None:
            continue
        value: Any = found
        if isinstance(found, TrainConfig):
            for part in s.path:
                value = getattr(value, part)
        else:
            value = found.get(s.dotted)
        what, names_code = _REFERENCE_KINDS[s.reference]
        if not isinstance(value, str) or not names_code(value) or is_trusted(value) or \
                own.get(s.dotted) == value:
            continue
        raise ConfigError(f"{origin} names the {what} {value[:80]!r} ({s.dotted}); sparknet "
                          "never imports code a file names: pass it again "
                          f"({s.flag} {value[:80]} on the command line, or the Python "
                          f"argument) or call sparknet.models.trust_factory({value[:80]!r}) "
                          "first")


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
    if _is_data_model(ref) or is_trusted(ref):
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
    trust(model)
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
