"""docs/architecture.md's layer table, enforced edge by edge, and no import cycle in src/.

The test reads the table itself: each layer's modules (files, or folders for every module
beneath) and the layers it may import. Every module of ``src/sparknet`` belongs to exactly one
layer; every import statement (deferred and ``TYPE_CHECKING`` ones included) that crosses
layers goes to a layer the table allows; the module graph has no cycle; no module imports a
name from the package root; and importing the engine, the simulator and the ML stage loads
neither the Caffe plug-in nor (for the pure core) PySpark.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "sparknet"
DOC = ROOT / "docs" / "architecture.md"
# The pure core: arrays, tensors and plain data; Spark's shell calls it, never the reverse.
PURE_LAYERS = ("settings", "maths", "weights on disk", "data core", "models", "worker",
               "round loop")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _layer_table() -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """(layer -> its module paths, layer -> the layers it may import) from the doc's table."""
    text = DOC.read_text()
    section = text[text.index("## Layers"):]
    paths: dict[str, list[str]] = {}
    allowed: dict[str, set[str]] = {}
    for line in section.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if set(cells[0]) <= {"-"} or cells[0] == "layer":  # the header and its rule
            continue
        layer = cells[0]
        paths[layer] = re.findall(r"`([^`]+)`", cells[1])
        allowed[layer] = {name.strip() for name in cells[2].split(",")} - {"", "—"}
    return paths, allowed


LAYER_PATHS, ALLOWED = _layer_table()


def _layer_of(module: str) -> str:
    """The layer whose most specific path holds ``module``."""
    relative = MODULES[module].relative_to(SRC).as_posix()
    best, length = "", -1
    for layer, paths in LAYER_PATHS.items():
        for path in paths:
            matches = relative.startswith(path) if path.endswith("/") else relative == path
            if matches and len(path) > length:
                best, length = layer, len(path)
    assert best, f"{relative} is in no layer of docs/architecture.md"
    return best


def _imports(module: str) -> set[str]:
    """Every sparknet module ``module`` imports (``from pkg import sub`` names ``pkg.sub``)."""
    def resolve(name: str) -> str | None:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in MODULES:
                return ".".join(parts[:end])
        return None

    found: set[str | None] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found.update(resolve(a.name) for a in node.names if a.name.startswith("sparknet"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sparknet"):
            found.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES
                         else resolve(str(node.module)) for a in node.names)
    return {name for name in found if name is not None and name != module}


GRAPH = {module: _imports(module) for module in MODULES}


def test_the_table_names_real_layers_and_files() -> None:
    for layer, names in ALLOWED.items():
        assert names <= set(LAYER_PATHS), f"{layer} may import unknown layers {names}"
    for layer, paths in LAYER_PATHS.items():
        for path in paths:
            assert (SRC / path).exists(), f"{layer}: {path} does not exist"
    assert set(PURE_LAYERS) <= set(LAYER_PATHS)


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        _layer_of(module)


def test_every_import_follows_the_layer_table() -> None:
    crossings = []
    for module, targets in GRAPH.items():
        source = _layer_of(module)
        for target in sorted(targets):
            layer = _layer_of(target)
            if layer != source and layer not in ALLOWED[source]:
                crossings.append(f"{module} ({source}) imports {target} ({layer})")
    assert crossings == []


def test_there_is_no_import_cycle() -> None:
    """Tarjan's strongly connected components over every import, deferred ones included."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(GRAPH)))
    for module in GRAPH:
        if module not in index:
            visit(module)
    assert cycles == []


def test_the_library_never_imports_its_test_support() -> None:
    """``sparknet_testing`` is not in the wheel: an import of it would fail for every user."""
    offenders = [module for module in MODULES
                 if "sparknet_testing" in MODULES[module].read_text()]
    assert offenders == []


def test_no_module_imports_the_package_root() -> None:
    assert sorted(module for module, targets in GRAPH.items() if "sparknet" in targets) == []


def test_the_pure_core_imports_no_spark() -> None:
    pure = [m for m in MODULES if _layer_of(m) in PURE_LAYERS]
    offenders = []
    for module in pure:
        for node in ast.walk(ast.parse(MODULES[module].read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{module} imports {n}" for n in names
                          if n.split(".")[0] in ("pyspark", "py4j")]
    assert offenders == []


@pytest.mark.parametrize(("modules", "absent"), [
    ("sparknet, sparknet.engine.trainer, sparknet.simulate, sparknet.ml", "sparknet.caffe"),
    ("sparknet.engine.loop, sparknet.engine.runner, sparknet.simulate, sparknet.settings",
     "pyspark"),
])
def test_importing_loads_nothing_it_should_not(modules: str, absent: str) -> None:
    code = (f"import sys, {modules}\n"
            f"loaded = [m for m in sys.modules if m == {absent!r} or "
            f"m.startswith({absent + '.'!r})]\n"
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)
