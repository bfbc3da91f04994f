"""The project's error types: each message names the problem and the fix."""


class SparknetError(Exception):
    """Base class for every error sparknet raises on purpose.

    The CLI prints these as one line without a traceback.
    """


class ConfigError(SparknetError, ValueError):
    """A configuration value is invalid; raised before any Spark job starts."""


class DataError(SparknetError, ValueError):
    """Input data is missing, corrupt or does not fit the configuration."""


class TrainingError(SparknetError, RuntimeError):
    """Training could not continue (a round failed on every retry, the loss diverged)."""


class CaffeFormatError(SparknetError, ValueError):
    """A Caffe file (prototxt, caffemodel, binaryproto, HDF5) is malformed or unsupported."""
