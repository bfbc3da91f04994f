"""sparknet: SparkNet-style parallel SGD for PyTorch on Spark.

The public API is small: configure with the dataclasses in ``sparknet.config``, place data on
Spark with ``fashion_mnist_data``/``from_arrays`` (or a DataFrame through ``sparknet.ml``),
and call ``train``. Everything else is an implementation detail.
"""

from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
from sparknet.data.placement import SparkData
from sparknet.data.shards import InputSpec
from sparknet.data.sources import fashion_mnist_data, from_arrays
from sparknet.engine.run_dir import TrainResult, load_result
from sparknet.engine.spark_session import get_or_create_session
from sparknet.engine.trainer import train
from sparknet.errors import ConfigError, DataError, SparknetError, TrainingError
from sparknet.version import __version__ as __version__  # re-exported

__all__ = [
    "ConfigError",
    "DataError",
    "EngineConfig",
    "InputSpec",
    "OptimizerConfig",
    "OuterConfig",
    "SparkData",
    "SparknetError",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "fashion_mnist_data",
    "from_arrays",
    "get_or_create_session",
    "load_result",
    "train",
]
