"""Runs sparknet as a Spark Connect client would, writing what it got to files.

``python -m sparknet_testing.connect_client TASK sc://HOST:PORT OUT_DIR [DATA]``

A Connect session switches PySpark into Connect mode for the whole process, so tests run this
in a child process and compare its files with a classic session's results in their own.
``run_task`` also runs on a classic session, so both sides execute the same code:

- ``train``: ``sparknet.train`` on ``from_arrays`` shards, two configurations (K = 2; K = 3
  with a tree sum, int8 updates and averaged momentum), and a checkpoint-and-resume run;
- ``ml``: ``SparkNetEstimator.fit`` on a Parquet file, ``transform``, save and load, and a
  ``Pipeline`` with ``StringIndexer`` saved and loaded;
- ``fit-user`` / ``score-user`` (DATA, then the folder of the user's network module): one
  process fits the user's own network and saves a model and a PipelineModel, a fresh one
  trusts the factory, loads both and scores (the module reaches the server's executors from
  the client, as it does at fit).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
TRAIN_CONFIGS = {
    "k2": TrainConfig(model="lenet", seed=5, checkpoint_every=0,
                      engine=EngineConfig(num_workers=2, tau=5, batch_size=16, rounds=2,
                                          eval_every=1),
                      optimizer=OptimizerConfig(lr=0.02), outer=OuterConfig(name="nesterov")),
    "k3": TrainConfig(model="lenet", seed=5, checkpoint_every=0,
                      engine=EngineConfig(num_workers=3, tau=5, batch_size=16, rounds=2,
                                          eval_every=1, tree_fan_in=2),
                      optimizer=OptimizerConfig(lr=0.02, momentum_policy="average"),
                      outer=OuterConfig(name="weighted", compression="int8")),
}
ESTIMATOR_PARAMS: dict[str, Any] = {"inputShape": [1, 28, 28], "numWorkers": 2, "tau": 3,
                                    "batchSize": 16, "rounds": 2, "seed": 3,
                                    "learningRate": 0.02}


def train_task(spark: Any, out: Path) -> None:
    from sparknet.data import fashion_mnist
    from sparknet.data.shards import InputSpec
    from sparknet.data.sources import from_arrays
    from sparknet.engine.trainer import train

    train_split = fashion_mnist.load_split("train", FASHION_DIR)
    test_split = fashion_mnist.load_split("test", FASHION_DIR)
    arrays = {"train": (train_split.images[:1500], train_split.labels[:1500]),
              "test": (test_split.images[:400], test_split.labels[:400])}
    spec = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)
    weights, accuracy = {}, {}
    for name, config in TRAIN_CONFIGS.items():
        data = from_arrays(spark, spec=spec, num_workers=config.engine.num_workers,
                           seed=config.seed, train=arrays["train"], test=arrays["test"])
        try:
            result = train(data, config=config, progress=False)
            half = TrainConfig.from_dict({**config.to_dict(), "checkpoint_every": 1,
                                          "engine": {**config.to_dict()["engine"],
                                                     "rounds": 1}})
            train(data, config=half, run_dir=out / f"run-{name}", progress=False)
            resumed = train(data, config=TrainConfig.from_dict(
                {**half.to_dict(), "engine": {**half.to_dict()["engine"], "rounds": 2}}),
                run_dir=out / f"run-{name}", resume=True, progress=False)
        finally:
            data.release()
        weights[name], weights[f"{name}_resumed"] = result.floats, resumed.floats
        accuracy[name] = [r["test_accuracy"] for r in result.metrics]
    np.savez(out / "train.npz", **weights)  # type: ignore[arg-type]
    (out / "train.json").write_text(json.dumps(accuracy))


def ml_task(spark: Any, out: Path, parquet: Path) -> None:
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.feature import StringIndexer

    from sparknet.ml import SparkNetEstimator, SparkNetModel

    df = spark.read.parquet(str(parquet))
    estimator = SparkNetEstimator(**ESTIMATOR_PARAMS)
    model = estimator.fit(df)
    scored = _probabilities(model.transform(df))
    model.write().overwrite().save(str(out / "model"))
    reloaded = _probabilities(SparkNetModel.load(str(out / "model")).transform(df))

    indexer = StringIndexer(inputCol="kind", outputCol="label", stringOrderType="alphabetAsc")
    pipeline = Pipeline(stages=[indexer, SparkNetEstimator(**ESTIMATOR_PARAMS)])
    fitted = pipeline.fit(df.drop("label"))
    fitted.write().overwrite().save(str(out / "pipeline"))
    piped = _probabilities(PipelineModel.load(str(out / "pipeline")).transform(df.drop("label")))
    stage = fitted.stages[-1]
    assert isinstance(stage, SparkNetModel)
    np.savez(out / "ml.npz", weights=model.saved_network.floats, scored=scored,
             reloaded=reloaded, pipeline=stage.saved_network.floats, piped=piped)


USER_MODULE = "sparknet_user_nets_connect"
USER_FACTORY = f"{USER_MODULE}:mlp"
USER_MODULE_SOURCE = """
from torch import nn

