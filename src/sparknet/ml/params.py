"""The stage's Params, derived from the config dataclasses' fields and their docs.

Every setting of ``TrainConfig`` (``engine.tau`` -> Param ``tau``), ``ScoringConfig`` and
``FitConfig`` becomes a Param with the field's documentation and default; ``with_accessors``
gives each Param a ``getX``/``setX`` pair and the class keyword-only ``__init__`` and
``setParams``. All Params hold JSON-friendly values, so Spark ML persistence writes them as
plain metadata.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pyspark.ml.param import Param, Params, TypeConverters

from sparknet.config import CombinationError, TrainConfig
from sparknet.errors import ConfigError
from sparknet.ml.config import FitConfig, ScoringConfig
from sparknet.settings import Setting, nested, settings_of, train_settings

# Estimator Params the model answers itself, not as Params.
MODEL_OWN = ("numClasses",)


def _int_or_auto(value: Any) -> int | str:
    """tau: a positive number of steps, 'epoch' (one pass over each shard) or 'auto' (the
    engine picks it per round)."""
    return value if value in ("epoch", "auto") else TypeConverters.toInt(value)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "int": TypeConverters.toInt, "float": TypeConverters.toFloat,
    "bool": TypeConverters.toBoolean, "str": TypeConverters.toString,
    "int_or_auto": _int_or_auto, "int_list": TypeConverters.toListInt,
    "str_list": TypeConverters.toListString,
}

T = TypeVar("T", bound=type)


def network_reference(value: Any, *, param: str = "network") -> str:
    """The network (or objective) Param: a reference string, or an importable factory function
    or nn.Module class, stored as its ``module:qualname`` reference (so the Param persists as
    text)."""
    if isinstance(value, str) or not callable(value):
        return TypeConverters.toString(value)
    module, name = getattr(value, "__module__", None), getattr(value, "__qualname__", "")
    if module in (None, "__main__") or "<" in name:
        raise TypeError(f"{param}={value!r} cannot be named in another process: define it at "
                        "the top level of a module (not __main__, a lambda or a nested "
                        "function) and pass it, or its 'module:function' reference")
    return f"{module}:{name}"


def objective_reference(value: Any) -> str:
    """The objective Param: a name, or a loss factory function (stored as its reference)."""
    return network_reference(value, param="objective")


def network_arguments(value: Any) -> str:
    """networkArgs: a JSON object as text, or a dict (stored as its JSON text)."""
    if isinstance(value, dict):
        try:
            return json.dumps(value, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"networkArgs={value!r} cannot be written as JSON ({exc}): give "
                            "numbers, strings, lists and dicts") from None
    return TypeConverters.toString(value)


_SPECIAL: dict[str, Callable[[Any], Any]] = {"network": network_reference,
                                             "networkArgs": network_arguments,
                                             "objective": objective_reference}


def _param(setting: Setting) -> Param[Any]:
    converter = _SPECIAL.get(setting.param) or _CONVERTERS[setting.kind]
    return Param(Params._dummy(), setting.param, setting.help(), typeConverter=converter)


def scoring_settings() -> list[Setting]:
    return list(settings_of(ScoringConfig, ScoringConfig()))


def fit_settings() -> list[Setting]:
    return list(settings_of(FitConfig, FitConfig()))


def model_settings() -> list[Setting]:
    """The model's Params: every Param of the estimator that made it (so ``bestModel``
    tells the winning settings), less ``numClasses``, which the model answers as a number."""
    return [s for s in estimator_settings() if s.param not in MODEL_OWN]


def estimator_settings() -> list[Setting]:
    return train_settings() + scoring_settings() + fit_settings()


def with_accessors(settings: Iterable[Setting]) -> Callable[[T], T]:
    """Adds a Param, ``getX``/``setX``, ``__init__(**params)`` and ``setParams`` per setting."""
    settings = list(settings)

    def decorate(cls: T) -> T:
        for s in settings:
            setattr(cls, s.param, _param(s))
            suffix = s.param[0].upper() + s.param[1:]
            if not hasattr(cls, f"get{suffix}"):
                setattr(cls, f"get{suffix}", _getter(s.param))
            if not hasattr(cls, f"set{suffix}"):
                setattr(cls, f"set{suffix}", _setter(s.param))
        signature = inspect.Signature(
            [inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)] +
            [inspect.Parameter(s.param, inspect.Parameter.KEYWORD_ONLY, default=s.default)
             for s in settings])
        # Own functions per class, so each shows its own keyword arguments in help().
        own_init = cls.__dict__.get("__init__", SettingParams.__init__)

        def __init__(self: SettingParams, **params: Any) -> None:
            own_init(self, **params)

        def setParams(self: SettingParams, **params: Any) -> SettingParams:
            return SettingParams.setParams(self, **params)

        for function in (__init__, setParams):
            function.__signature__ = signature  # type: ignore[union-attr]
            function.__doc__ = f"Keyword-only Params of {cls.__name__}; see explainParams()."
            function.__qualname__ = f"{cls.__name__}.{function.__name__}"
            setattr(cls, function.__name__, function)
        cls._setting_list = settings  # type: ignore[attr-defined]
        return cls

    return decorate


def _getter(name: str) -> Callable[[Params], Any]:
    def get(self: Params) -> Any:
        return self.getOrDefault(getattr(self, name))

    get.__name__ = f"get{name[0].upper()}{name[1:]}"
    get.__doc__ = f"The value of Param {name!r} (or its default)."
    return get


def _setter(name: str) -> Callable[[Params, Any], Params]:
    def set_(self: Params, value: Any) -> Params:
        return self._set(**{name: value})

    set_.__name__ = f"set{name[0].upper()}{name[1:]}"
    set_.__doc__ = f"Sets Param {name!r}."
    return set_


class SettingParams(Params):
    """Params built from settings: defaults set, keyword-only construction checked."""

    _setting_list: list[Setting] = []

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self._setDefault(**{s.param: s.default for s in self._setting_list
                            if s.default is not None})
        self.setParams(**params)

    def setParams(self, **params: Any) -> SettingParams:
        """Sets any of the Params by name; an unknown name is a TypeError listing the known."""
        known = {s.param for s in self._setting_list}
        unknown = sorted(set(params) - known)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no parameter {unknown[0]!r}; known "
                            f"parameters: {', '.join(sorted(known))}")
        return self._set(**{k: v for k, v in params.items() if v is not None})

    def _set(self, **kwargs: Any) -> SettingParams:
        """Spark's ``_set``, with each value checked against its setting's own rule first: an
        invalid value is one ``ConfigError`` (a ValueError) line now, not at ``fit``."""
        by_param = {s.param: s for s in self._setting_list}
        for name, value in kwargs.items():
            setting = by_param.get(name)
            if setting is not None and value is not None:
                param = self.getParam(name)
                check_setting(setting, param.typeConverter(value) if param.typeConverter
                              else value)
        super()._set(**kwargs)
        return self

    def _values(self, settings: Iterable[Setting]) -> dict[tuple[str, ...], Any]:
        """Set or default values by setting path; unset optional settings are left out."""
        return {s.path: self.getOrDefault(getattr(self, s.param)) for s in settings
                if isinstance(getattr(self, s.param, None), Param) and
                self.isDefined(getattr(self, s.param))}

    def scoring_config(self) -> ScoringConfig:
        values = {path[-1]: value for path, value in self._values(scoring_settings()).items()}
        for name in ("input_shape", "labels"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        return ScoringConfig(**values)

    def getInputShape(self) -> tuple[int, ...]:
        if not self.isDefined(self.inputShape):  # type: ignore[attr-defined]
            raise ConfigError("inputShape is not set: give the shape one example has as network "
                              "input, e.g. inputShape=[1, 28, 28]")
        shape = tuple(self.getOrDefault(self.inputShape))  # type: ignore[attr-defined]
        if not shape or any(d < 1 for d in shape):
            raise ConfigError(f"inputShape={list(shape)} is invalid: give positive dims, "
                              "e.g. [1, 28, 28]")
        return shape


def check_setting(setting: Setting, value: Any) -> None:
    """Checks one value by its config section's own rules, the other fields at their
    defaults; a rule that joins two settings (``CombinationError``) waits for ``fit``."""
    if isinstance(value, list):
        value = tuple(value)
    try:
        if setting in scoring_settings():
            ScoringConfig(**{setting.path[-1]: value})
        elif setting in fit_settings():
            FitConfig(**{setting.path[-1]: value})
        else:
            TrainConfig.from_dict(nested({setting.path: value}))
    except CombinationError:
        return
    except ConfigError as exc:
        raise ConfigError(f"{setting.param}: {exc}") from None


def train_config_of(params: SettingParams, *, rounds: int | None = None) -> TrainConfig:
    """The ``TrainConfig`` the training Params describe (validated)."""
    values = nested(params._values(train_settings()))
    if rounds is not None:
        values.setdefault("engine", {})["rounds"] = rounds
    return TrainConfig.from_dict(values)


def fit_config_of(params: SettingParams) -> FitConfig:
    return FitConfig(**{path[-1]: v for path, v in params._values(fit_settings()).items()})


def params_markdown() -> str:
    """The Params as a Markdown table (docs/ml.md holds this; a test keeps them equal)."""
    model = {s.param for s in model_settings()}
    lines = ["| Param | setting | default | on the model | meaning |", "|---|---|---|---|---|"]
    for s in estimator_settings():
        default = "unset" if s.default is None else f"`{s.default}`"
        lines.append(f"| `{s.param}` | `{s.dotted}` | {default} | "
                     f"{'yes' if s.param in model else ''} | {s.doc} |")
    return "\n".join(lines) + "\n"
