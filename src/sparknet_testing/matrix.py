"""The differential matrix: every path training data can take, against one reference.

A case is (placement, entry point, input kind, objective, rounds: synchronous, or overlapped
eager or decoupled). Each trains the same tiny network (``sparknet_testing.nets:mlp``) for two
rounds on 48 rows; its final weights must equal, bit
for bit, those of the in-process reference (``run_rounds`` over ``InProcessRunner``, no Spark)
on the shards the path should make: ``from_arrays`` shuffles with the seed and splits, every
DataFrame path deals input row g to shard g % K.

``python -m sparknet_testing.matrix sc://HOST:PORT FOLDER`` runs the cases listed in
``FOLDER/cases.json`` on a Spark Connect session (a Connect session switches the whole process
to Connect mode, so tests run this in a child process) and writes ``FOLDER/weights.npz``.
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
from sparknet.data.shards import InputSpec, Shard, split_into_shards

ROWS, WORKERS, BATCH, SHAPE = 48, 2, 8, (1, 4, 4)
NETWORK = "sparknet_testing.nets:mlp"
PLACEMENTS = ("memory", "streamed", "connect")
# objective case -> (objective setting, network outputs, label width: 0 for class indices)
OBJECTIVES = {"multiclass": ("multiclass", 3, 0), "binary": ("binary", 1, 1),
              "multilabel": ("multilabel", 3, 3), "mse1": ("mse", 1, 1),
              "mse3": ("mse", 3, 3), "user_loss": ("sparknet_testing.nets:mse_loss", 2, 2),
              "weighted": ("multiclass", 3, 0)}  # class indices and a weight column
WEIGHTED = "weighted"
FRAME_KINDS = ("array", "vector", "sparse", "png", "image")
ENTRY_KINDS = {"from_arrays": ("pixels", "floats"), "dataframe_data": FRAME_KINDS,
               "estimator": FRAME_KINDS, "cli": ("parquet_array", "parquet_vector")}
PIXEL_KINDS = ("pixels", "png", "image")  # stored as uint8, scaled by 1/255
ROUNDS = ("sync", "eager", "decoupled")  # engine.overlap: "sync" is off


@dataclass(frozen=True)
class Case:
    placement: str
    entry: str
    kind: str
    objective: str
    rounds: str = "sync"

    @property
    def name(self) -> str:
        suffix = "" if self.rounds == "sync" else f"-{self.rounds}"
        return f"{self.placement}-{self.entry}-{self.kind}-{self.objective}{suffix}"

    @property
    def dataset(self) -> str:
        """Cases that read the same Parquet file."""
        return f"{self.kind.removeprefix('parquet_')}-{self.objective}"


def all_cases() -> list[Case]:
    return [Case(placement, entry, kind, objective, rounds) for rounds in ROUNDS
            for placement in PLACEMENTS for entry, kinds in ENTRY_KINDS.items()
            for kind in kinds for objective in OBJECTIVES]


def covering_cases() -> list[Case]:
    """A small set of cases in which every pair of factors that can meet does at least once:
    placement x entry, placement x objective, entry x objective, entry x kind, kind x
    placement, and rounds x each of the others. Greedy: each step takes the case covering the
    most pairs not yet covered (the first such in a fixed order), so the set is the same on
    every run."""
    candidates = all_cases()

    def pairs(case: Case) -> set[tuple[str, str]]:
        return {(case.placement, case.entry), (case.placement, case.objective),
                (case.entry, case.objective), (case.entry, case.kind),
                (case.kind, case.placement), (case.rounds, case.placement),
                (case.rounds, case.entry), (case.rounds, case.kind),
                (case.rounds, case.objective)}

    wanted = set().union(*(pairs(case) for case in candidates))
    chosen: list[Case] = []
    while wanted:
        best = max(candidates, key=lambda case: len(pairs(case) & wanted))
        chosen.append(best)
        wanted -= pairs(best)
    return chosen


# ---------------------------------------------------------------------------------------------
# The data, the settings and the reference


def rows(objective: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 pixels [48, 1, 4, 4] with many zeros, labels for the objective)."""
    rng = np.random.default_rng(11)
    pixels = rng.integers(0, 256, (ROWS, *SHAPE), dtype=np.uint8)
    pixels[rng.random(pixels.shape) < 0.4] = 0  # sparse vectors have something to leave out
    _, outputs, width = OBJECTIVES[objective]
    if width == 0:
        return pixels, rng.integers(0, outputs, ROWS).astype(np.int64)
    if objective in ("binary", "multilabel"):
        return pixels, rng.integers(0, 2, (ROWS, width)).astype(np.float32)
    return pixels, rng.normal(size=(ROWS, width)).astype(np.float32)


def row_weights(objective: str) -> np.ndarray | None:
    """The weight column of the weighted case (zeros included), else None."""
    if objective != WEIGHTED:
        return None
    weights = np.random.default_rng(13).uniform(0, 3, ROWS).astype(np.float32)
    weights[::7] = 0
    return weights


