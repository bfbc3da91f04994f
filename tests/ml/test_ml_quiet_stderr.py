"""A normal session of fits leaves no Python traceback on stderr (issue: BrokenPipeError
tracebacks from PySpark's daemon used to appear after some fits)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SESSION = textwrap.dedent("""
    import pandas as pd
    from pyspark.ml import Pipeline
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.feature import StringIndexer, VectorAssembler
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
    from pyspark.sql import SparkSession
    from sklearn import datasets

    from sparknet.ml import SparkNetEstimator

    spark = SparkSession.builder.master("local[2]").getOrCreate()
    iris = datasets.load_iris(as_frame=True)
    pdf = iris.frame.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    pdf["species"] = iris.target_names[pdf.pop("target")]
    df = spark.createDataFrame(pdf)
    inputs = [c for c in df.columns if c != "species"]
    net = SparkNetEstimator(network="sparknet_testing.nets:mlp", inputShape=[4],
                            networkArgs='{"inputs": 4, "outputs": 3}', numWorkers=2, tau=10,
                            batchSize=16, rounds=3)
    pipeline = Pipeline(stages=[StringIndexer(inputCol="species", outputCol="label"),
                                VectorAssembler(inputCols=inputs, outputCol="features"), net])
    model = pipeline.fit(df)
    model.transform(df).select("prediction", "predictedLabel").show(3)
    model.transform(df).limit(2).collect()
    grid = ParamGridBuilder().addGrid(net.learningRate, [0.05, 0.1]).build()
    tuned = CrossValidator(estimator=pipeline, estimatorParamMaps=grid, numFolds=2,
                           evaluator=MulticlassClassificationEvaluator()).fit(df)
    print("best", tuned.avgMetrics)
    spark.stop()
""")


def test_fits_leave_no_traceback_on_stderr(tmp_path: object) -> None:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    run = subprocess.run([sys.executable, "-c", SESSION], capture_output=True, text=True,
                         timeout=900, env=env, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "best" in run.stdout
    for marker in ("Traceback", "BrokenPipeError", "ERROR"):
        assert marker not in run.stderr, run.stderr[-3000:]
