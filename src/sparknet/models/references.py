"""``package.module:function`` references: importing the callable one names, and which
references this process's own code named (the only ones a file may name).

Used for network factories (``models.kinds``) and loss factories (``models.objectives``);
it imports neither, so those two modules stay independent of each other.
"""

from __future__ import annotations

import importlib
from typing import Any

from sparknet.errors import ConfigError

# References this process's code named (``resolve_model``, ``resolve_objective``,
# ``trust_factory``): a run directory or a saved model may name only these.
_TRUSTED: set[str] = set()


def trust(ref: str) -> None:
    """Records that this process's own code named ``ref``."""
    _TRUSTED.add(ref)


def is_trusted(ref: str) -> bool:
    return ref in _TRUSTED


def import_callable(ref: str, *, what: str, returns: str) -> Any:
    """The callable a ``package.module:function`` reference names (one line if it cannot)."""
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module_name!r} of {what} {ref!r} "
                          f"({exc}): check the name and that it is on PYTHONPATH") from None
    found = getattr(module, attr, None)
    if not callable(found):
        raise ConfigError(f"module {module_name!r} has no callable {attr!r} for {what} "
                          f"{ref!r}: name a function that returns {returns}")
    return found
