"""Scoring beyond transform: predict on the driver, the model as a UDF for withColumn and SQL,
and a model that stays picklable after transform."""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle
import numpy as np
import pytest

from sparknet.errors import ConfigError
from sparknet.ml import SparkNetEstimator, SparkNetModel
from sparknet_testing.tabular import frame, standardized

pytestmark = pytest.mark.spark

PARAMS = {"network": "sparknet_testing.nets:mlp", "inputShape": [4], "numWorkers": 2,
          "tau": 10, "batchSize": 16, "rounds": 2, "learningRate": 0.1, "progress": "off"}


@pytest.fixture(scope="module")
def iris(spark: Any) -> Any:
    x, y = standardized("iris")
    return frame(spark, x, y).cache()


@pytest.fixture(scope="module")
def classifier(iris: Any) -> SparkNetModel:
    return SparkNetEstimator(networkArgs='{"inputs": 4, "outputs": 3}', **PARAMS).fit(iris)


@pytest.fixture(scope="module")
def regressor(iris: Any) -> SparkNetModel:
    return SparkNetEstimator(networkArgs='{"inputs": 4, "outputs": 1}', objective="mse",
                             **PARAMS).fit(iris)


def test_predict_on_the_driver_equals_transform(iris: Any, classifier: SparkNetModel) -> None:
    rows = classifier.transform(iris).limit(20).collect()
    for row in rows:
        assert classifier.predict(row.features) == row.prediction
        np.testing.assert_allclose(classifier.predictProbability(row.features).toArray(),
                                   row.probability.toArray(), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(classifier.predictRaw(row.features).toArray(),
                                   row.rawPrediction.toArray(), rtol=1e-6, atol=1e-6)
    assert classifier.predict(list(rows[0].features.toArray())) == rows[0].prediction


def test_predict_of_a_regressor(iris: Any, regressor: SparkNetModel) -> None:
    row = regressor.transform(iris).first()
    assert regressor.predict(row.features) == pytest.approx(row.prediction, rel=1e-6)
    with pytest.raises(ConfigError, match=r"predictProbability needs a classifier.*'mse'"):
        regressor.predictProbability(row.features)


def test_the_udf_in_with_column_and_in_sql(spark: Any, iris: Any,
                                           classifier: SparkNetModel) -> None:
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    expected = classifier.transform(iris).select("prediction", "probability").collect()
    arrays = iris.withColumn("x", vector_to_array("features"))
    scored = arrays.withColumn("p", classifier.udf()(F.col("x")))
    scored = scored.withColumn("prob", classifier.udf("probability")(F.col("x")))
    got = scored.select("p", "prob").collect()
    assert [r.p for r in got] == [r.prediction for r in expected]
    np.testing.assert_allclose([r.prob for r in got],
                               [r.probability.toArray() for r in expected], rtol=1e-6)

    spark.udf.register("iris_class", classifier.udf())
    arrays.createOrReplaceTempView("iris_rows")
    sql = spark.sql("SELECT iris_class(x) AS p FROM iris_rows").collect()
    assert [r.p for r in sql] == [r.prediction for r in expected]

    # ML Vector columns directly, dense and sparse, in withColumn and in SQL.
    on_vectors = iris.select(classifier.udf()("features").alias("p")).collect()
    assert [r.p for r in on_vectors] == [r.prediction for r in expected]
    iris.createOrReplaceTempView("iris_vectors")
    sql = spark.sql("SELECT iris_class(features) AS p FROM iris_vectors").collect()
    assert [r.p for r in sql] == [r.prediction for r in expected]
    from pyspark.ml.linalg import Vectors

    sparse = spark.createDataFrame([(Vectors.sparse(4, [0, 2], [1.5, -0.5]),)], ["features"])
    dense = [1.5, 0.0, -0.5, 0.0]
    assert sparse.select(classifier.udf()("features")).first()[0] == classifier.predict(dense)
    with pytest.raises(ConfigError, match=r"udf\(output='probability'\) is not available"):
        SparkNetModel.udf(_regressor_like(classifier), "probability")


def _regressor_like(model: SparkNetModel) -> SparkNetModel:
    import dataclasses

    saved = dataclasses.replace(model.saved_network, objective="mse")
    return SparkNetModel._from_saved(saved, inputShape=[4])


def test_the_model_stays_picklable_after_transform(iris: Any,
                                                   classifier: SparkNetModel) -> None:
    from pyspark.sql import functions as F

    classifier.transform(iris).count()  # makes a broadcast of the weights
    copy = pickle.loads(cloudpickle.dumps(classifier))
    assert copy.predict(iris.first().features) == classifier.predict(iris.first().features)

    # A UDF closing over the model itself (as users write them) runs on the executors.
    first_output = F.udf(lambda values: float(classifier.predictRaw(values)[0]), "double")

    from pyspark.ml.functions import vector_to_array

    got = iris.select(first_output(vector_to_array("features")).alias("z")).first().z
    assert got == pytest.approx(classifier.predictRaw(iris.first().features)[0], rel=1e-5)


def test_rows_of_the_wrong_size_fail_or_get_nulls(spark: Any, classifier: SparkNetModel) -> None:
    from pyspark.errors import SparkRuntimeException

    rows = [([0.1, 0.2, 0.3, 0.4],), ([0.1, 0.2, 0.3],), ([0.0, 0.0, 0.0, 0.0],)]
    ragged = spark.createDataFrame(rows, "features array<double>")
    with pytest.raises(SparkRuntimeException) as failure:
        classifier.transform(ragged).collect()
    message = str(failure.value)
    assert "\n" not in message and "Traceback" not in message  # one line, no worker traceback
    assert "sparknet DataError: cannot score a row whose features have 3 values, not the 4 " \
        "of inputShape [4]" in message
    keeping = classifier.copy({classifier.handleInvalid: "keep"})  # type: ignore[attr-defined]
    scored = keeping.transform(ragged).collect()
    assert [r.prediction is None for r in scored] == [False, True, False]
    assert scored[0].prediction == classifier.predict(rows[0][0])