def mlp(hidden=16):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))
"""


def fit_user_task(spark: Any, out: Path, parquet: Path) -> None:
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import StringIndexer

    from sparknet.ml import SparkNetEstimator

    df = spark.read.parquet(str(parquet))
    params = {**ESTIMATOR_PARAMS, "network": USER_FACTORY, "networkArgs": {"hidden": 16}}
    model = SparkNetEstimator(**params).fit(df)
    model.write().overwrite().save(str(out / "model"))
    indexer = StringIndexer(inputCol="kind", outputCol="label", stringOrderType="alphabetAsc")
    fitted = Pipeline(stages=[indexer, SparkNetEstimator(**params)]).fit(df.drop("label"))
    fitted.write().overwrite().save(str(out / "pipeline"))
    np.savez(out / "fit-user.npz", scored=_probabilities(model.transform(df)),
             piped=_probabilities(fitted.transform(df.drop("label"))))


def score_user_task(spark: Any, out: Path, parquet: Path) -> None:
    from pyspark.ml import PipelineModel

    from sparknet.errors import ConfigError
    from sparknet.ml import SparkNetModel

    try:
        SparkNetModel.load(str(out / "model"))
        refusal = ""
    except ConfigError as exc:
        refusal = str(exc)
    model = SparkNetModel.load(str(out / "model"), trust=[USER_FACTORY])
    pipeline = PipelineModel.load(str(out / "pipeline"))  # the factory is trusted above
    df = spark.read.parquet(str(parquet))
    np.savez(out / "score-user.npz", scored=_probabilities(model.transform(df)),
             piped=_probabilities(pipeline.transform(df.drop("label"))))
    (out / "refusal.txt").write_text(refusal)


def _probabilities(frame: Any) -> np.ndarray:
    rows = frame.orderBy("id").select("probability").collect()
    return np.stack([row.probability.toArray() for row in rows])


def write_parquet(path: Path, rows: int = 600) -> Path:
    """Fashion-MNIST rows as one Parquet file: id, features (array<float>), label, kind."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sparknet.data import fashion_mnist

    split = fashion_mnist.load_split("train", FASHION_DIR)
    pixels = split.images[:rows].reshape(rows, -1).astype(np.float32) / np.float32(255)
    labels = split.labels[:rows]
    table = pa.table({
        "id": pa.array(np.arange(rows, dtype=np.int64)),
        "features": pa.array(list(pixels), pa.list_(pa.float32())),
        "label": pa.array(labels.astype(np.float64)),
        "kind": pa.array([f"class-{int(y)}" for y in labels]),
    })
    pq.write_table(table, path)
    return path


def run_task(task: str, spark: Any, out: Path, data: Path | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if task == "train":
        train_task(spark, out)
    elif task == "ml":
        assert data is not None
        ml_task(spark, out, data)
    elif task in ("fit-user", "score-user"):
        assert data is not None
        (fit_user_task if task == "fit-user" else score_user_task)(spark, out, data)
    else:
        raise SystemExit(f"unknown task {task!r}: use train, ml, fit-user or score-user")


def run_client(task: str, url: str, out: Path, *extra: str) -> None:
    """Runs this module as a Connect client in a child process; raises on failure."""
    import subprocess

    done = subprocess.run([sys.executable, "-m", "sparknet_testing.connect_client", task, url,
                           str(out), *extra], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"connect client {task} failed:\n{done.stderr[-4000:]}")


def main(argv: list[str]) -> int:
    from sparknet.engine.spark_session import remote_session

    task, url, out = argv[0], argv[1], Path(argv[2])
    if len(argv) > 4:  # the folder of the user's own modules: the driver's sys.path only
        sys.path.insert(0, argv[4])
    spark = remote_session(url, app_name=f"sparknet-connect-{task}")
    try:
        run_task(task, spark, out, Path(argv[3]) if len(argv) > 3 else None)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
