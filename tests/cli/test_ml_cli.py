"""``sparknet train --parquet`` and ``sparknet export-onnx`` end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from sparknet.cli.main import main

pytestmark = pytest.mark.spark


def test_train_on_parquet_then_export_onnx(spark: Any, fashion: dict, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from pyspark.ml.functions import array_to_vector

    images, labels = fashion["train"].images[:600], fashion["train"].labels[:600]
    frame = pd.DataFrame({"pixels": list(images.reshape(600, -1).astype(np.float32) / 255),
                          "y": labels.astype(np.int32)})
    parquet = tmp_path / "train.parquet"
    (spark.createDataFrame(frame).withColumn("pixels", array_to_vector("pixels"))
     .write.parquet(str(parquet)))
    run_dir = tmp_path / "run"
    code = main(["train", "--parquet", str(parquet), "--features", "pixels", "--label", "y",
                 "--input-shape", "1,28,28", "--num-workers", "2", "--tau", "3",
                 "--batch-size", "16", "--rounds", "2", "--master", "local[2]",
                 "--output", str(run_dir), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "parquet: 600 rows in 2 shards" in out and "done: 2 rounds" in out
    assert (run_dir / "final" / "model.safetensors").is_file()

    onnx_path = tmp_path / "run.onnx"
    assert main(["export-onnx", str(run_dir), str(onnx_path), "--input-scale", "1"]) == 0
    x = (images[:5].astype(np.float32) / 255)
    probability, _ = ort.InferenceSession(str(onnx_path)).run(None, {"features": x})
    assert probability.shape == (5, 10)
    np.testing.assert_allclose(probability.sum(1), 1.0, atol=1e-5)


def test_parquet_errors_are_one_line(spark: Any, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--parquet", str(tmp_path / "missing"), "--master", "local[2]",
                 "--no-progress"])
    assert code == 2
    assert "--parquet" in capsys.readouterr().err
    parquet = tmp_path / "bad.parquet"
    rows = [("a", 1)] * 200  # enough rows for two workers' batches: the column type fails
    spark.createDataFrame(rows, "features string, label int").write.parquet(str(parquet))
    code = main(["train", "--parquet", str(parquet), "--master", "local[2]", "--no-progress",
                 "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "feature column 'features' has type string" in err


def test_export_onnx_of_a_saved_model_needs_a_model_folder(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    assert main(["export-onnx", str(tmp_path), str(tmp_path / "x.onnx")]) == 2
    assert "neither a saved SparkNetModel" in capsys.readouterr().err


def test_train_a_regression_objective_on_parquet(spark: Any, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from sparknet_testing.tabular import standardized

    x, y = standardized("diabetes")
    frame = pd.DataFrame({"features": list(x), "target": (y - y.mean()) / y.std()})
    parquet = tmp_path / "diabetes.parquet"
    spark.createDataFrame(frame).write.parquet(str(parquet))
    run_dir = tmp_path / "run"
    code = main(["train", "--parquet", str(parquet), "--label", "target", "--input-shape", "10",
                 "--model", "sparknet_testing.nets:mlp",
                 "--model-args", '{"inputs": 10, "outputs": 1}', "--objective", "huber",
                 "--num-workers", "2", "--tau", "20", "--batch-size", "16", "--rounds", "3",
                 "--lr", "0.01", "--master", "local[2]", "--output", str(run_dir),
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_accuracy"] for r in records] == [None, None, None]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["objective"] == "huber" and config["model_args"] is not None

    code = main(["train", "--parquet", str(parquet), "--label", "target", "--input-shape", "10",
                 "--model", "sparknet_testing.nets:mlp", "--objective", "binary",
                 "--model-args", '{"inputs": 10, "outputs": 2}',
                 "--master", "local[2]", "--no-progress", "--output", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert code == 2 and "objective 'binary' needs one logit" in err and len(
        err.strip().splitlines()) == 1
