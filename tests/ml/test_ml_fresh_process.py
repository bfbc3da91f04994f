"""Train in one process, score in another: a model (and a PipelineModel) fitted on the user's
own network module loads and transforms in a fresh Python process once that process trusts the
factory; without trust it refuses in one line naming an API that exists. The user's module is
only on the driver's ``sys.path``: the executors get it from the transform, as from fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet.ml import SparkNetEstimator
from sparknet_testing.tabular import frame, standardized

pytestmark = pytest.mark.spark

MODULE = "sparknet_user_nets_fresh"
FACTORY = f"{MODULE}:mlp"

USER_MODULE = """
from torch import nn

def mlp(hidden=8):
    return nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 3))
"""

LOAD_AND_SCORE = """
import json, sys
sys.path.insert(0, sys.argv[1])  # the driver can import the user's module; executors cannot
from pyspark.ml import PipelineModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from sparknet.errors import ConfigError
from sparknet.ml import SparkNetModel
from sparknet.engine.spark_session import get_or_create_session

spark = get_or_create_session("local[1]", app_name="load-in-a-fresh-process")
out = {}
try:
    SparkNetModel.load(sys.argv[2] + "/model")
except ConfigError as exc:
    out["refusal"] = str(exc)
model = SparkNetModel.load(sys.argv[2] + "/model", trust=[sys.argv[3]])
pipeline = PipelineModel.load(sys.argv[2] + "/pipeline")  # trusted above, for this process
rows = spark.read.parquet(sys.argv[2] + "/rows").withColumn("features",
                                                            array_to_vector("features"))
for name, stage in (("model", model), ("pipeline", pipeline)):
    scored = stage.transform(rows).select("id", vector_to_array("probability").alias("p"))
    out[name] = {str(r["id"]): r["p"] for r in scored.collect()}
out["udf"] = [r[0] for r in rows.orderBy("id").select(model.udf("prediction")("features"))
              .collect()]
json.dump(out, open(sys.argv[2] + "/scores.json", "w"))
"""


@pytest.fixture()
def user_module(tmp_path: Path) -> Any:
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / f"{MODULE}.py").write_text(textwrap.dedent(USER_MODULE))
    sys.path.insert(0, str(folder))
    try:
        yield folder
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(MODULE, None)


@pytest.mark.slow
def test_a_saved_model_of_a_user_network_scores_in_a_fresh_process(
        spark: Any, user_module: Path, tmp_path: Path) -> None:
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import SQLTransformer
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    x, y = standardized("iris")
    df = frame(spark, x, y).withColumn("id", F.monotonically_increasing_id()).cache()
    estimator = SparkNetEstimator(network=FACTORY, networkArgs={"hidden": 8}, inputShape=[4],
                                  numWorkers=2, tau=5, batchSize=16, rounds=2, progress="off")
    model = estimator.fit(df)
    pipeline = Pipeline(stages=[SQLTransformer(statement="SELECT * FROM __THIS__"),
                                estimator]).fit(df)
    model.save(str(tmp_path / "model"))
    pipeline.save(str(tmp_path / "pipeline"))
    df.withColumn("features", vector_to_array("features")).write.parquet(str(tmp_path / "rows"))
    done = subprocess.run([sys.executable, "-c", LOAD_AND_SCORE, str(user_module),
                           str(tmp_path), FACTORY], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads((tmp_path / "scores.json").read_text())
    assert "\n" not in out["refusal"]
    assert f"sparknet.models.trust_factory('{FACTORY}')" in out["refusal"]
    assert f"SparkNetModel.load(path, trust=['{FACTORY}'])" in out["refusal"]
    for name, fitted in (("model", model), ("pipeline", pipeline)):
        here = fitted.transform(df).select("id", vector_to_array("probability").alias("p"))
        expected = {str(r["id"]): r["p"] for r in here.collect()}
        assert out[name].keys() == expected.keys()
        for key, value in expected.items():
            np.testing.assert_allclose(out[name][key], value, rtol=1e-6)
    predictions = [r["prediction"] for r in model.transform(df).orderBy("id").collect()]
    assert out["udf"] == predictions


def test_export_onnx_takes_the_user_factory(user_module: Path, tmp_path: Path) -> None:
    from sparknet.flat import FlatLayout, flatten_state
    from sparknet.ml.persistence import WEIGHTS_DIR, SavedNetwork, write_network
    from sparknet.models.registry import resolve_model

    module = resolve_model(FACTORY).build()
    layout = FlatLayout.of(module)
    floats, ints = flatten_state(module, layout)
    write_network(tmp_path / "model" / WEIGHTS_DIR, SavedNetwork(
        network=FACTORY, input_shape=(4,), num_classes=3, input_scale=1.0, layout=layout,
        floats=floats, ints=ints))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (os.environ.get("PYTHONPATH"), str(user_module)) if p)}
    command = [sys.executable, "-m", "sparknet.cli.main", "export-onnx", str(tmp_path / "model"),
               str(tmp_path / "m.onnx")]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode == 2 and "--model sparknet_user_nets_fresh:mlp" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    done = subprocess.run([*command, "--model", FACTORY], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m.onnx").is_file()
