"""A fitted model as MLflow models: the Spark flavour and an ONNX flavour for serving.

``mlflow.spark`` saves through Spark ML persistence (our writer: Params as JSON, weights as
safetensors), so a ``SparkNetModel`` or a ``PipelineModel`` holding one loads back with
``mlflow.spark.load_model`` in any process that has sparknet. The serving model is ONNX
(``mlflow.onnx``: the graph ``export_onnx`` writes, scored by onnxruntime without Spark or
sparknet). ONNX rather than a pyfunc wrapper because pyfunc's Python models are pickled with
cloudpickle, and sparknet loads no pickles; an ONNX file is plain data.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparknet.errors import MissingDependencyError, require_package
from sparknet.version import __version__

if TYPE_CHECKING:
    from sparknet.ml.model import SparkNetModel
    from sparknet.tracking import Tracker

SPARK_MODEL = "spark-model"
SERVING_MODEL = "onnx-model"


def _pinned(*packages: str) -> list[str]:
    """Requirements of the installed versions (given, so MLflow runs no inference)."""
    found = []
    for name in packages:
        try:
            found.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(name)
    return found


def save_spark_model(model: Any, path: str | Path, *, dfs_tmpdir: str | None = None) -> None:
    """``mlflow.spark.save_model`` of a SparkNetModel or a PipelineModel holding one.

    The weights are written with local file I/O, so the model goes through a local
    ``file://`` temporary folder unless ``dfs_tmpdir`` names another (shared) one.
    """
    require_package("mlflow", extra="mlflow", needed_for="saving an MLflow model")
    import mlflow.spark

    with tempfile.TemporaryDirectory(prefix="sparknet-mlflow-dfs-") as tmp:
        mlflow.spark.save_model(
            model, str(path), dfs_tmpdir=dfs_tmpdir or Path(tmp).as_uri(),
            pip_requirements=[f"sparknet=={__version__}",
                              *_pinned("pyspark", "torch", "safetensors", "numpy")])


def save_serving_model(model: SparkNetModel, path: str | Path) -> None:
    """``mlflow.onnx.save_model`` of the network: input ``features`` float32
    ``[batch, *inputShape]`` (the feature column's values), outputs ``probability`` and
    ``logits`` as ``transform`` computes them."""
    require_package("mlflow", extra="mlflow", needed_for="saving an MLflow model")
    require_package("onnx", extra="onnx", needed_for="the ONNX serving model")
    import mlflow.onnx
    import numpy as np
    import onnx
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    saved = model.saved_network
    with tempfile.TemporaryDirectory(prefix="sparknet-onnx-") as tmp:
        graph = onnx.load(str(model.export_onnx(Path(tmp) / "model.onnx")))
    width = (-1, saved.num_classes)
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *saved.input_shape), "features")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), width, "probability"),
                        TensorSpec(np.dtype(np.float32), width, "logits")]))
    mlflow.onnx.save_model(graph, str(path), signature=signature,
                           pip_requirements=_pinned("onnx", "onnxruntime", "numpy"))


def log_models(tracker: Tracker, model: SparkNetModel) -> None:
    """Both flavours into the tracker's run (``spark-model/``, ``onnx-model/``); without
    onnx only the Spark model. A failure stops the tracker with its one warning."""
    if not tracker.active:
        return
    with tempfile.TemporaryDirectory(prefix="sparknet-mlflow-model-") as tmp:
        savers: list[tuple[str, Any]] = [(SPARK_MODEL, save_spark_model)]
        try:
            require_package("onnx", extra="onnx", needed_for="the ONNX serving model")
            savers.append((SERVING_MODEL, save_serving_model))
        except MissingDependencyError:
            pass  # the Spark model alone; export_onnx says what is missing when asked
        for name, saver in savers:
            folder = Path(tmp) / name

            def save(saver: Any = saver, folder: Path = folder) -> None:
                saver(model, folder)

            tracker.guarded(save)
            tracker.log_folder(folder, name)