def training_labels(objective: str) -> np.ndarray:
    """The labels as shards store them: packed with the row weights when there are any."""
    from sparknet.data.shards import pack_row_weights

    _, labels = rows(objective)
    weights = row_weights(objective)
    return labels if weights is None else pack_row_weights(labels, weights)


def stored(kind: str, pixels: np.ndarray) -> np.ndarray:
    """The features as shards hold them: pixels, or float32 values in [0, 1]."""
    return pixels if kind in PIXEL_KINDS else pixels.astype(np.float32) / np.float32(255)


def spec_of(case: Case) -> InputSpec:
    name, outputs, width = OBJECTIVES[case.objective]
    return InputSpec(shape=SHAPE, num_classes=outputs, label_width=width,
                     scale=1 / 255 if case.kind in PIXEL_KINDS else 1.0,
                     binary_targets=name in ("binary", "multilabel"),
                     row_weights=case.objective == WEIGHTED)


def rounds_of(case: Case) -> int:
    """Overlapped cases run a third round, the first to start from lagging weights."""
    return 2 if case.rounds == "sync" else 3


def config_of(case: Case) -> TrainConfig:
    name, outputs, _ = OBJECTIVES[case.objective]
    return TrainConfig(model=NETWORK,
                       model_args=json.dumps({"inputs": 16, "hidden": 8, "outputs": outputs}),
                       objective=name, seed=7, checkpoint_every=0,
                       engine=EngineConfig(num_workers=WORKERS, tau=2, batch_size=BATCH,
                                           rounds=rounds_of(case), eval_every=0,
                                           overlap="off" if case.rounds == "sync"
                                           else case.rounds),  # type: ignore[arg-type]
                       # SparkNet's rounds: what overlapped rounds also take
                       optimizer=OptimizerConfig(lr=0.05, momentum_policy="reset"),
                       outer=OuterConfig(name="average"))


def expected_shards(case: Case) -> list[Shard]:
    pixels, labels = rows(case.objective)[0], training_labels(case.objective)
    features = stored(case.kind, pixels)
    if case.entry == "from_arrays":
        return split_into_shards(features, labels, WORKERS, seed=config_of(case).seed)
    return [Shard(features[i::WORKERS], labels[i::WORKERS]) for i in range(WORKERS)]


def reference(case: Case) -> np.ndarray:
    """The in-process run (no Spark) on the shards this case's path should make."""
    from sparknet.engine.loop import LoopOptions, run_rounds
    from sparknet.engine.runner import InProcessRunner
    from sparknet.models.registry import model_of

    config = config_of(case)
    runner = InProcessRunner(expected_shards(case), num_workers=WORKERS, seed=config.seed)
    result = run_rounds(runner, config=config, model=model_of(config), spec=spec_of(case),
                        options=LoopOptions())
    return np.asarray(result.floats)


def write_parquet(spark: Any, folder: Path, case: Case) -> Path:
    """The case's rows as one Parquet file (``features``, ``label``), written by a classic
    session so that vectors keep their ML type."""
    from pyspark.ml.linalg import DenseVector, SparseVector, VectorUDT
    from pyspark.sql.types import (
        ArrayType,
        BinaryType,
        DoubleType,
        FloatType,
        IntegerType,
        StringType,
        StructField,
        StructType,
    )

    path = folder / f"{case.dataset}.parquet"
    if path.exists():
        return path
    pixels, labels = rows(case.objective)
    kind = case.kind.removeprefix("parquet_")
    floats = stored("array", pixels).reshape(ROWS, -1)
    image_type = StructType([StructField("origin", StringType()),
                             StructField("height", IntegerType()),
                             StructField("width", IntegerType()),
                             StructField("nChannels", IntegerType()),
                             StructField("mode", IntegerType()),
                             StructField("data", BinaryType())])
    feature_type, features = {
        "array": (ArrayType(FloatType()), [row.tolist() for row in floats]),
        "vector": (VectorUDT(), [DenseVector(row) for row in floats]),
        "sparse": (VectorUDT(), [SparseVector(row.size, np.flatnonzero(row).tolist(),
                                              row[row != 0].tolist()) for row in floats]),
        "png": (BinaryType(), [_png(image) for image in pixels]),
        "image": (image_type, [(f"row-{i}", SHAPE[1], SHAPE[2], SHAPE[0], 0, image.tobytes())
                               for i, image in enumerate(pixels)]),
    }[kind]
    width = OBJECTIVES[case.objective][2]
    label_type = DoubleType() if width <= 1 else ArrayType(DoubleType())
    label_values = (labels.astype(np.float64).reshape(ROWS).tolist() if width <= 1
                    else labels.astype(np.float64).tolist())
    fields = [StructField("features", feature_type), StructField("label", label_type)]
    columns = [features, label_values]
    weights = row_weights(case.objective)
    if weights is not None:
        fields.append(StructField("weight", DoubleType()))
        columns.append(weights.astype(np.float64).tolist())
    frame = spark.createDataFrame(list(zip(*columns, strict=True)), StructType(fields))
    frame.coalesce(1).write.parquet(str(path))
    return path


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image[0]).save(out, format="PNG")  # lossless, one grey channel
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# Running a case on a session (classic or Connect)


