"""``SparkNetEstimator`` and ``SparkNetModel`` with a real MLflow tracking server.

Iris on a small MLP: a fit logs to the server its Params name (every Param, a metric per
round, the files, both models); the ONNX model scores like ``transform`` without Spark; the
Spark model loads in a fresh process and scores like the original; autolog, plain and around
CrossValidator, records our Params without errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet.ml.estimator import SparkNetEstimator, stage_params
from sparknet.ml.params import fit_config_of
from sparknet.tracking import ROUND_METRICS, config_params, param_text
from sparknet_testing.tabular import frame, standardized

pytestmark = [pytest.mark.spark, pytest.mark.mlflow]

NET = {"network": "sparknet_testing.nets:mlp", "networkArgs": '{"inputs": 4, "outputs": 3}',
       "inputShape": [4], "numWorkers": 2, "tau": 2, "batchSize": 8, "progress": "off"}


@pytest.fixture(scope="module")
def iris(spark: Any) -> tuple[Any, np.ndarray]:
    x, y = standardized("iris")
    return frame(spark, x, y).cache(), x


@pytest.fixture()
def tracking_uri(mlflow_server: Any) -> Iterator[str]:
    """The fluent API pointed at the server for one test, then put back."""
    import mlflow

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_server.url)
    yield mlflow_server.url
    mlflow.set_tracking_uri(before)


def only_run(uri: str, experiment: str) -> Any:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1
    return runs[0]


@pytest.fixture(scope="module")
def fitted(iris: tuple[Any, np.ndarray], mlflow_server: Any) -> tuple[Any, Any, Any]:
    estimator = SparkNetEstimator(**NET, rounds=3, evalEvery=1, validationIndicatorCol=None,
                                  mlflowTrackingUri=mlflow_server.url,
                                  mlflowExperiment="estimator")
    model = estimator.fit(iris[0], validation=iris[0].limit(40))
    return estimator, model, only_run(mlflow_server.url, "estimator")


@pytest.mark.slow
def test_a_fit_logs_every_param_and_round(fitted: tuple[Any, Any, Any],
                                          mlflow_server: Any) -> None:
    from mlflow.tracking import MlflowClient

    estimator, model, run = fitted
    assert run.info.status == "FINISHED"
    expected = {**config_params(estimator.train_config()),
                **stage_params(estimator.scoring_config(), fit_config_of(estimator))}
    assert run.data.params == {k: param_text(v) for k, v in expected.items()}
    assert run.data.tags["sparknet.K"] == "2" and run.data.tags["spark.master"] == "local[2,4]"
    assert len(run.data.tags["sparknet.data_fingerprint"]) == 32
    client = MlflowClient(tracking_uri=mlflow_server.url)
    rounds = model.summary.rounds if hasattr(model.summary, "rounds") else None
    # A fit names its evaluations val_* (the CLI's test split: test_*).
    for key in (*[k for k in ROUND_METRICS if not k.startswith("test_")], "samples_per_second"):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        assert steps == [1, 2, 3], (key, rounds)
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "metrics.jsonl", "metrics.png", "spark-model", "onnx-model"} <= names


@pytest.mark.slow
def test_the_onnx_model_scores_like_transform_without_spark(
        fitted: tuple[Any, Any, Any], iris: tuple[Any, np.ndarray], tracking_uri: str) -> None:
    import mlflow.pyfunc

    _, model, run = fitted
    served = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/onnx-model")
    x = iris[1]
    scored = served.predict({"features": x})
    expected = np.array([row.probability.toArray() for row in
                         model.transform(iris[0]).select("probability").collect()])
    np.testing.assert_allclose(scored["probability"], expected, rtol=1e-5, atol=1e-6)


LOAD_AND_SCORE = """
import json, sys
import mlflow, mlflow.spark
from pyspark.ml.functions import array_to_vector, vector_to_array
from sparknet.models import trust_factory
trust_factory("sparknet_testing.nets:mlp")  # this process names the network's code itself
from sparknet.engine.spark_session import get_or_create_session
spark = get_or_create_session("local[1]", app_name="load-mlflow-model")
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.spark.load_model(sys.argv[2])
rows = spark.read.parquet(sys.argv[3]).withColumn("features", array_to_vector("features"))
out = model.transform(rows).select("id", vector_to_array("probability").alias("p")).collect()
json.dump({r["id"]: r["p"] for r in out}, open(sys.argv[4], "w"))
"""


def assert_fresh_process_scores_like(model: Any, model_uri: str, tracking_uri: str,
                                    rows: Any, folder: Path) -> None:
    """``mlflow.spark.load_model(model_uri)`` in another process scores ``rows`` as ``model``
    does here."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    rows = rows.withColumn("id", F.monotonically_increasing_id())
    rows.withColumn("features", vector_to_array("features")).write.parquet(str(folder / "rows"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run([sys.executable, "-c", LOAD_AND_SCORE, tracking_uri, model_uri,
                           str(folder / "rows"), str(folder / "scores.json")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads((folder / "scores.json").read_text())
    here = model.transform(rows).select("id", vector_to_array("probability").alias("p"))
    expected = {str(r["id"]): r["p"] for r in here.collect()}
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(loaded[key], value, rtol=1e-6)


@pytest.mark.slow
def test_the_spark_model_loads_in_a_fresh_process(fitted: tuple[Any, Any, Any],
                                                  iris: tuple[Any, np.ndarray],
                                                  mlflow_server: Any, tmp_path: Path) -> None:
    _, model, run = fitted
    assert_fresh_process_scores_like(model, f"runs:/{run.info.run_id}/spark-model",
                                     mlflow_server.url, iris[0], tmp_path)


@pytest.mark.slow
def test_a_pipeline_model_logged_with_mlflow_spark_loads_in_a_fresh_process(
        iris: tuple[Any, np.ndarray], tracking_uri: str, tmp_path: Path) -> None:
    """As any Spark ML model: ``mlflow.spark.log_model`` of a fitted Pipeline holding the
    stage, loaded with ``mlflow.spark.load_model`` in another process."""
    import mlflow
    import mlflow.spark
    from pyspark.ml import Pipeline

    fitted = Pipeline(stages=[SparkNetEstimator(**NET, rounds=2)]).fit(iris[0])
    mlflow.set_experiment("pipeline")
    with mlflow.start_run() as run:
        mlflow.spark.log_model(fitted, "pipeline", dfs_tmpdir=(tmp_path / "dfs").as_uri())
    assert_fresh_process_scores_like(fitted, f"runs:/{run.info.run_id}/pipeline",
                                     tracking_uri, iris[0], tmp_path)


@pytest.mark.slow
def test_autolog_records_our_params_plain_and_in_cross_validator(
        iris: tuple[Any, np.ndarray], tracking_uri: str) -> None:
    import mlflow
    import mlflow.pyspark.ml
    from mlflow.tracking import MlflowClient
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    client = MlflowClient(tracking_uri=tracking_uri)
    mlflow.set_experiment("autolog")
    mlflow.pyspark.ml.autolog(log_models=False, silent=True)
    try:
        estimator = SparkNetEstimator(**NET, rounds=2)
        estimator.fit(iris[0])
        plain = mlflow.last_active_run()
        assert plain is not None
        params = client.get_run(plain.info.run_id).data.params
        # autolog's camelCase Params and our settings agree (no garbled or missing values)
        for name, value in (("tau", "2"), ("inputShape", "[4]"), ("engine.tau", "2"),
                            ("network", NET["network"]), ("networkArgs", NET["networkArgs"]),
                            ("labels", "None"), ("rounds", "2")):
            assert params[name] == value, name
        steps = client.get_metric_history(plain.info.run_id, "train_loss")
        assert sorted(m.step for m in steps) == [1, 2]

        grid = ParamGridBuilder().addGrid(estimator.tau, [1, 2]).build()
        search = CrossValidator(estimator=estimator, estimatorParamMaps=grid, numFolds=2,
                                evaluator=MulticlassClassificationEvaluator(), parallelism=1)
        search.fit(iris[0])
        parent = mlflow.last_active_run()
        assert parent is not None and parent.info.status == "FINISHED"
        # The folds' fits run in CrossValidator's thread pool, where MLflow has no active
        # run (its run stack is per thread): they log nothing. The refit of the best Params
        # runs in this thread and logs its settings and rounds into the search's run.
        found = client.get_run(parent.info.run_id)
        assert found.data.params["engine.tau"] in {"1", "2"}
        assert found.data.params["estimator"].startswith("SparkNetEstimator")
        steps = client.get_metric_history(parent.info.run_id, "train_loss")
        assert sorted(m.step for m in steps) == [1, 2]
    finally:
        mlflow.pyspark.ml.autolog(disable=True)
