"""``sparknet train --mlflow`` against a real MLflow tracking server.

A tiny Fashion-MNIST run (LeNet, 2 workers, a few rounds) logs every setting, every round's
metrics with the round as the step, the run directory's files and both models; ``--resume``
continues the same MLflow run; a server killed mid-run costs one warning line and no training.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sparknet.config import TrainConfig
from sparknet.tracking import ROUND_METRICS, config_params, param_text

pytestmark = [pytest.mark.spark, pytest.mark.mlflow]

SMALL = ["--train-limit", "256", "--test-limit", "128", "--num-workers", "2", "--tau", "2",
         "--batch-size", "16", "--no-progress"]


def train_args(output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sparknet.cli.main", "train", "--output", str(output),
            *SMALL, *extra]


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)


def client(server: Any) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=server.url)


def artifacts(mlflow_client: Any, run_id: str, path: str | None = None) -> set[str]:
    return {a.path for a in mlflow_client.list_artifacts(run_id, path)}


@pytest.fixture(scope="module")
def cli_run(mlflow_server: Any, fashion: dict, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[Path, str]:
    output = tmp_path_factory.mktemp("cli") / "run"
    done = run(train_args(output, "--rounds", "4", "--eval-every", "2", "--mlflow",
                          mlflow_server.url, "--mlflow-experiment", "cli"))
    assert done.returncode == 0, done.stderr
    assert "MLflow logging stopped" not in done.stderr
    return output, json.loads((output / "mlflow.json").read_text())["run_id"]


def test_a_cli_run_logs_every_setting_round_file_and_model(mlflow_server: Any,
                                                           cli_run: tuple[Path, str]) -> None:
    output, run_id = cli_run
    mlflow_client = client(mlflow_server)
    run_info = mlflow_client.get_run(run_id)
    assert run_info.info.status == "FINISHED"
    assert mlflow_client.get_experiment(run_info.info.experiment_id).name == "cli"
    config = TrainConfig.from_dict(json.loads((output / "config.json").read_text()))
    params = run_info.data.params
    for key, value in config_params(config).items():
        assert params[key] == param_text(value), key
    assert params["run.data"] == "fashion-mnist" and params["run.train_limit"] == "256"
    tags = run_info.data.tags
    saved = json.loads((output / "run.json").read_text())["data"]
    assert tags["sparknet.data_fingerprint"] == saved["fingerprint"]
    assert tags["sparknet.K"] == "2" and tags["spark.master"] == "local[2,4]"
    assert {"sparknet.version", "spark.version", "torch.version"} <= set(tags)

    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2, 3, 4]
    # Evaluations are not every round (test_*); val_* are a fit's names, not the CLI's.
    every_round = [k for k in ROUND_METRICS if not k.startswith(("test_", "val_"))]
    for key in (*every_round, "samples_per_second"):
        history = mlflow_client.get_metric_history(run_id, key)
        assert sorted(m.step for m in history) == [1, 2, 3, 4], key
    accuracy = mlflow_client.get_metric_history(run_id, "test_accuracy")
    assert sorted((m.step, m.value) for m in accuracy) == [
        (r["round"], pytest.approx(r["test_accuracy"])) for r in records
        if r["test_accuracy"] is not None]
    assert [m.step for m in sorted(accuracy, key=lambda m: m.step)] == [2, 4]

    assert {"config.json", "run.json", "metrics.jsonl", "metrics.png", "spark-model",
            "onnx-model"} <= artifacts(mlflow_client, run_id)
    assert {"spark-model/MLmodel", "spark-model/sparkml"} <= artifacts(mlflow_client, run_id,
                                                                       "spark-model")
    assert "onnx-model/model.onnx" in artifacts(mlflow_client, run_id, "onnx-model")


@pytest.mark.slow
def test_resume_continues_the_same_mlflow_run(mlflow_server: Any, fashion: dict,
                                              tmp_path: Path) -> None:
    output = tmp_path / "run"
    first = run(train_args(output, "--rounds", "2", "--checkpoint-every", "1",
                           "--mlflow", mlflow_server.url))
    assert first.returncode == 0, first.stderr
    run_id = json.loads((output / "mlflow.json").read_text())["run_id"]
    resumed = run([sys.executable, "-m", "sparknet.cli.main", "train", "--resume", str(output),
                   "--rounds", "4", "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((output / "mlflow.json").read_text())["run_id"] == run_id
    mlflow_client = client(mlflow_server)
    steps = sorted(m.step for m in mlflow_client.get_metric_history(run_id, "train_loss"))
    assert steps == [1, 2, 3, 4]
    found = mlflow_client.get_run(run_id)
    assert found.info.status == "FINISHED"
    assert found.data.params["engine.rounds"] == "2"
    assert found.data.tags["changed.engine.rounds"] == "4"


@pytest.mark.slow
def test_a_server_killed_mid_run_costs_one_warning_line(fashion: dict, tmp_path: Path) -> None:
    from sparknet_testing.mlflow_server import start_mlflow_server

    server = start_mlflow_server(tmp_path / "server")
    output = tmp_path / "run"
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        process = subprocess.Popen(train_args(output, "--rounds", "12", "--eval-every", "1",
                                              "--mlflow", server.url),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=env)
        metrics = output / "metrics.jsonl"
        deadline = time.monotonic() + 240
        while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr
            time.sleep(0.1)  # polling a file another process writes
        server.kill()
        started = time.monotonic()
        stdout, stderr = process.communicate(timeout=300)
    finally:
        server.stop()
    assert process.returncode == 0, stderr
    warnings = [line for line in stderr.splitlines() if "MLflow" in line or "mlflow" in line
                or "urllib3" in line or "Retrying" in line]
    assert len(warnings) == 1, stderr
    assert "MLflow logging stopped (" in warnings[0]
    assert warnings[0].endswith("every round is still in metrics.jsonl")
    assert "done: 12 rounds" in stdout
    rounds = [json.loads(line)["round"] for line in metrics.read_text().splitlines()]
    assert rounds == list(range(1, 13))
    assert (output / "final" / "model.safetensors").is_file()
    assert time.monotonic() - started < 120  # a dead server costs seconds, not minutes
