"""Shared fixtures: one real local[2] SparkSession per test run, real Fashion-MNIST data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    import sparknet_testing  # noqa: F401 - fixtures, test networks and Spark's workers need it
except ImportError:  # not in the wheel: only a development install puts src/ on the path
    raise pytest.UsageError("sparknet_testing is not importable: install this checkout with "
                            "pip install -e '.[dev]' (scripts/bootstrap.sh does) or put its "
                            "src/ on PYTHONPATH") from None

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
SHARED_CAFFE = Path(__file__).resolve().parents[1].parent / "shared" / "caffe"


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    from sparknet.engine.spark_session import get_or_create_session

    session = get_or_create_session("local[2,4]", app_name="sparknet-tests")  # 4 tries per task
    yield session
    session.stop()


@pytest.fixture(scope="session")
def fashion() -> object:
    """Both Fashion-MNIST splits (uint8 images, int64 labels)."""
    from sparknet.data import fashion_mnist

    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST not installed in {FASHION_DIR}: run scripts/bootstrap.sh")
    return {split: fashion_mnist.load_split(split, FASHION_DIR) for split in ("train", "test")}


@pytest.fixture(scope="session")
def lenet_files() -> tuple[Path, Path]:
    """(solver, train_test net) of Caffe's examples/mnist LeNet from ../shared/caffe."""
    bvlc = SHARED_CAFFE / "models" / "bvlc_prototxt"
    solver = bvlc / "examples__mnist__lenet_solver.prototxt"
    net = bvlc / "examples__mnist__lenet_train_test.prototxt"
    if not (solver.is_file() and net.is_file()):
        pytest.skip(f"the shared Caffe models are not at {bvlc} (../shared/caffe)")
    return solver, net


@pytest.fixture()
def solver_copy(tmp_path: Path, lenet_files: tuple[Path, Path]) -> Path:
    """The LeNet solver with its net path pointing at the real train_test file."""
    solver, net = lenet_files
    text = solver.read_text().replace('"examples/mnist/lenet_train_test.prototxt"', f'"{net}"')
    path = tmp_path / "lenet_solver.prototxt"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A Spark Connect server (local[2,4]) started with PySpark's own launcher."""
    from sparknet_testing.connect_server import start_connect_server

    server = start_connect_server(tmp_path_factory.mktemp("connect"))
    try:
        yield server
    finally:
        server.stop()
    assert not server.descendants(), "the Connect server left processes behind"



@pytest.fixture()
def stopped_run(fashion: dict[str, object]):
    """Makes a run directory as ``sparknet train --train-limit 256`` leaves it when stopped
    after 2 of 4 rounds (checkpoints each round), trained in-process without Spark."""
    import numpy as np

    from sparknet.cli.run_settings import DataSource, save_run_file
    from sparknet.config import TrainConfig
    from sparknet.data.shards import InputSpec
    from sparknet.engine.loop import LoopOptions, run_rounds
    from sparknet.engine.runner import InProcessRunner
    from sparknet.models.registry import resolve_model

    def make(run_dir: Path, *, data_dir: Path = FASHION_DIR, model: str = "lenet",
             outer: str = "nesterov") -> Path:
        train = fashion["train"]  # type: ignore[index]
        arrays = (np.asarray(train.images[:256]), np.asarray(train.labels[:256]))
        config = TrainConfig.from_dict({
            "model": model, "checkpoint_every": 1, "outer": {"name": outer},
            "engine": {"num_workers": 2, "tau": 2, "batch_size": 16, "rounds": 4,
                       "eval_every": 0}})
        runner = InProcessRunner(arrays, num_workers=2, seed=config.seed)
        run_rounds(runner, config=config, model=resolve_model(model),
                   spec=InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255),
                   options=LoopOptions(run_dir=run_dir, stop=lambda r: r["round"] == 2))
        save_run_file(run_dir, DataSource(kind="fashion-mnist", path=str(data_dir),
                                          train_limit=256))
        return run_dir

    return make


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real ``mlflow server`` (SQLite, local artifacts) on 127.0.0.1, stopped after."""
    pytest.importorskip("mlflow")
    from sparknet_testing.mlflow_server import start_mlflow_server

    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()
