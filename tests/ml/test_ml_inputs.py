"""Every supported feature column becomes the same shards as the single-process reference."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sparknet.data.shards import InputSpec
from sparknet.data.sources import dataframe_data
from sparknet.errors import DataError
from sparknet.ml import SparkNetEstimator

pytestmark = pytest.mark.spark

ROWS = 400
SHAPE = (1, 28, 28)


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image, "L").save(buf, "PNG")
    return buf.getvalue()


def _shard_rows(df: Any, *, scale: float, **options: Any) -> tuple[np.ndarray, np.ndarray, Any]:
    spec = InputSpec(shape=SHAPE, num_classes=10, scale=scale)
    data, summary = dataframe_data(df, features="features", label="label", spec=spec,
                                   num_workers=2, batch_size=16, **options)
    try:
        assert data.train.cached is not None
        shards = data.train.cached.collect()
    finally:
        data.release()
    assert [len(s) for s in shards] == list(summary.shard_sizes)
    features = np.concatenate([s.features for s in shards])
    labels = np.concatenate([s.labels for s in shards])
    return features, labels, summary


def _same_rows(features: np.ndarray, labels: np.ndarray, ref_features: np.ndarray,
               ref_labels: np.ndarray) -> None:
    flat, ref = features.reshape(len(features), -1), ref_features.reshape(len(ref_features), -1)
    order, ref_order = np.lexsort(flat.T[::-1]), np.lexsort(ref.T[::-1])
    np.testing.assert_array_equal(flat[order], ref[ref_order])
    np.testing.assert_array_equal(labels[order], ref_labels[ref_order])


@pytest.mark.parametrize("kind", ["dense", "sparse", "array<float>", "array<double>"])
def test_numeric_columns(spark: Any, fashion: dict, kind: str) -> None:
    from pyspark.ml.linalg import SparseVector, Vectors

    images, labels = fashion["train"].images[:ROWS], fashion["train"].labels[:ROWS]
    scaled = images.reshape(ROWS, -1).astype(np.float64) / 255
    if kind in ("dense", "sparse"):
        make = (lambda v: Vectors.dense(v)) if kind == "dense" else (
            lambda v: SparseVector(784, np.flatnonzero(v), v[v != 0]))
        df = spark.createDataFrame([(make(v), int(y)) for v, y in zip(scaled, labels,
                                                                     strict=True)],
                                   ["features", "label"])  # integer labels
    else:
        element = "float" if kind == "array<float>" else "double"
        df = spark.createDataFrame([(v.tolist(), float(y)) for v, y in zip(scaled, labels,
                                                                          strict=True)],
                                   f"features array<{element}>, label double")
    features, got_labels, _ = _shard_rows(df, scale=1.0)
    assert features.dtype == np.float32 and features.shape[1:] == SHAPE
    _same_rows(features, got_labels, scaled.astype(np.float32), labels)


def test_png_bytes_column_and_undecodable_rows(spark: Any, fashion: dict) -> None:
    images, labels = fashion["train"].images[:ROWS], fashion["train"].labels[:ROWS]
    rows = [(_png(img[0]), int(y)) for img, y in zip(images, labels, strict=True)]
    df = spark.createDataFrame(rows, "features binary, label int")
    features, got_labels, _ = _shard_rows(df, scale=1 / 255)
    assert features.dtype == np.uint8
    _same_rows(features, got_labels, images, labels)

    broken = spark.createDataFrame(rows + [(b"\x89PNG broken", 1), (b"GIF89a??", 2)],
                                   "features binary, label int")
    with pytest.raises(DataError, match=r"^2 rows of column 'features' are not decodable .*"
                                        r"row \d+ starts with .*invalidImages='skip'"):
        _shard_rows(broken, scale=1 / 255)
    features, got_labels, summary = _shard_rows(broken, scale=1 / 255, invalid_images="skip")
    assert summary.skipped_images == 2 and "starts with" in str(summary.skipped_example)
    _same_rows(features, got_labels, images, labels)


@pytest.mark.slow
def test_image_data_source_on_png_files(spark: Any, fashion: dict, tmp_path: Path) -> None:
    from pyspark.sql import functions as F

    count = 200
    images, labels = fashion["test"].images[:count], fashion["test"].labels[:count]
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(img[0], "L").save(tmp_path / f"{i:04d}_class{y}.png")
    df = (spark.read.format("image").load(str(tmp_path))
          .withColumnRenamed("image", "features")
          .withColumn("label", F.regexp_extract("features.origin", r"class(\d)\.png$", 1)
                      .cast("int")))
    assert df.schema["features"].dataType.simpleString().startswith("struct<origin")
    features, got_labels, _ = _shard_rows(df, scale=1 / 255)
    _same_rows(features, got_labels, images, labels)

    # A file the image source cannot decode: an error naming it, or skipped when asked.
    (tmp_path / "9999_class1.png").write_bytes(b"this is not a png")
    df = (spark.read.format("image").load(str(tmp_path)).withColumnRenamed("image", "features")
          .withColumn("label", F.lit(1)))
    with pytest.raises(DataError, match=r"^1 rows .*9999_class1\.png"):
        _shard_rows(df, scale=1 / 255)
    estimator = SparkNetEstimator(inputShape=list(SHAPE), numWorkers=2, tau=2, batchSize=16,
                                  rounds=1, invalidImages="skip")
    model = estimator.fit(df)
    assert estimator.last_summary is not None and estimator.last_summary.skipped_images == 1
    scored = model.transform(df).select("features.origin", "prediction").collect()
    unscorable = [r for r in scored if r.prediction is None]
    assert len(scored) == count + 1 and [r.origin.rsplit("/", 1)[1] for r in unscorable] == [
        "9999_class1.png"]
