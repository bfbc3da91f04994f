"""Settings derived from the config dataclasses: one list that the CLI and the ML stage read.

Each ``Setting`` is one config field (``engine.tau``) with its documentation, default, type,
choices, CLI flag and Spark ML Param name, all taken from the field's declaration in
``sparknet.config``. Nothing here knows argparse or Spark.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from sparknet.config import TrainConfig, type_name

ValueKind = Literal["int", "float", "bool", "str", "int_or_auto", "int_list", "str_list"]


@dataclass(frozen=True)
class Setting:
    """One configuration field as the user sees it."""

    path: tuple[str, ...]  # ("engine", "tau"); a top-level field has one element
    doc: str
    default: Any
    kind: ValueKind
    optional: bool  # None is a valid value
    choices: tuple[str, ...] | None
    flag: str
    param: str
    metavar: str | None
    type_text: str
    reference: str | None = None  # "network", "loss": the field may name code


    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    def help(self) -> str:
        """The field's doc with its default, as CLI help and Param documentation."""
        return f"{self.doc} (default {self.default})"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _kind(hint: Any) -> tuple[ValueKind, bool, tuple[str, ...] | None]:
    """(value kind, optional, choices) of a field annotation."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (tuple, list):
        return ("str_list" if str in args else "int_list"), False, None
    if typing.get_origin(hint) is Literal:
        return "str", False, tuple(str(a) for a in args)
    if args:  # a union
        options = [a for a in args if a is not type(None)]
        if len(options) == 2 and int in options:
            return "int_or_auto", False, None
        kind, _, choices = _kind(options[0])
        return kind, type(None) in args, choices
    return {int: "int", float: "float", bool: "bool"}.get(hint, "str"), False, None  # type: ignore[return-value]


def settings_of(kind: type[Any], defaults: Any, prefix: tuple[str, ...] = ()
                ) -> Iterator[Setting]:
    """The settings of one config dataclass (``defaults`` an instance holding the defaults)."""
    hints = typing.get_type_hints(kind)
    for f in dataclasses.fields(kind):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            yield from settings_of(type(value), value, (*prefix, f.name))
            continue
        value_kind, optional, choices = _kind(hints[f.name])
        meta = f.metadata
        yield Setting(path=(*prefix, f.name), doc=meta["doc"], default=value, kind=value_kind,
                      optional=optional, choices=choices,
                      flag=meta["flag"] or "--" + f.name.replace("_", "-"),
                      param=meta["param"] or _camel(f.name), metavar=meta["metavar"],
                      type_text=type_name(hints[f.name]), reference=meta.get("reference"))


def train_settings() -> list[Setting]:
    """Every field of ``TrainConfig``, nested sections flattened, in declaration order."""
    return list(settings_of(TrainConfig, TrainConfig()))


def nested(values: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    """``{("engine", "tau"): 50}`` -> ``{"engine": {"tau": 50}}``, for ``TrainConfig.from_dict``."""
    out: dict[str, Any] = {}
    for path, value in values.items():
        target = out
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return out
