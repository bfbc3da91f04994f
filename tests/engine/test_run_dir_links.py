"""Writes into a run directory never follow a link out of it.

A link planted at ``config.json``, ``metrics.jsonl``, ``metrics.png``, ``final/`` or the JVM's
``spark.log`` is replaced by sparknet's own file; the file or folder it pointed to is untouched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sparknet.config import TrainConfig
from sparknet.data.shards import InputSpec
from sparknet.engine.loop import LoopOptions, run_rounds
from sparknet.engine.runner import InProcessRunner
from sparknet.errors import DataError
from sparknet.models.registry import resolve_model


def _train(run_dir: Path, fashion, *, resume: bool = False) -> None:
    train = fashion["train"]
    config = TrainConfig.from_dict({"model": "lenet", "checkpoint_every": 1, "engine": {
        "num_workers": 2, "tau": 1, "batch_size": 16, "rounds": 2, "eval_every": 0}})
    runner = InProcessRunner((train.images[:128], train.labels[:128]), num_workers=2, seed=0)
    run_rounds(runner, config=config, model=resolve_model("lenet"),
               spec=InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255),
               options=LoopOptions(run_dir=run_dir, resume=resume))


def test_links_in_the_run_directory_are_replaced_not_followed(tmp_path: Path, fashion) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "final").mkdir()
    (outside / "final" / "keep.txt").write_text("keep")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("config.json", "metrics.jsonl", "metrics.png"):
        (outside / name).write_text(f"precious {name}")
        (run_dir / name).symlink_to(outside / name)
    (run_dir / "final").symlink_to(outside / "final")

    _train(run_dir, fashion)

    for name in ("config.json", "metrics.jsonl", "metrics.png"):
        assert (outside / name).read_text() == f"precious {name}"
        assert not (run_dir / name).is_symlink() and (run_dir / name).stat().st_size > 0
    assert (outside / "final" / "keep.txt").read_text() == "keep"
    assert not (run_dir / "final").is_symlink() and (run_dir / "final" / "state.json").is_file()


def test_a_linked_checkpoints_folder_is_refused(tmp_path: Path, fashion) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoints").symlink_to(elsewhere)
    with pytest.raises(DataError, match="checkpoints is a symbolic link"):
        _train(run_dir, fashion)
    assert list(elsewhere.iterdir()) == []


def test_metrics_link_planted_before_resume_is_replaced(tmp_path: Path, fashion) -> None:
    run_dir = tmp_path / "run"
    _train(run_dir, fashion)
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    (run_dir / "metrics.jsonl").unlink()
    (run_dir / "metrics.jsonl").symlink_to(victim)
    _train(run_dir, fashion, resume=True)
    assert victim.read_text() == "untouched"
    assert not (run_dir / "metrics.jsonl").is_symlink()


def test_spark_log_link_is_replaced(tmp_path: Path) -> None:
    from sparknet.engine.spark_session import _log_config

    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    (tmp_path / "spark.log").symlink_to(victim)
    config = _log_config(tmp_path / "spark.log")
    assert not (tmp_path / "spark.log").exists() and victim.read_text() == "untouched"
    assert f"fileName = {(tmp_path / 'spark.log').resolve()}" in config.read_text()
