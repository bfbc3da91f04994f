"""Optional packages (the onnx, plot, hdf5 and caffe-db extras) missing: one line naming the extra.

Each case runs in a fresh interpreter whose ``sys.modules`` maps the package to None, which
makes ``import package`` raise ImportError exactly as when it is not installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sparknet.errors import ConfigError, MissingDependencyError, require_package

# One in-process round of LeNet on random pixels, written to the run directory argv[1].
TRAIN = """
import sys
from pathlib import Path
import numpy as np
from sparknet.config import TrainConfig
from sparknet.data.shards import InputSpec
from sparknet.engine.loop import LoopOptions, run_rounds
from sparknet.engine.runner import InProcessRunner
from sparknet.models.registry import resolve_model

rng = np.random.default_rng(0)
arrays = (rng.integers(0, 256, (64, 1, 28, 28), dtype=np.uint8),
          rng.integers(0, 10, 64).astype(np.int64))
config = TrainConfig.from_dict({"model": "lenet", "engine": {
    "num_workers": 2, "tau": 1, "batch_size": 8, "rounds": 1, "eval_every": 0}})
run_rounds(InProcessRunner(arrays, num_workers=2, seed=0), config=config,
           model=resolve_model("lenet"),
           spec=InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255),
           options=LoopOptions(run_dir=Path(sys.argv[1])))
"""


def _python(code: str, *args: str, without: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    prelude = f"import sys\nsys.modules[{without!r}] = None\n" if without else ""
    return subprocess.run([sys.executable, "-c", prelude + code, *args], capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    done = _python(TRAIN, str(run_dir))
    assert done.returncode == 0, done.stderr
    return run_dir


def test_a_run_without_matplotlib_is_whole_but_for_the_plot(tmp_path: Path) -> None:
    done = _python(TRAIN, str(tmp_path), without="matplotlib")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "metrics.png not written: plotting metrics needs the matplotlib package: "
        "pip install 'sparknet[plot]'"]
    assert (tmp_path / "final" / "model.safetensors").is_file()
    assert (tmp_path / "metrics.jsonl").is_file()
    assert not (tmp_path / "metrics.png").exists()


def test_export_onnx_without_onnx_is_one_line(finished_run: Path, tmp_path: Path) -> None:
    code = ("from sparknet.cli.main import main\n"
            "sys.exit(main(['export-onnx', sys.argv[1], sys.argv[2]]))")
    done = _python(code, str(finished_run), str(tmp_path / "out.onnx"), without="onnx")
    assert done.returncode == 2
    assert done.stderr == ("sparknet: error: ONNX export needs the onnx package: "
                           "pip install 'sparknet[onnx]'\n")
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize(("without", "code", "message"), [
    ("matplotlib",
     "from sparknet.ml.summary import SparkNetTrainingSummary\n"
     "SparkNetTrainingSummary([], objective='multiclass').plot(sys.argv[1] + '/s.png')",
     "plotting the training summary needs the matplotlib package: "
     "pip install 'sparknet[plot]'"),
    ("h5py",
     "from sparknet.caffe.weights import read_caffemodel_h5\n"
     "read_caffemodel_h5(sys.argv[1] + '/w.h5')",
     "reading Caffe HDF5 weights needs the h5py package: pip install 'sparknet[hdf5]'"),
    ("h5py",
     "from sparknet.caffe.weights import write_caffemodel_h5\n"
     "write_caffemodel_h5(sys.argv[1] + '/w.h5', {})",
     "writing Caffe HDF5 weights needs the h5py package: pip install 'sparknet[hdf5]'"),
    ("h5py",
     "from sparknet.caffe.hdf5_output import write_hdf5_output\n"
     "write_hdf5_output(sys.argv[1] + '/o.h5', None, None)",
     "Caffe's HDF5Output layer needs the h5py package: pip install 'sparknet[hdf5]'"),
    ("lmdb",
     "from pathlib import Path\n"
     "from sparknet.caffe.database import DatabaseSource, first_batch\n"
     "first_batch(DatabaseSource(path=Path(sys.argv[1])), 1)",
     "reading a Caffe LMDB database needs the lmdb package: pip install 'sparknet[caffe-db]'"),
    ("plyvel",
     "from pathlib import Path\n"
     "from sparknet.caffe.database import DatabaseSource, first_batch\n"
     "first_batch(DatabaseSource(path=Path(sys.argv[1]), backend='LEVELDB'), 1)",
     "reading a Caffe LEVELDB database needs the plyvel package: "
     "pip install 'sparknet[caffe-db]'"),
])
def test_a_missing_extra_is_a_config_error_naming_it(without: str, code: str, message: str,
                                                     tmp_path: Path) -> None:
    caught = ("from sparknet.errors import ConfigError\n"
              f"try:\n    exec({code!r})\nexcept ConfigError as exc:\n    print(exc)\n")
    done = _python(caught, str(tmp_path), without=without)
    assert done.returncode == 0, done.stderr
    assert done.stdout == message + "\n"
    assert list(tmp_path.iterdir()) == []


def test_a_broken_install_keeps_its_own_error(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "half_installed.py").write_text("import a_module_that_is_not_there\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="a_module_that_is_not_there"):
        require_package("half_installed", extra="x", needed_for="this")
    monkeypatch.setitem(sys.modules, "not_installed", None)
    with pytest.raises(MissingDependencyError) as raised:
        require_package("not_installed", extra="x", needed_for="this")
    assert isinstance(raised.value, ConfigError)


def test_mlflow_tracking_without_mlflow_is_one_line(tmp_path: Path) -> None:
    code = ("from sparknet.cli.main import main\n"
            "sys.exit(main(['train', '--mlflow', 'http://127.0.0.1:9', '--output', sys.argv[1]]))")
    done = _python(code, str(tmp_path / "run"), without="mlflow")
    assert done.returncode == 2
    assert done.stderr == ("sparknet: error: MLflow tracking (--mlflow) needs the mlflow "
                           "package: pip install 'sparknet[mlflow]'\n")
    assert not (tmp_path / "run" / "spark.log").exists()
