"""Bad input to ``sparknet train``: one line on stderr, exit 2, before Spark starts.

Every case here fails before a SparkSession exists: the tests check that no JVM was started
(no ``spark.log`` appears in the run directory) as well as the line itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BAD_NETWORKS = '''
import torch
from torch import nn

def raises():
    raise ValueError("no such layer size")

def wrong_input():
    return nn.Sequential(nn.Flatten(), nn.Linear(10, 10))

def twenty_logits():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 20))

def not_a_tensor():
    class Pair(nn.Module):
        def forward(self, x):
            return x.sum(), x.mean()
    return Pair()
'''


def run_cli(*args: str, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sparknet.cli.main", *args],
                          capture_output=True, text=True, timeout=180, cwd=cwd,
                          env={**os.environ, **(env or {})})


def assert_one_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sparknet: error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture()
def toml(tmp_path: Path):
    def write(text: str) -> str:
        path = tmp_path / "run.toml"
        path.write_text(text)
        return str(path)
    return write


@pytest.mark.parametrize(("run_table", "expected"), [
    ('ouptut = "runs/x"', "unknown [run] key 'ouptut' (did you mean 'output'?)"),
    ('train_limit = "abc"', "[run] train_limit = 'abc' is invalid: it must be a number"),
    ("master = 5", "[run] master = 5 is invalid: it must be a Spark master URL"),
    ("test_limit = true", "[run] test_limit = True is invalid"),
    ("train_limit = 0", "train_limit=0 is invalid"),
])
def test_run_table_is_validated(toml, tmp_path: Path, run_table: str, expected: str) -> None:
    result = run_cli("train", "--config", toml(f"[run]\n{run_table}\n"),
                     "--output", str(tmp_path / "out"))
    assert_one_line(result, expected)
    assert not (tmp_path / "out" / "spark.log").exists()


def test_config_that_is_a_folder_or_not_utf8(tmp_path: Path) -> None:
    assert_one_line(run_cli("train", "--config", str(tmp_path)), "is a folder")
    binary = tmp_path / "c.toml"
    binary.write_bytes(b"model = \"\xff\xfe\"\n")
    assert_one_line(run_cli("train", "--config", str(binary)), "is not UTF-8 text")


@pytest.mark.parametrize(("args", "expected"), [
    (["--train-limit", "-5"], "argument --train-limit: -5 is not >= 1"),
    (["--test-limit", "0"], "argument --test-limit: 0 is not >= 1"),
    (["--train-limit", "1"], "train_limit=1 leaves each of the 2 workers 0 examples"),
    (["--train-limit", "100"], "leaves each of the 2 workers 50 examples, fewer than one "
                               "batch of 64"),
    (["--tau", "abc"], "argument --tau: 'abc' is not a number of steps"),
    (["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
    (["--master", "local[0]"], "asks for zero threads"),
    (["--master", "local[2,0]"], "asks for zero task attempts"),
    (["--master", "k8s://"], "is not of the form k8s://https://HOST:PORT"),
    (["--master", "k8s://https://127.0.0.1:9"], "cannot reach Spark master"),
    (["--precision", "fp16"], "argument --precision: invalid choice: 'fp16'"),
    (["--device", "cuda"], "device 'cuda' was asked for but this machine has no CUDA device"),
])
def test_bad_flags_are_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    result = run_cli("train", *args, "--output", str(tmp_path / "out"))
    assert_one_line(result, expected)
    assert not (tmp_path / "out" / "spark.log").exists()


def test_yarn_needs_its_configuration(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HADOOP_CONF_DIR", "YARN_CONF_DIR")}
    result = subprocess.run([sys.executable, "-m", "sparknet.cli.main", "train", "--master",
                             "yarn", "--output", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=180, env=env)
    assert_one_line(result, "needs HADOOP_CONF_DIR or YARN_CONF_DIR")


def test_unwritable_output_is_refused_before_spark(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    assert_one_line(run_cli("train", "--output", str(a_file)), "is a file, not a folder")
    assert_one_line(run_cli("train", "--output", str(a_file / "run")),
                    "which is a file: choose another --output")
    assert a_file.read_text() == "not a folder"


def test_read_only_output_is_refused_before_spark(tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)],
                          capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a read-only file system here: {made.stderr.decode()[:100]}")
    try:
        assert_one_line(run_cli("train", "--output", str(mount / "run")),
                        "Read-only file system")
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize(("factory", "expected"), [
    ("raises", "failed a trial run on the driver with one example of shape [1, 28, 28] "
               "(ValueError: no such layer size)"),
    ("wrong_input", "failed a trial run on the driver"),
    ("twenty_logits", "returns (1, 20) for one example, not [1, 10] logits"),
    ("not_a_tensor", "returns tuple for one example"),
])
def test_bad_networks_fail_on_the_driver_in_one_line(tmp_path: Path, factory: str,
                                                      expected: str) -> None:
    (tmp_path / "bad_nets.py").write_text(BAD_NETWORKS)
    result = run_cli("train", "--model", f"bad_nets:{factory}", "--output",
                     str(tmp_path / "out"), env={"PYTHONPATH": str(tmp_path)})
    assert_one_line(result, expected)
    assert not (tmp_path / "out" / "spark.log").exists()


@pytest.mark.parametrize(("uri", "expected"), [
    ("htp://127.0.0.1:5000", "unknown scheme 'htp'"),
    ("http://", "is not a valid server address"),
    ("http://127.0.0.1:notaport", "is not a valid server address"),
])
def test_a_malformed_mlflow_uri_is_one_line(tmp_path: Path, uri: str, expected: str) -> None:
    pytest.importorskip("mlflow")
    result = run_cli("train", "--mlflow", uri, "--output", str(tmp_path / "out"))
    assert_one_line(result, expected)
    assert not (tmp_path / "out" / "spark.log").exists()
