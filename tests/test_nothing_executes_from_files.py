"""A run directory or saved model that names ``os:abort`` loads nothing and says so.

sparknet resolves a model named by a file only if it is data (a built-in network, a Caffe
definition) or a factory this process's code named; these tests would die by SIGABRT if a
loader imported ``os`` and called ``abort``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from sparknet.errors import ConfigError
from sparknet.weights_dir import META_FILE

TRAP = "os:abort"


def _retarget(meta_file: Path, key: str, value: str) -> None:
    meta = json.loads(meta_file.read_text())
    if key == "config":
        meta["config"]["model"] = value
    else:
        meta[key] = value
    meta_file.write_text(json.dumps(meta))


def _in_child(code: str) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` in a fresh interpreter: an abort would kill it, not the test run."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=180)


def test_load_result_of_a_run_naming_os_abort(tmp_path: Path, stopped_run) -> None:
    run_dir = stopped_run(tmp_path / "run")
    _retarget(run_dir / "final" / META_FILE, "config", TRAP)
    child = _in_child(f"""
        from sparknet.engine.run_dir import load_result
        from sparknet.errors import ConfigError
        try:
            load_result({str(run_dir)!r})
        except ConfigError as exc:
            print("refused:", exc)
    """)
    assert child.returncode == 0, child.stderr
    assert "refused:" in child.stdout and "never imports code a file names" in child.stdout


def _saved_model(folder: Path, network: str) -> Path:
    from sparknet.flat import FlatLayout, flatten_state
    from sparknet.ml.persistence import WEIGHTS_DIR, SavedNetwork, write_network
    from sparknet.models.zoo import LeNet

    module = LeNet()
    layout = FlatLayout.of(module)
    floats, ints = flatten_state(module, layout)
    write_network(folder / WEIGHTS_DIR, SavedNetwork(
        network="lenet", input_shape=(1, 28, 28), num_classes=10, input_scale=1 / 255,
        layout=layout, floats=floats, ints=ints))
    _retarget(folder / WEIGHTS_DIR / META_FILE, "network", network)
    return folder


def test_saved_model_naming_os_abort_is_refused_by_read_and_export(tmp_path: Path) -> None:
    folder = _saved_model(tmp_path / "model", TRAP)
    child = _in_child(f"""
        from sparknet.ml.persistence import read_network
        from sparknet.errors import ConfigError
        try:
            read_network(__import__("pathlib").Path({str(folder / "weights")!r}))
        except ConfigError as exc:
            print("refused:", exc)
    """)
    assert child.returncode == 0 and "refused:" in child.stdout, child.stderr
    export = subprocess.run([sys.executable, "-m", "sparknet.cli.main", "export-onnx",
                             str(folder), str(tmp_path / "m.onnx")],
                            capture_output=True, text=True, timeout=180)
    assert export.returncode == 2, export.stderr
    assert "names the network factory 'os:abort'" in export.stderr
    assert len(export.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.spark
def test_spark_model_load_naming_os_abort_is_refused(tmp_path: Path, spark) -> None:
    from sparknet.ml import SparkNetModel
    from sparknet.ml.persistence import read_network

    saved = read_network(_saved_model(tmp_path / "weights-only", "lenet") / "weights")
    SparkNetModel._from_saved(saved).write().overwrite().save(str(tmp_path / "model"))
    assert SparkNetModel.load(str(tmp_path / "model")).saved_network.network == "lenet"
    _retarget(tmp_path / "model" / "weights" / META_FILE, "network", TRAP)
    with pytest.raises(ConfigError, match="never imports code a file names"):
        SparkNetModel.load(str(tmp_path / "model"))


def test_a_factory_loads_when_the_caller_names_it(tmp_path: Path, stopped_run,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal has a way out: pass the factory again, or trust it first."""
    from sparknet.engine.run_dir import load_result
    from sparknet.models import trust_factory

    (tmp_path / "my_nets_for_trust.py").write_text(textwrap.dedent("""
        from sparknet.models.zoo import LeNet

        def lenet_again():
            return LeNet()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    run_dir = stopped_run(tmp_path / "run")
    _retarget(run_dir / "final" / META_FILE, "config", "my_nets_for_trust:lenet_again")
    with pytest.raises(ConfigError, match="pass the factory again"):
        load_result(run_dir)
    with pytest.raises(ConfigError, match="not 'lenet'"):
        load_result(run_dir, model="lenet")
    by_name = load_result(run_dir, model="my_nets_for_trust:lenet_again")
    trust_factory("my_nets_for_trust:lenet_again")
    trusted = load_result(run_dir)
    for result in (by_name, trusted):
        assert isinstance(result.model(), torch.nn.Module)
        assert (result.floats == by_name.floats).all()
