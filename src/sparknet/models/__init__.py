"""Built-in networks, model kinds and the registry that resolves model references."""

from sparknet.models.kinds import ModelKind
from sparknet.models.registry import resolve_model, resolve_saved_model, trust_factory
from sparknet.models.zoo import BUILTIN_MODELS, LeNet, SmallCNN

__all__ = ["BUILTIN_MODELS", "LeNet", "ModelKind", "SmallCNN", "resolve_model",
           "resolve_saved_model", "trust_factory"]
