"""sparknet: SparkNet-style parallel SGD for PyTorch on Spark."""

__version__ = "0.1.0"
