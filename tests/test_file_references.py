"""Every setting a file can hold that may name code is gated, on every path that reads it.

The test walks the configuration schema (``sparknet.settings``): each free-text string
setting (no fixed choices) gets a reference to a witness module, which writes a file when
imported, in a run directory's ``config.json`` (and in its checkpoint's embedded config);
``sparknet train --resume`` must refuse it in one line, exit 2, before Spark starts, with
the witness never imported. A new setting that names code without ``setting(reference=...)``
fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sparknet.settings import Setting, train_settings
from sparknet.weights_dir import META_FILE, latest_checkpoint

WITNESS = "sparknet_witness_ref"


def free_text_settings() -> list[Setting]:
    return [s for s in train_settings() if s.kind == "str" and s.choices is None]


def test_the_schema_marks_model_and_objective_as_references() -> None:
    marked = {s.dotted: s.reference for s in train_settings() if s.reference is not None}
    assert marked == {"model": "network", "objective": "loss"}
    assert set(marked) <= {s.dotted for s in free_text_settings()}


@pytest.fixture()
def witness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module that proves it was imported by writing ``imported`` beside it."""
    folder = tmp_path / "witness"
    folder.mkdir()
    mark = folder / "imported"
    (folder / f"{WITNESS}.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        Path({str(mark)!r}).write_text("imported")

        def factory():
            raise SystemExit("the witness factory was called")
    """))
    monkeypatch.syspath_prepend(str(folder))
    return mark


def _edit_param(metadata: Path, param: str, value: str) -> None:
    """Rewrites one Param of a saved stage (and drops Hadoop's checksum of the old text)."""
    record = json.loads(metadata.read_text())
    record["paramMap"][param] = value
    metadata.write_text(json.dumps(record))
    for crc in metadata.parent.glob(".*.crc"):
        crc.unlink()


def _set(values: dict, dotted: str, value: str) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        values = values[part]
    values[last] = value


def _checkpoint_meta(run_dir: Path) -> Path:
    latest = latest_checkpoint(run_dir)
    assert latest is not None
    return latest / META_FILE


def _resume(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    from sparknet.cli.main import main

    capsys.readouterr()
    code = main(["train", "--resume", str(run_dir), "--no-progress"])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("where", ["config.json", "checkpoint"])
def test_every_free_text_setting_naming_code_is_refused_on_resume(
        tmp_path: Path, stopped_run, witness: Path, capsys: pytest.CaptureFixture[str],
        where: str) -> None:
    run_dir = stopped_run(tmp_path / "run")
    saved = (run_dir / "config.json").read_text()
    meta_file = _checkpoint_meta(run_dir)
    saved_meta = meta_file.read_text()
    for s in free_text_settings():
        file, text = (run_dir / "config.json", saved) if where == "config.json" else \
            (meta_file, saved_meta)
        values = json.loads(text)
        _set(values if file.name == "config.json" else values["config"], s.dotted,
             f"{WITNESS}:factory")
        file.write_text(json.dumps(values))
        code, lines = _resume(run_dir, capsys)
        assert code == 2 and len(lines) == 1, (s.dotted, lines)
        assert not witness.exists() and WITNESS not in sys.modules, \
            f"{s.dotted}: sparknet imported the module a file named"
        if s.reference is not None and where == "config.json":
            assert "never imports code a file names" in lines[0], lines[0]
            assert f"({s.dotted})" in lines[0] and f"{s.flag} {WITNESS}:factory" in lines[0]
        assert not (run_dir / "spark.log").exists()
        file.write_text(text)


def test_objective_os_abort_in_config_json_is_refused_in_one_line(tmp_path: Path,
                                                                   stopped_run) -> None:
    """The campaign's reproduction: the process aborted (exit 134) before."""
    run_dir = stopped_run(tmp_path / "run")
    values = json.loads((run_dir / "config.json").read_text())
    values["objective"] = "os:abort"
    (run_dir / "config.json").write_text(json.dumps(values))
    result = subprocess.run([sys.executable, "-m", "sparknet.cli.main", "train", "--resume",
                             str(run_dir), "--no-progress"], capture_output=True, text=True,
                            timeout=180)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "names the loss factory 'os:abort' (objective)" in lines[0]


def test_the_callers_own_reference_or_trust_passes_the_gate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ways out the message names: the caller's own value, or trust_factory."""
    from sparknet.config import TrainConfig
    from sparknet.errors import ConfigError
    from sparknet.models import trust_factory
    from sparknet.models.registry import check_file_references

    (tmp_path / "sparknet_trust_probe.py").write_text("def loss():\n    return min\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ref = "sparknet_trust_probe:loss"  # named by no other test, so trusted by none
    config = TrainConfig.from_dict({"objective": ref})
    with pytest.raises(ConfigError, match="names the loss factory"):
        check_file_references(config, origin="x.json")
    check_file_references(config, origin="x.json", given={"objective": ref})
    trust_factory(ref)
    check_file_references(config, origin="x.json")


@pytest.mark.spark
def test_a_saved_estimator_naming_code_is_refused_on_load(tmp_path: Path, spark,
                                                          witness: Path) -> None:
    from pyspark.ml import Pipeline

    from sparknet.errors import ConfigError
    from sparknet.ml import SparkNetEstimator

    for param in ("network", "objective"):
        folder = tmp_path / param
        SparkNetEstimator().write().save(str(folder))
        _edit_param(next((folder / "metadata").glob("part-*")), param, f"{WITNESS}:factory")
        with pytest.raises(ConfigError, match=f"names the .* factory '{WITNESS}:factory'"):
            SparkNetEstimator.load(str(folder))
        pipeline = tmp_path / f"pipeline-{param}"
        Pipeline(stages=[SparkNetEstimator()]).write().save(str(pipeline))
        _edit_param(next((pipeline / "stages").glob("*/metadata/part-*")), param,
                    f"{WITNESS}:factory")
        with pytest.raises(ConfigError, match="never imports code a file names"):
            Pipeline.load(str(pipeline))
    assert not witness.exists() and WITNESS not in sys.modules
