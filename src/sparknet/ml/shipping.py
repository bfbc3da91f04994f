"""Ships a user's factory module to the executors before the first job, after checking that
the executors' Python can import sparknet at all.

A network or loss factory ``package.module:function`` that the driver imports from a local
file (a notebook's folder, a project checkout) is usually not importable on the executors.
``ship_user_modules`` adds the module's file (or its top-level package, zipped) to the
session the way ``--py-files`` / ``SparkContext.addPyFile`` would, once per session.
"""

from __future__ import annotations

import importlib
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from sparknet.data.placement import is_connect
from sparknet.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_SHIPPED: set[tuple[str, str]] = set()
_CHECKED: set[str] = set()  # sessions whose executors' Python imports sparknet


def _installed_roots() -> list[Path]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    return [Path(p).resolve() for p in roots]


def module_source(ref: str) -> Path | None:
    """The file or package folder to ship for ``module:function``; None if installed."""
    top = ref.partition(":")[0].split(".")[0]
    if top == "sparknet" or top in sys.builtin_module_names:
        return None
    module = importlib.import_module(top)
    file = getattr(module, "__file__", None)
    if file is None:
        return None
    path = Path(file).resolve()
    if any(path.is_relative_to(root) for root in _installed_roots()):
        return None
    return path.parent if path.name == "__init__.py" else path


def ship_user_modules(spark: SparkSession, refs: list[str]) -> list[Path]:
    """Adds the local modules of these factory references to ``spark``; returns what it sent."""
    sent = []
    for ref in refs:
        if ":" not in ref or ref.startswith("caffe:") or ref.startswith("callable:"):
            continue
        source = module_source(ref)
        if source is None or (_session_key(spark), str(source)) in _SHIPPED:
            continue
        payload = _zipped(source) if source.is_dir() else source
        try:
            if is_connect(spark):
                spark.addArtifacts(str(payload), pyfile=True)
            else:
                spark.sparkContext.addPyFile(str(payload))
        except Exception as exc:  # noqa: BLE001 - any failure gets the one-line fix
            raise ConfigError(f"cannot ship {source} (the module of {ref!r}) to the executors "
                              f"({str(exc).splitlines()[0][:200]}): make it importable there, "
                              f"e.g. spark-submit --py-files {source}") from None
        _SHIPPED.add((_session_key(spark), str(source)))
        sent.append(payload)
    return sent


def _session_key(spark: SparkSession) -> str:
    if is_connect(spark):
        return f"connect:{spark.session_id}"  # type: ignore[attr-defined]
    return f"classic:{spark.sparkContext.applicationId}"


def _zipped(package: Path) -> Path:
    """A zip of a package folder (with its name as the top folder), for addPyFile."""
    target = Path(tempfile.mkdtemp(prefix="sparknet-pyfiles-")) / f"{package.name}.zip"
    with zipfile.ZipFile(target, "w") as archive:
        for file in sorted(package.rglob("*.py")):
            archive.write(file, file.relative_to(package.parent))
    return target


def _probe(_: object) -> tuple[bool, str]:
    """Runs on an executor: whether its Python imports sparknet, and which Python it is.
    (Pickled by value by ``check_executor_python``: it must not need sparknet to load.)"""
    import importlib.util
    import sys as executor_sys

    return importlib.util.find_spec("sparknet") is not None, executor_sys.executable


def _probe_text(_: object) -> list[str]:
    found, python = _probe(_)
    return ["yes" if found else "no", python]


def check_executor_python(spark: SparkSession) -> None:
    """One tiny job, once per session, before sparknet's first: an executor Python without
    sparknet (e.g. the system Python of a venv that was not activated) is one line naming the
    fix, not a wall of ``No module named 'sparknet'`` from every task."""
    key = _session_key(spark)
    if key in _CHECKED:
        return
    fix = ("set spark.pyspark.python (or PYSPARK_PYTHON) to a Python that has sparknet "
           f"installed, e.g. {sys.executable}")
    try:
        found, python = _run_probe(spark)
    except Exception as exc:  # noqa: BLE001 - the probe's own failure is the same problem
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ConfigError(f"the executors' Python cannot run a one-row check ({first}): "
                          f"{fix}") from None
    if not found:
        raise ConfigError(f"the executors' Python ({python}) cannot import sparknet: {fix}")
    _CHECKED.add(key)


def _run_probe(spark: SparkSession) -> tuple[bool, str]:
    from pyspark import cloudpickle

    # By value: an executor without sparknet cannot import this module to find the function.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        if is_connect(spark):
            from pyspark.sql.functions import udf

            probe = udf(_probe_text, "array<string>")
            row = spark.range(1, numPartitions=1).select(probe("id")).first()
            assert row is not None
            return row[0][0] == "yes", str(row[0][1])
        found, python = spark.sparkContext.parallelize([0], 1).map(_probe).first()
        return bool(found), str(python)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
