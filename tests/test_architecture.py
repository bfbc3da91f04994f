"""The import directions of docs/architecture.md, enforced.

Static: no import statement (deferred ones included) in a module crosses a forbidden line.
Dynamic: importing the engine, the simulator and the ML stage loads neither the Caffe
plug-in nor (for the pure core) PySpark.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sparknet"

# The pure core: arrays, tensors and plain data; Spark's shell calls it, never the reverse.
PURE_CORE = ("config", "settings", "errors", "flat", "averaging", "weights_dir", "metrics",
             "data/shards", "data/fashion_mnist", "models", "engine/local_steps",
             "engine/aggregate", "engine/state", "engine/tau", "engine/auto_tau",
             "engine/runner", "engine/loop", "engine/run_dir", "engine/model_cache",
             "engine/early_stop", "simulate")
# Everything but the CLI and the plug-in itself reaches Caffe through the model-kind interface.
NO_CAFFE = ("config", "settings", "flat", "averaging", "weights_dir", "metrics", "data",
            "engine", "models", "simulate", "ml")


def _modules(parts: tuple[str, ...]) -> list[Path]:
    found: list[Path] = []
    for part in parts:
        path = SRC / part
        found += sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    return found


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _crossings(parts: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return [f"{path.relative_to(SRC)} imports {name}" for path in _modules(parts)
            for name in sorted(_imports(path))
            if any(name == f or name.startswith(f + ".") for f in forbidden)]


def test_the_layers_exist() -> None:
    assert all(path.is_file() for path in _modules(PURE_CORE + NO_CAFFE))


def test_nothing_but_the_cli_and_the_plugin_imports_caffe() -> None:
    assert _crossings(NO_CAFFE, ("sparknet.caffe",)) == []


def test_the_pure_core_imports_no_spark_and_no_shell() -> None:
    shell = ("pyspark", "py4j", "sparknet.ml", "sparknet.cli", "sparknet_testing",
             "sparknet.engine.spark_runner", "sparknet.engine.spark_session",
             "sparknet.engine.trainer", "sparknet.data.sources", "sparknet.data.dataframe")
    assert _crossings(PURE_CORE, shell) == []


def test_the_library_never_imports_its_test_support() -> None:
    # sparknet_testing is not in the wheel: an import of it would fail for every user.
    everything = tuple(p.relative_to(SRC).with_suffix("").as_posix() for p in SRC.rglob("*.py"))
    assert _crossings(everything, ("sparknet_testing",)) == []


def test_no_module_imports_the_package_root() -> None:
    # The root imports nearly everything: an arrow back to it is a cycle waiting to happen.
    found = [f"{path.relative_to(SRC)}: {ast.unparse(node)}" for path in sorted(SRC.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.ImportFrom) and node.module == "sparknet" and not node.level
             or isinstance(node, ast.Import) and any(a.name == "sparknet" for a in node.names)]
    assert found == []


def test_only_the_cli_imports_the_cli() -> None:
    everything = tuple(p.name for p in SRC.iterdir() if p.name != "cli" and
                       (p.is_dir() or p.suffix == ".py"))
    assert _crossings(tuple(e.removesuffix(".py") for e in everything), ("sparknet.cli",)) == []


@pytest.mark.parametrize(("modules", "absent"), [
    ("sparknet, sparknet.engine.trainer, sparknet.simulate, sparknet.ml", "sparknet.caffe"),
    ("sparknet.engine.loop, sparknet.engine.run_dir, sparknet.engine.runner, sparknet.simulate, "
     "sparknet.settings", "pyspark"),
])
def test_importing_loads_nothing_it_should_not(modules: str, absent: str) -> None:
    code = (f"import sys, {modules}\n"
            f"loaded = [m for m in sys.modules if m == {absent!r} or "
            f"m.startswith({absent + '.'!r})]\n"
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)
