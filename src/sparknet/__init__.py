"""sparknet: SparkNet-style parallel SGD for PyTorch on Spark.

The public API is small: configure with the dataclasses in ``sparknet.config``, place data on
Spark with ``fashion_mnist_data``/``from_arrays`` (or a DataFrame through ``sparknet.ml``),
and call ``train``. Everything else is an implementation detail.
"""

__version__ = "0.1.0"

from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
from sparknet.data.placement import SparkData
from sparknet.data.shards import InputSpec
from sparknet.data.sources import fashion_mnist_data, from_arrays
from sparknet.engine.loop import TrainResult
from sparknet.engine.spark_session import get_or_create_session
from sparknet.engine.trainer import load_result, train
from sparknet.errors import ConfigError, DataError, SparknetError, TrainingError

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
