"""``SparkNetModel``: a Spark ML Transformer holding a trained network as plain data.

``transform`` adds ``predictionCol`` (double, the top-1 class) and ``probabilityCol`` (an ML
``DenseVector`` of class probabilities, like Spark's own classifiers). Scoring runs in Arrow
batches on the executors; rows that cannot be scored (null, NaN/inf, undecodable image) get
nulls in both columns.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pyspark.ml import Model
from pyspark.ml.util import (
    DefaultParamsReader,
    DefaultParamsWriter,
    MLReadable,
    MLReader,
    MLWritable,
    MLWriter,
)

from sparknet.data.dataframe import (
    FeatureLayout,
    check_columns,
    check_image_shape,
    default_scale,
    feature_expr,
)
from sparknet.data.frames import is_connect
from sparknet.data.shards import InputSpec
from sparknet.errors import ConfigError
from sparknet.ml.params import SettingParams, model_settings, with_accessors
from sparknet.ml.persistence import (
    WEIGHTS_DIR,
    SavedNetwork,
    local_path,
    read_network,
    write_network,
)
from sparknet.ml.scoring import InlineWeights, ScoringPlan, Weights, probability_column

if TYPE_CHECKING:
    from pyspark import Broadcast, SparkContext
    from pyspark.sql import DataFrame, SparkSession
    from torch import nn


@with_accessors(model_settings())
class SparkNetModel(SettingParams, Model, MLReadable["SparkNetModel"], MLWritable):
    """A trained network as a pipeline stage; made by ``SparkNetEstimator.fit`` or ``load``."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._saved: SavedNetwork | None = None
        self._broadcast: tuple[SparkContext, Broadcast[tuple[np.ndarray, np.ndarray]]] | None \
            = None

    # -- weights -------------------------------------------------------------------------------

    @classmethod
    def _from_saved(cls, saved: SavedNetwork, **params: Any) -> SparkNetModel:
        model = cls(**params)
        model._set_saved(saved)
        return model

    def _set_saved(self, saved: SavedNetwork) -> None:
        self._set(network=saved.network, inputShape=list(saved.input_shape),
                  numClasses=saved.num_classes, inputScale=saved.input_scale)
        self._saved = saved
        self._broadcast = None

    @property
    def saved_network(self) -> SavedNetwork:
        if self._saved is None:
            raise ConfigError("this SparkNetModel holds no weights: get one from "
                              "SparkNetEstimator.fit or SparkNetModel.load")
        return self._saved

    def network_module(self) -> nn.Module:
        """A fresh CPU copy of the trained network in eval mode (logits out)."""
        from sparknet.flat import load_flat_state
        from sparknet.models.registry import resolve_model

        saved = self.saved_network
        module = resolve_model(saved.network).build()
        load_flat_state(module, saved.layout, saved.floats, saved.ints)
        return module.eval()

    def export_onnx(self, path: str | Path, *, opset: int = 17) -> Path:
        """Writes the network, input scaling and softmax as ONNX (features -> probability)."""
        from sparknet.ml.onnx_export import export_onnx

        return export_onnx(self.saved_network, path, opset=opset)

    def _weights(self, session: SparkSession) -> Weights:
        if is_connect(session):  # no SparkContext: the weights travel inside the plan
            saved = self.saved_network
            return InlineWeights((saved.floats, saved.ints))
        # One broadcast per SparkContext, reused by every transform of this model.
        sc = session.sparkContext
        if self._broadcast is None or self._broadcast[0] is not sc:
            saved = self.saved_network
            self._broadcast = (sc, sc.broadcast((saved.floats, saved.ints)))
        return self._broadcast[1]

    # -- scoring -------------------------------------------------------------------------------

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from pyspark.ml.functions import array_to_vector
        from pyspark.sql import functions as F

        from sparknet.models.registry import resolve_model

        saved, scoring = self.saved_network, self.scoring_config()
        column = scoring.features_col
        kind = check_columns(dataset, features=column, label=None)
        shape = self.getInputShape()
        check_image_shape(kind, shape, column=column)
        scale = scoring.input_scale if scoring.input_scale is not None else default_scale(kind)
        model = resolve_model(saved.network)
        prep = model.input_prep(InputSpec(shape=shape, num_classes=saved.num_classes,
                                          scale=scale))
        plan = ScoringPlan(model=model, prep=prep, weights_token=saved.token,
                           layout=FeatureLayout(kind=kind, shape=shape),
                           batch_size=scoring.scoring_batch_size,
                           threads=self.getThreadsPerWorker(),  # type: ignore[attr-defined]
                           device=self.getDevice())  # type: ignore[attr-defined]
        probs = probability_column(feature_expr(column, kind), plan,
                                   self._weights(dataset.sparkSession))
        scratch = f"__sparknet_probability_{self.uid}"
        out = dataset.withColumn(scratch, probs)
        top1 = (F.array_position(F.col(scratch), F.array_max(F.col(scratch))) - 1)
        if scoring.prediction_col:
            out = out.withColumn(scoring.prediction_col, top1.cast("double"))
        if scoring.probability_col:
            # array_to_vector fails on null arrays; unscorable rows stay null.
            vector = F.when(F.col(scratch).isNotNull(), array_to_vector(F.col(scratch)))
            out = out.withColumn(scoring.probability_col, vector)
        return out.drop(scratch)

    # -- persistence ---------------------------------------------------------------------------

    def write(self) -> MLWriter:
        return _ModelWriter(self)

    @classmethod
    def read(cls) -> MLReader[SparkNetModel]:
        return _ModelReader()


class _ModelWriter(MLWriter):
    def __init__(self, instance: SparkNetModel) -> None:
        super().__init__()
        self.instance = instance

    def _handleOverwrite(self, path: str) -> None:
        # The folder is local (or mounted) on this machine: removed here, with no JVM call,
        # so overwrite() works on Spark Connect too.
        folder = local_path(path)
        if folder.is_dir():
            shutil.rmtree(folder)

    def saveImpl(self, path: str) -> None:
        saved = self.instance.saved_network
        folder = local_path(path)  # refuse other file systems before writing anything
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sparkSession)
        write_network(folder / WEIGHTS_DIR, saved)


class _ModelReader(MLReader[SparkNetModel]):
    def load(self, path: str) -> SparkNetModel:
        metadata = DefaultParamsReader.loadMetadata(path, self.sparkSession,
                                                    expectedClassName=_class_name())
        model = SparkNetModel()
        model._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(model, metadata)
        model._set_saved(read_network(local_path(path) / WEIGHTS_DIR))
        return model


def _class_name() -> str:
    return f"{SparkNetModel.__module__}.{SparkNetModel.__name__}"
