"""The project's error types: each message names the problem and the fix."""

import importlib


class SparknetError(Exception):
    """Base class for every error sparknet raises on purpose.

    The CLI prints these as one line without a traceback.
    """


class ConfigError(SparknetError, ValueError):
    """A configuration value is invalid; raised before any Spark job starts."""


class MissingDependencyError(ConfigError):
    """An optional package is not installed; the message names the extra that installs it."""


class DataError(SparknetError, ValueError):
    """Input data is missing, corrupt or does not fit the configuration."""


class TrainingError(SparknetError, RuntimeError):
    """Training could not continue (a round failed on every retry, the loss diverged)."""


class CaffeFormatError(SparknetError, ValueError):
    """A Caffe file (prototxt, caffemodel, binaryproto, HDF5) is malformed or unsupported."""


def require_package(package: str, *, extra: str, needed_for: str) -> None:
    """Imports ``package`` or raises a one-line error naming the sparknet extra that has it."""
    try:
        importlib.import_module(package)
    except ImportError as exc:
        if exc.name != package:  # installed but broken: its own error says more
            raise
        raise MissingDependencyError(f"{needed_for} needs the {package} package: "
                                     f"pip install 'sparknet[{extra}]'") from None
