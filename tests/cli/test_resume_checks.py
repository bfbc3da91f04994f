"""``sparknet train --resume``: the saved settings and data hold, or one line says which differ.

Each run directory here is a real one (trained in-process, 2 of 4 rounds done); each case
changes one thing and must fail in one line before Spark starts (no ``spark.log`` appears).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from sparknet.weights_dir import META_FILE, STATE_FILE


def resume(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sparknet.cli.main", "train", "--resume",
                           str(run_dir), "--no-progress", *args],
                          capture_output=True, text=True, timeout=180)


def assert_refused(result: subprocess.CompletedProcess[str], run_dir: Path,
                   expected: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("sparknet: error: "), result.stderr
    assert expected in lines[0], lines[0]
    assert not (run_dir / "spark.log").exists(), "Spark started before the check"


@pytest.fixture()
def run_dir(tmp_path: Path, stopped_run) -> Path:
    return stopped_run(tmp_path / "run")


@pytest.mark.parametrize(("args", "expected"), [
    (["--tau", "5"], "engine.tau differs from the run's saved value"),
    (["--num-workers", "4"], "engine.num_workers differs"),
    (["--model", "cnn"], "model differs"),
    (["--lr", "0.5"], "optimizer.lr differs"),
    (["--data-dir", "/tmp"], "--data-dir /tmp differs from the run's"),
    (["--train-limit", "512"], "--train-limit 512 differs from the run's 256"),
    (["--rounds", "1"], "the run already did 2 rounds, more than rounds=1"),
])
def test_a_changed_setting_is_refused_by_name(run_dir: Path, args: list[str],
                                               expected: str) -> None:
    assert_refused(resume(run_dir, *args), run_dir, expected)


def test_a_changed_config_file_is_refused(run_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "other.toml"
    config.write_text("[outer]\nname = \"average\"\n")
    assert_refused(resume(run_dir, "--config", str(config)), run_dir, "outer.name differs")


def test_changed_data_is_refused(tmp_path: Path, stopped_run) -> None:
    data = tmp_path / "data"
    shutil.copytree("/usr/share/datasets/fashion-mnist", data)
    run_dir = stopped_run(tmp_path / "run", data_dir=data)
    labels = data / "t10k-labels-idx1-ubyte.gz"
    content = labels.read_bytes()
    labels.write_bytes(content[:-1] + bytes([content[-1] ^ 0xFF]))
    assert_refused(resume(run_dir), run_dir, "changed since the run started")


def _edit_meta(checkpoint: Path, edit) -> None:
    meta = json.loads((checkpoint / META_FILE).read_text())
    (checkpoint / META_FILE).write_text(json.dumps(edit(meta)))


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda m: {**m, "round": 99}, "round 99 does not match the checkpoint's name"),
    (lambda m: {k: v for k, v in m.items() if k != "samples"}, "missing or malformed progress"),
    (lambda m: {**m, "round": "two"}, "missing or malformed progress"),
    (lambda m: {**m, "step_offset": 7}, "do not fit 2 rounds"),
    (lambda m: {**m, "wall_seconds": -1.0}, "do not fit 2 rounds"),
    (lambda m: [1, 2], "holds list, not a JSON object"),
    (lambda m: {**m, "config": {"engine": {"tau": "x"}}}, "holds no valid configuration"),
    (lambda m: {**m, "config": {**m["config"], "model": "os:abort"}}, "its model differs"),
])
def test_a_tampered_checkpoint_is_one_line(run_dir: Path, edit, expected: str) -> None:
    _edit_meta(run_dir / "checkpoints" / "round-000002", edit)
    assert_refused(resume(run_dir), run_dir, expected)


def test_an_outer_momentum_of_the_wrong_shape_is_one_line(run_dir: Path) -> None:
    path = run_dir / "checkpoints" / "round-000002" / STATE_FILE
    tensors = load_file(str(path))
    tensors["outer_momentum"] = np.zeros(3, np.float32)
    save_file(tensors, str(path))
    assert_refused(resume(run_dir), run_dir,
                   "tensor outer_momentum is float32 of shape (3,), this run needs float32")


@pytest.mark.parametrize(("content", "expected"), [
    ("", "cannot be read"),
    ("[]", "holds no valid configuration"),
    ('{"engine": {"rounds": true}}', "holds no valid configuration"),
])
def test_a_broken_config_json_is_one_line(run_dir: Path, content: str, expected: str) -> None:
    (run_dir / "config.json").write_text(content)
    assert_refused(resume(run_dir), run_dir, expected)


def test_a_broken_run_json_is_one_line(run_dir: Path) -> None:
    (run_dir / "run.json").write_text('{"format": "sparknet-run/1", "data": {"kind": 3}}')
    assert_refused(resume(run_dir), run_dir, "run.json cannot be read")


def test_config_json_naming_os_abort_imports_nothing(run_dir: Path) -> None:
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "model": "os:abort"}))
    result = resume(run_dir)
    assert result.returncode == 2, "os.abort ran" if result.returncode == -6 else result.stderr
    assert_refused(result, run_dir, "names the network factory 'os:abort' (model); sparknet "
                                    "never imports code a file names")
