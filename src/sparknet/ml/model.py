"""``SparkNetModel``: a Spark ML Transformer holding a trained network as plain data.

``transform`` adds the columns Spark's models write for the model's objective: for classifiers
``rawPredictionCol`` and ``probabilityCol`` (ML ``DenseVector``s) and ``predictionCol`` (the
class as a double; a 0/1 vector for multilabel), for regression ``predictionCol`` (a double,
or a vector for vector targets). Scoring runs in Arrow batches on the executors; rows that
cannot be scored (null, NaN/inf, undecodable image) get nulls. ``predict``,
``predictProbability`` and ``predictRaw`` score one vector on the driver; ``udf`` gives the
network as a vectorised UDF for ``withColumn`` and SQL. A fitted model carries its
``summary``.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Iterable
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

from sparknet.data.columns import (
    KINDS,
    FeatureKind,
    FeatureLayout,
    check_columns,
    check_image_shape,
    default_scale,
    feature_expr,
)
from sparknet.data.placement import is_connect
from sparknet.engine.transport import Inline, Shared, transport_for
from sparknet.errors import ConfigError, DataError
from sparknet.ml.params import (
    MODEL_OWN,
    SettingParams,
    model_settings,
    network_reference,
    with_accessors,
)
from sparknet.ml.persistence import (
    SUMMARY_FILE,
    WEIGHTS_DIR,
    HadoopFolder,
    SavedNetwork,
    local_path,
    read_network,
    read_summary,
    write_network,
    write_summary,
)
from sparknet.ml.scoring import (
    GuardedUDF,
    ScoringPlan,
    checked_size,
    invalid_message,
    network_scores,
    raise_on_null,
    score_column,
    scoring_udf,
)
from sparknet.ml.shipping import ship_user_modules
from sparknet.ml.summary import SparkNetTrainingSummary
from sparknet.models.objectives import ScoreWidths

if TYPE_CHECKING:
    from pyspark.ml.linalg import DenseVector
    from pyspark.sql import Column, DataFrame, SparkSession
    from torch import nn


@with_accessors(model_settings())
class SparkNetModel(SettingParams, Model, MLReadable["SparkNetModel"], MLWritable):
    """A trained network as a pipeline stage; made by ``SparkNetEstimator.fit`` or ``load``."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._saved: SavedNetwork | None = None
        self._shared: tuple[Any, Shared] | None = None  # (session or context, weights)
        self._summary: SparkNetTrainingSummary | None = None
        self._driver_network: nn.Module | None = None

    def __getstate__(self) -> dict[str, Any]:
        # A broadcast handle and a built network belong to this process: pickling (into a
        # UDF, a worker) leaves them out; they are made again where needed.
        state = self.__dict__.copy()
        state["_shared"] = None
        state["_driver_network"] = None
        return state

    # -- summary -------------------------------------------------------------------------------

    @property
    def hasSummary(self) -> bool:
        """Whether this model carries its training summary (fit, or load of a fitted one)."""
        return self._summary is not None

    @property
    def summary(self) -> SparkNetTrainingSummary:
        """The per-round history of the fit that made this model."""
        if self._summary is None:
            raise RuntimeError(f"No training summary available for this {type(self).__name__}: "
                               "it was not made by fit (or was saved without one)")
        return self._summary

    # -- weights -------------------------------------------------------------------------------

    @classmethod
    def fromRun(cls, path: str | Path, **params: Any) -> SparkNetModel:
        """The final weights of a ``sparknet train`` run as a model (``params``: scoring Params
        such as ``featuresCol``). The run records its input shape, scale and, for an image
        folder, the class names, which ``transform`` writes as ``predictedLabel``. A run
        trained on a factory loads once this process has named the factory (see
        ``sparknet.models.trust_factory``)."""
        from sparknet.engine.run_dir import load_result

        result = load_result(path)
        if result.spec is None:
            raise ConfigError(f"run {path} does not record its input (it was written by an "
                              "older sparknet): export it with 'sparknet export-onnx' instead")
        spec, config = result.spec, result.config
        saved = SavedNetwork(network=config.model, input_shape=spec.shape,
                             num_classes=spec.num_classes, input_scale=spec.scale,
                             layout=result.layout, floats=result.floats, ints=result.ints,
                             objective=config.objective, network_args=config.model_args,
                             labels=spec.class_names or None)
        return cls._from_saved(saved, **params)

    @classmethod
    def _from_saved(cls, saved: SavedNetwork, **params: Any) -> SparkNetModel:
        model = cls(**params)
        model._set_saved(saved)
        return model

    def _set_saved(self, saved: SavedNetwork) -> None:
        self._set(network=saved.network, inputShape=list(saved.input_shape),
                  inputScale=saved.input_scale, objective=saved.objective)
        if saved.labels is not None:
            self._set(labels=list(saved.labels))
        self._saved = saved
        self._shared = None
        self._driver_network = None

    @property
    def numClasses(self) -> int:
        """The network's number of outputs (classes for a classifier), as Spark's
        ``ClassificationModel.numClasses``."""
        return self.saved_network.num_classes

    def getNumClasses(self) -> int:
        return self.numClasses

    @property
    def numFeatures(self) -> int:
        """Values per example (the product of inputShape), as Spark's models say."""
        return math.prod(self.getInputShape())

    @property
    def saved_network(self) -> SavedNetwork:
        if self._saved is None:
            raise ConfigError("this SparkNetModel holds no weights: get one from "
                              "SparkNetEstimator.fit or SparkNetModel.load")
        return self._saved

    def network_module(self) -> nn.Module:
        """A fresh CPU copy of the trained network in eval mode (logits out)."""
        from sparknet.flat import load_flat_state

        saved = self.saved_network
        module = saved.kind().build()
        load_flat_state(module, saved.layout, saved.floats, saved.ints)
        return module.eval()

    # -- scoring on the driver -----------------------------------------------------------------

    def _score_one(self, value: Any) -> tuple[np.ndarray, ScoreWidths]:
        """The score row (raw, probability, prediction side by side) of one feature vector."""
        saved, scoring = self.saved_network, self.scoring_config()
        if self._driver_network is None:
            self._driver_network = self.network_module()
        features = np.asarray(value.toArray() if hasattr(value, "toArray") else value,
                              np.float32)
        if features.size != math.prod(saved.input_shape):
            raise DataError(f"the vector has {features.size} values but inputShape "
                            f"{list(saved.input_shape)} needs {math.prod(saved.input_shape)}: "
                            "score data shaped like the training data")
        scale = scoring.input_scale if scoring.input_scale is not None else saved.input_scale
        prep = saved.kind().input_prep(saved.input_spec(scale=scale))
        objective = saved.objective_kind()
        row = network_scores(self._driver_network, features.reshape(1, *saved.input_shape),
                             prep=prep, batch_size=1, objective=objective)[0]
        return row, objective.score_widths(saved.num_classes)

    def predict(self, value: Any) -> float | DenseVector:
        """The prediction for one feature vector (an ML Vector, list or array), on the driver:
        the class as a float for classifiers, the output for regression (a DenseVector for
        multilabel and vector targets)."""
        from pyspark.ml.linalg import DenseVector

        row, widths = self._score_one(value)
        prediction = row[widths.raw + widths.probability:]
        return DenseVector(prediction) if widths.vector_prediction else float(prediction[0])

    def predictProbability(self, value: Any) -> DenseVector:
        """Class probabilities for one feature vector (classifiers only)."""
        from pyspark.ml.linalg import DenseVector

        row, widths = self._score_one(value)
        self._require_classifier("predictProbability", widths)
        return DenseVector(row[widths.raw: widths.raw + widths.probability])

    def predictRaw(self, value: Any) -> DenseVector:
        """Raw scores (logits) for one feature vector (classifiers only)."""
        from pyspark.ml.linalg import DenseVector

        row, widths = self._score_one(value)
        self._require_classifier("predictRaw", widths)
        return DenseVector(row[: widths.raw])

    def _require_classifier(self, method: str, widths: ScoreWidths) -> None:
        if widths.probability == 0:
            raise ConfigError(f"{method} needs a classifier, but this model's objective is "
                              f"{self.saved_network.objective!r}: use predict")

    def export_onnx(self, path: str | Path, *, opset: int = 17) -> Path:
        """Writes the network, input scaling and the objective's head (softmax, sigmoid or none)
        as ONNX (features -> probability, logits)."""
        from sparknet.ml.onnx_export import export_onnx

        return export_onnx(self.saved_network, path, opset=opset)

    def _weights(self, session: SparkSession) -> Shared:
        """The weights through the session's transport: one broadcast per SparkContext,
        reused by every transform of this model; inside the plan on Spark Connect."""
        transport = transport_for(session)
        owner = getattr(transport, "context", session)
        if self._shared is None or self._shared[0] is not owner:
            saved = self.saved_network
            self._shared = (owner, transport.share((saved.floats, saved.ints)))
        return self._shared[1]

    # -- scoring -------------------------------------------------------------------------------

    def _scoring_plan(self, kind: FeatureKind) -> ScoringPlan:
        saved, scoring = self.saved_network, self.scoring_config()
        shape = self.getInputShape()
        check_image_shape(kind, shape, column=scoring.features_col)
        scale = scoring.input_scale if scoring.input_scale is not None else default_scale(kind)
        model = saved.kind()
        prep = model.input_prep(saved.input_spec(shape=shape, scale=scale))
        return ScoringPlan(model=model, prep=prep, weights_token=saved.token,
                           layout=FeatureLayout(kind=kind, shape=shape),
                           batch_size=scoring.scoring_batch_size,
                           threads=self.getThreadsPerWorker(),  # type: ignore[attr-defined]
                           device=self.getDevice(),  # type: ignore[attr-defined]
                           objective=saved.objective_kind())

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from pyspark.ml.functions import array_to_vector
        from pyspark.sql import functions as F

        saved, scoring = self.saved_network, self.scoring_config()
        column = scoring.features_col
        kind = check_columns(dataset, features=column, label=None)
        plan = self._scoring_plan(kind)
        widths = plan.objective.score_widths(saved.num_classes)
        features = feature_expr(column, kind)
        mode = scoring.handle_invalid
        if KINDS[kind].sized and mode == "error":
            features = checked_size(features, self.getInputShape())
        # A model loaded in a new process ships the network's module as fit did.
        ship_user_modules(dataset.sparkSession, [saved.network])
        scores = score_column(features, plan, self._weights(dataset.sparkSession))
        if mode == "error":  # one line from the JVM, never a Python worker's traceback
            scores = raise_on_null(scores, invalid_message(column, self.getInputShape()))
        scratch = f"__sparknet_scores_{self.uid}"
        out = dataset.withColumn(scratch, scores)
        scored = F.col(scratch)
        if mode == "skip":
            out = out.filter(scored.isNotNull())

        def vector(start: int, width: int) -> Column:
            # array_to_vector fails on null arrays; unscorable rows stay null.
            return F.when(scored.isNotNull(), array_to_vector(F.slice(scored, start + 1, width)))

        columns = {scoring.raw_prediction_col: (0, widths.raw),
                   scoring.probability_col: (widths.raw, widths.probability)}
        for name, (start, width) in columns.items():
            if name and width:
                out = out.withColumn(name, vector(start, width))
        if scoring.prediction_col:
            start = widths.raw + widths.probability
            if plan.objective.is_classifier and widths.vector_prediction:
                prediction = label_set(F.slice(scored, start + 1, widths.prediction))
            elif widths.vector_prediction:
                prediction = vector(start, widths.prediction)
            else:
                prediction = F.element_at(scored, start + 1)
            out = out.withColumn(scoring.prediction_col, prediction)
        if scoring.labels and scoring.predicted_label_col and \
                plan.objective.class_count(saved.num_classes) > 0:
            index = F.element_at(scored, widths.raw + widths.probability + 1).cast("int")
            names = F.array(*[F.lit(name) for name in scoring.labels])
            out = out.withColumn(scoring.predicted_label_col,
                                 F.try_element_at(names, index + F.lit(1)))
        return out.drop(scratch)

    def udf(self, output: str = "prediction") -> Any:
        """The network as a vectorised Arrow UDF over an ML Vector (dense or sparse) or
        array<float|double> feature column.

        ``output``: ``prediction`` (a double, or array<double> for vector predictions),
        ``probability`` or ``rawPrediction`` (array<double>, classifiers). Use it in
        ``withColumn`` or register it for SQL: ``spark.udf.register("score", model.udf())``.
        Each Python worker builds the network once and keeps it (the weights travel inside
        the UDF). A row that cannot be scored (null, NaN, the wrong size) gives null with
        ``handleInvalid`` keep or skip (a UDF cannot drop rows: filter the nulls); with error
        it stops the job with one line (registered for SQL, the UDF gives nulls).
        """
        saved = self.saved_network
        plan = self._scoring_plan("array")
        widths = plan.objective.score_widths(saved.num_classes)
        spans = {"rawPrediction": (0, widths.raw),
                 "probability": (widths.raw, widths.probability),
                 "prediction": (widths.raw + widths.probability, widths.prediction)}
        if output not in spans or spans[output][1] == 0:
            usable = [name for name, (_, width) in spans.items() if width]
            raise ConfigError(f"udf(output={output!r}) is not available for objective "
                              f"{saved.objective!r}: use one of {usable}")
        start, width = spans[output]
        scalar = output == "prediction" and not widths.vector_prediction
        active = _active_session()
        if active is not None:
            ship_user_modules(active, [saved.network])
        udf = scoring_udf(plan, Inline((saved.floats, saved.ints)), start=start,
                          width=width, scalar=scalar)
        if self.scoring_config().handle_invalid != "error":
            return udf
        return GuardedUDF(udf, invalid_message("the UDF's argument", self.getInputShape()))

    # -- persistence ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str, *, trust: Iterable[str | Callable[..., Any]] = ()
             ) -> SparkNetModel:
        """Spark ML's ``load``; ``trust``: network factories (``'module:function'`` or the
        function) this process names before reading, as ``sparknet.models.trust_factory``
        does, so a model trained on them loads. A ``PipelineModel.load`` reads its stages
        with plain ``load(path)``: call ``trust_factory`` before it."""
        from sparknet.models.registry import trust_factory

        for factory in trust:
            trust_factory(network_reference(factory))
        return cls.read().load(path)

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
        if not is_connect(self.sparkSession):
            HadoopFolder(self.sparkSession, path).delete()
            return
        # On Connect the folder is local (or mounted) on this machine: removed here, with no
        # JVM call.
        folder = local_path(path)
        if folder.is_dir():
            shutil.rmtree(folder)

    def saveImpl(self, path: str) -> None:
        connect = is_connect(self.sparkSession)
        if connect:
            local_path(path)  # refuse other file systems before writing anything
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sparkSession)
        if connect:
            _write_files(local_path(path), self.instance)
            return
        # Classic: written locally, then copied through Hadoop's FileSystem to any URI.
        with tempfile.TemporaryDirectory(prefix="sparknet-save-") as scratch:
            _write_files(Path(scratch), self.instance)
            folder = HadoopFolder(self.sparkSession, path)
            for name in sorted(p.name for p in Path(scratch).iterdir()):
                folder.put(Path(scratch) / name, name)


