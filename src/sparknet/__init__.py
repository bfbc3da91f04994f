"""sparknet: SparkNet-style parallel SGD for PyTorch on Spark."""
