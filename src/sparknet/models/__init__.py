"""Built-in networks and model references."""

from sparknet.models.registry import ModelSource, model_source, resolve_factory
from sparknet.models.zoo import BUILTIN_MODELS, LeNet, SmallCNN

__all__ = ["BUILTIN_MODELS", "LeNet", "ModelSource", "SmallCNN", "model_source",
           "resolve_factory"]