def _write_files(folder: Path, model: SparkNetModel) -> None:
    write_network(folder / WEIGHTS_DIR, model.saved_network)
    if model._summary is not None:
        write_summary(folder, model._summary.to_dict())


class _ModelReader(MLReader[SparkNetModel]):
    def load(self, path: str) -> SparkNetModel:
        metadata = DefaultParamsReader.loadMetadata(path, self.sparkSession,
                                                    expectedClassName=_class_name())
        for own in MODEL_OWN:  # saved as Params by earlier versions; the network says them
            metadata["paramMap"].pop(own, None)
            metadata.get("defaultParamMap", {}).pop(own, None)
        model = SparkNetModel()
        model._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(model, metadata)
        if is_connect(self.sparkSession):
            _read_files(local_path(path), model)
            return model
        with tempfile.TemporaryDirectory(prefix="sparknet-load-") as scratch:
            folder = HadoopFolder(self.sparkSession, path)
            for name in (WEIGHTS_DIR, SUMMARY_FILE):
                if folder.exists(name):
                    folder.get(name, Path(scratch) / name)
            _read_files(Path(scratch), model, origin=path)
        return model


def _read_files(folder: Path, model: SparkNetModel, *, origin: str | None = None) -> None:
    try:
        model._set_saved(read_network(folder / WEIGHTS_DIR))
        summary = read_summary(folder)
    except (DataError, ConfigError) as exc:  # name the saved folder, not the scratch copy
        raise type(exc)(str(exc).replace(str(folder), origin or str(folder))) from None
    if summary is not None:
        model._summary = SparkNetTrainingSummary.from_dict(summary)


def label_set(indicators: Column) -> Column:
    """A multilabel prediction's 0/1 values -> the indices of its labels as array<double>,
    the form Spark's MultilabelClassificationEvaluator reads (null stays null)."""
    from pyspark.sql import functions as F

    marked = F.transform(indicators, lambda value, i: F.when(value > 0.5, i.cast("double")))
    return F.filter(marked, lambda i: i.isNotNull())


def _active_session() -> SparkSession | None:
    """The session ``udf()``'s UDF will most likely run in (classic or Connect), if any."""
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()


def _class_name() -> str:
    return f"{SparkNetModel.__module__}.{SparkNetModel.__name__}"
