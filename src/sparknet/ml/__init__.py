"""Spark ML pipeline stage: ``SparkNetEstimator`` (fit) and ``SparkNetModel`` (transform)."""

from sparknet.ml.estimator import SparkNetEstimator
from sparknet.ml.model import SparkNetModel

__all__ = ["SparkNetEstimator", "SparkNetModel"]
