"""Null, NaN and misshapen rows in every feature kind, in fit, transform and udf(), under each
``handleInvalid``: error stops with one line (no JVM or worker traceback), skip leaves the rows
out, keep leaves them out of fit and gives them null outputs in transform."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from sparknet.errors import DataError
from sparknet.ml import SparkNetEstimator, SparkNetModel

pytestmark = pytest.mark.spark

GOOD = 16
KINDS = ("vector", "array", "binary", "image")
MODES = ("error", "keep", "skip")
# The default run covers each kind and each mode once; the full product is slow.
DEFAULT = {("vector", "error"), ("array", "keep"), ("binary", "skip"), ("image", "error"),
           ("image", "keep"), ("vector", "skip")}
PARAMS = {"network": "sparknet_testing.nets:mlp", "networkArgs": {"inputs": 4, "outputs": 2},
          "inputShape": [1, 2, 2], "numWorkers": 2, "tau": 1, "batchSize": 2, "rounds": 1,
          "progress": "off"}


def _cases(kinds: tuple[str, ...]) -> list[Any]:
    return [pytest.param(kind, mode, marks=() if (kind, mode) in DEFAULT else pytest.mark.slow)
            for kind in kinds for mode in MODES]


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(out, format="PNG")
    return out.getvalue()


def _image(pixels: np.ndarray) -> tuple[Any, ...]:
    height, width = pixels.shape
    return ("", height, width, 1, 0, bytearray(pixels.astype(np.uint8).tobytes()))


def _rows(kind: str) -> tuple[list[Any], str | Any, int]:
    """(rows of good then bad features with a label, schema, number of bad rows)."""
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql.types import (
        BinaryType,
        DoubleType,
        IntegerType,
        StringType,
        StructField,
        StructType,
    )

    pixels = np.random.default_rng(0).integers(0, 256, (GOOD, 2, 2))
    labels = [float(i % 2) for i in range(GOOD)]
    nan = [0.5, float("nan"), 0.1, 0.2]
    if kind == "vector":
        good = [Vectors.dense(p.reshape(-1) / 255) for p in pixels]
        bad = [None, Vectors.dense(nan), Vectors.dense([0.1, 0.2, 0.3])]
        feature_type: Any = VectorUDT()
    elif kind == "array":
        good = [(p.reshape(-1) / 255).tolist() for p in pixels]
        bad = [None, nan, [0.1, 0.2, 0.3]]
        feature_type = "array<double>"
    elif kind == "binary":
        good = [bytearray(_png(p)) for p in pixels]
        bad = [None, bytearray(b"not a png"), bytearray(_png(np.zeros((3, 3))))]
        feature_type = BinaryType()
    else:
        good = [_image(p) for p in pixels]
        bad = [None, _image(np.zeros((3, 3)))]
        feature_type = StructType([StructField("origin", StringType()),
                                   StructField("height", IntegerType()),
                                   StructField("width", IntegerType()),
                                   StructField("nChannels", IntegerType()),
                                   StructField("mode", IntegerType()),
                                   StructField("data", BinaryType())])
    rows = list(zip(good + bad, labels + [1.0] * len(bad), strict=True))
    if isinstance(feature_type, str):
        return rows, f"features {feature_type}, label double", len(bad)
    schema = StructType([StructField("features", feature_type), StructField("label", DoubleType())])
    return rows, schema, len(bad)


@pytest.fixture(scope="module")
def frames(spark: Any) -> dict[str, tuple[Any, int]]:
    out = {}
    for kind in KINDS:
        rows, schema, bad = _rows(kind)
        out[kind] = (spark.createDataFrame(rows, schema).cache(), bad)
    return out


@pytest.fixture(scope="module")
def model(frames: dict[str, tuple[Any, int]]) -> SparkNetModel:
    return SparkNetEstimator(**PARAMS, handleInvalid="skip").fit(frames["array"][0])


def _one_line(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message and "Traceback" not in message, message[:2000]
    return message


@pytest.mark.parametrize(("kind", "mode"), _cases(KINDS))
def test_fit(frames: dict[str, tuple[Any, int]], kind: str, mode: str) -> None:
    df, bad = frames[kind]
    estimator = SparkNetEstimator(**PARAMS, handleInvalid=mode)
    if mode == "error":
        with pytest.raises(DataError) as failure:
            estimator.fit(df)
        assert "handleInvalid='skip'" in _one_line(failure.value)
        return
    estimator.fit(df)
    summary = estimator.last_summary
    assert summary is not None
    assert sum(summary.skipped.values()) == bad and sum(summary.shard_sizes) == GOOD


@pytest.mark.parametrize(("kind", "mode"), _cases(KINDS))
def test_transform(frames: dict[str, tuple[Any, int]], model: SparkNetModel, kind: str,
                   mode: str) -> None:
    df, bad = frames[kind]
    stage = model.copy({model.handleInvalid: mode})  # type: ignore[attr-defined]
    if mode == "error":
        with pytest.raises(Exception) as failure:
            stage.transform(df).collect()
        assert "sparknet DataError" in _one_line(failure.value)
        return
    rows = stage.transform(df).select("prediction", "probability").collect()
    unscored = [r for r in rows if r.prediction is None]
    assert all(r.probability is None for r in unscored)
    if mode == "keep":
        assert (len(rows), len(unscored)) == (GOOD + bad, bad)
    else:
        assert (len(rows), len(unscored)) == (GOOD, 0)


@pytest.mark.parametrize(("kind", "mode"), _cases(("vector", "array")))
def test_udf(frames: dict[str, tuple[Any, int]], model: SparkNetModel, kind: str,
             mode: str) -> None:
    df, bad = frames[kind]
    stage = model.copy({model.handleInvalid: mode})  # type: ignore[attr-defined]
    scored = df.select(stage.udf()("features").alias("p"))
    if mode == "error":
        with pytest.raises(Exception) as failure:
            scored.collect()
        assert "sparknet DataError" in _one_line(failure.value)
        return
    values = [r.p for r in scored.collect()]
    assert sum(v is None for v in values) == bad and len(values) == GOOD + bad