def run_case(spark: Any, case: Case, folder: Path, *, remote: str | None = None) -> np.ndarray:
    """Trains the case on ``spark`` (its placement: ``memory`` or ``streamed`` on a classic
    session, ``connect`` on a Connect one); returns the final weights."""
    streamed = case.placement == "streamed"
    config = config_of(case)
    if case.entry == "from_arrays":
        return _trained(spark, case, streamed)
    parquet = folder / f"{case.dataset}.parquet"
    weight = "weight" if case.objective == WEIGHTED else None
    if case.entry == "dataframe_data":
        from sparknet.data.sources import dataframe_data
        from sparknet.engine.trainer import train

        data, _ = dataframe_data(spark.read.parquet(str(parquet)), features="features",
                                 label="label", spec=spec_of(case), num_workers=WORKERS,
                                 batch_size=BATCH, streamed=streamed, weight=weight)
        try:
            return np.asarray(train(data, config=config, progress=False).floats)
        finally:
            data.release()
    if case.entry == "estimator":
        from sparknet.ml import SparkNetEstimator

        estimator = SparkNetEstimator(
            featuresCol="features", labelCol="label", inputShape=list(SHAPE), network=NETWORK,
            networkArgs=config.model_args, objective=config.objective,
            numWorkers=WORKERS, tau=2, batchSize=BATCH, rounds=rounds_of(case),
            learningRate=0.05, seed=7, evalEvery=0, streamed=streamed,
            overlap=config.engine.overlap, outerOptimizer="average", momentumPolicy="reset",
            weightCol=weight)
        return np.asarray(estimator.fit(spark.read.parquet(str(parquet))).saved_network.floats)
    from sparknet.cli.main import main
    from sparknet.engine.run_dir import load_result

    # One folder per run: a run directory belongs to one run (a classic and a Connect run
    # of a case share ``folder``).
    output = folder / f"run-{case.name}{'-remote' if remote else ''}"
    argv = ["train", "--parquet", str(parquet), "--features", "features", "--label", "label",
            "--input-shape", ",".join(map(str, SHAPE)), "--model", NETWORK,
            "--model-args", str(config.model_args), "--objective", config.objective,
            "--seed", "7", "--num-workers", str(WORKERS), "--tau", "2", "--batch-size",
            str(BATCH), "--rounds", str(rounds_of(case)), "--overlap", config.engine.overlap,
            "--eval-every", "0", "--lr", "0.05", "--outer", "average",
            "--momentum-policy", "reset",
            "--checkpoint-every", "0", "--no-progress", "--output", str(output),
            *(["--stream"] if streamed else []), *(["--remote", remote] if remote else []),
            *(["--weight", weight] if weight else [])]
    if main(argv) != 0:
        raise AssertionError(f"sparknet {' '.join(argv)} failed")
    return np.asarray(load_result(output).floats)


def _trained(spark: Any, case: Case, streamed: bool) -> np.ndarray:
    from sparknet.data.sources import from_arrays
    from sparknet.engine.trainer import train

    pixels, labels = rows(case.objective)[0], training_labels(case.objective)
    data = from_arrays(spark, train=(stored(case.kind, pixels), labels), test=None,
                       spec=spec_of(case), num_workers=WORKERS, seed=config_of(case).seed,
                       streamed=streamed)
    try:
        return np.asarray(train(data, config=config_of(case), progress=False).floats)
    finally:
        data.release()


def refusal(spark: Any, case: Case, folder: Path, *, remote: str | None = None) -> str:
    """What a path that is not supported says: the error's text, or the CLI's stderr."""
    import contextlib

    from sparknet.errors import SparknetError

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            run_case(spark, case, folder, remote=remote)
    except SparknetError as exc:
        return str(exc)
    except AssertionError:  # the CLI said it on stderr and exited 2
        return err.getvalue()
    raise AssertionError(f"{case.name} trained, but it should have been refused")


def main(argv: list[str]) -> int:
    """Runs ``FOLDER/cases.json`` on a Spark Connect session; writes ``FOLDER/weights.npz``
    and, for the streamed placement (not on Connect), ``FOLDER/refusals.json``."""
    from sparknet.engine.spark_session import remote_session

    url, folder = argv[0], Path(argv[1])
    cases = [Case(**item) for item in json.loads((folder / "cases.json").read_text())]
    spark = remote_session(url, app_name="sparknet-matrix")
    try:
        weights = {case.name: run_case(spark, case, folder, remote=url)
                   for case in cases if case.placement == "connect"}
        refusals = {case.name: refusal(spark, case, folder, remote=url)
                    for case in cases if case.placement == "streamed"}
    finally:
        spark.stop()
    np.savez(folder / "weights.npz", **weights)  # type: ignore[arg-type]
    (folder / "refusals.json").write_text(json.dumps(refusals))
    return 0


def cases_file(folder: Path, cases: list[Case]) -> Path:
    path = folder / "cases.json"
    path.write_text(json.dumps([asdict(case) for case in cases]))
    return path


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
