"""Bad configuration is one line on stderr and exit code 2, before Spark starts."""

import subprocess
import sys

import pytest


def _run(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sparknet.cli.main", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--tau", "0"], "tau=0 is invalid"),
        (["--num-workers", "0"], "num_workers=0 is invalid"),
        (["--batch-size", "0"], "batch_size=0 is invalid"),
        (["--model", "resnet9000"], "unknown model 'resnet9000'"),
        (["--model", "no_such_pkg.nets:build"], "cannot import module 'no_such_pkg.nets'"),
        (["--data-dir", "/nonexistent"], "Fashion-MNIST file /nonexistent/"),
        (["--master", "spark://127.0.0.1:9"], "cannot reach Spark master"),
        (["--master", "mesos://x"], "is not a Spark master URL"),
        (["--config", "/nonexistent.toml"], "does not exist"),
        (["--resume", "/nonexistent"], "cannot resume"),
    ],
)
def test_bad_configuration_is_one_clear_line(args, expected):
    result = _run("train", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sparknet: error: ") and expected in lines[0]
    assert "Traceback" not in result.stderr and "JVM" not in result.stderr


def test_bad_toml_names_the_setting(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[engine]\ntaus = 5\n")
    result = _run("train", "--config", str(config))
    assert result.returncode == 2 and "unknown setting engine.taus" in result.stderr


def test_help_documents_every_option():
    result = _run("train", "--help")
    assert result.returncode == 0
    for flag in ("--master", "--tau", "--num-workers", "--batch-size", "--config", "--resume",
                 "--outer", "--compression", "--device", "--momentum-policy"):
        assert flag in result.stdout
