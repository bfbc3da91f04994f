"""Creating the SparkSession sparknet runs on, after checking the master can be reached."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sparknet.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_LOCAL = re.compile(r"^local(\[(\*|\d+)(,\s*\d+)?\])?$")


def check_master(master: str) -> None:
    """Validates a master URL; for ``spark://`` masters, checks the port answers."""
    if _LOCAL.match(master) or master.startswith("local-cluster[") or master in ("yarn",):
        return
    if master.startswith("k8s://"):
        return
    if master.startswith("spark://"):
        for hostport in master.removeprefix("spark://").split(","):
            host, _, port = hostport.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"master {master!r} is not of the form spark://HOST:PORT")
            try:
                with socket.create_connection((host, int(port)), timeout=5):
                    pass
            except OSError as exc:
                raise ConfigError(f"cannot reach Spark master {master} ({exc.strerror or exc}): "
                                  "start the master or fix --master") from None
        return
    raise ConfigError(f"master {master!r} is not a Spark master URL: use local[K], "
                      "spark://HOST:PORT, yarn or k8s://...")


def check_remote(url: str) -> None:
    """Validates a Spark Connect URL ``sc://HOST:PORT[/;params]`` and checks the port answers."""
    hostport = url.removeprefix("sc://").split("/")[0].split(";")[0]
    host, _, port = hostport.rpartition(":")
    if not url.startswith("sc://") or not host or not port.isdigit():
        raise ConfigError(f"--remote {url!r} is not a Spark Connect URL: use sc://HOST:PORT "
                          "(the server's default port is 15002)")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot reach the Spark Connect server at {url} "
                          f"({exc.strerror or exc}): start it (sbin/start-connect-server.sh) "
                          "or fix --remote") from None


def remote_session(url: str, *, app_name: str = "sparknet") -> SparkSession:
    """A Spark Connect session; the server's executors run the training tasks."""
    check_remote(url)
    from pyspark.sql import SparkSession

    return SparkSession.builder.remote(url).appName(app_name).getOrCreate()


@contextlib.contextmanager
def _worker_python(master: str) -> Iterator[None]:
    """Same-machine Python workers run this interpreter, where sparknet is installed.

    PySpark reads PYSPARK_PYTHON once, when the SparkContext starts; it is restored after.
    """
    if "PYSPARK_PYTHON" in os.environ or master.startswith(("yarn", "k8s://")):
        yield
        return
    os.environ["PYSPARK_PYTHON"] = sys.executable
    try:
        yield
    finally:
        del os.environ["PYSPARK_PYTHON"]


def get_or_create_session(master: str, *, app_name: str = "sparknet",
                          extra_conf: dict[str, str] | None = None) -> SparkSession:
    """A SparkSession with settings suited to round-based training."""
    check_master(master)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(app_name)
    conf = {
        "spark.python.worker.reuse": "true",  # keeps the per-worker model cache warm
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.driver.memory": "4g",
        "spark.task.maxFailures": "4",
    }
    conf.update(extra_conf or {})
    for key, value in conf.items():
        builder = builder.config(key, value)
    with _worker_python(master):
        session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
