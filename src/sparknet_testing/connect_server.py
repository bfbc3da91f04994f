"""A Spark Connect server on 127.0.0.1, started with PySpark's own launcher.

``sbin/start-connect-server.sh --wait`` runs the server in the foreground of its own process
group (master ``local[2,4]`` by default: two task slots, four tries per task), with its logs,
local directories and Python workers under one folder (its Python workers find the fault
plans of ``sparknet_testing.faults`` in ``fault_dir``). Clients connect with
``SparkSession.builder.remote(server.url)``; ``stop()`` ends every process it started.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from sparknet_testing.standalone import (
    _LOG4J,
    FAULT_DIR_ENV,
    ClusterError,
    StandaloneCluster,
    free_port,
    spark_home,
)


class ConnectServer(StandaloneCluster):
    """A running Spark Connect server; ``url`` is its ``sc://`` address."""

    @property
    def url(self) -> str:
        return self.master_url


def start_connect_server(root: str | Path, *, master: str = "local[2,4]",
                         driver_memory: str = "2g", timeout: float = 120.0,
                         conf: dict[str, str] | None = None) -> ConnectServer:
    """Starts the server (with ``conf``'s Spark settings) and waits until its port answers."""
    root = Path(root).resolve()
    conf_dir = root / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "log4j2.properties").write_text(_LOG4J)
    port = free_port()
    server = ConnectServer(root=root, master_url=f"sc://127.0.0.1:{port}", web_url="")
    server.fault_dir.mkdir(exist_ok=True)
    home = spark_home()
    env = dict(os.environ)
    env.update({"SPARK_HOME": str(home), "SPARK_CONF_DIR": str(conf_dir),
                "SPARK_LOCAL_DIRS": str(root / "local"), "SPARK_LOCAL_IP": "127.0.0.1",
                "SPARK_LOG_DIR": str(root / "logs"), "SPARK_PID_DIR": str(root),
                "PYSPARK_PYTHON": sys.executable, FAULT_DIR_ENV: str(server.fault_dir)})
    command = [str(home / "sbin" / "start-connect-server.sh"), "--wait", "--master", master,
               "--driver-memory", driver_memory,
               "--conf", f"spark.connect.grpc.binding.port={port}",
               "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
               "--conf", "spark.ui.enabled=false", "--conf", "spark.python.worker.reuse=true"]
    for key, value in (conf or {}).items():
        command += ["--conf", f"{key}={value}"]
    with open(root / "server.log", "wb") as log:
        server.processes.append(subprocess.Popen(
            command, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True))
    try:
        _wait_for_port(server, port, timeout)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def connect_server(root: str | Path, *, master: str = "local[2,4]", driver_memory: str = "2g",
                   conf: dict[str, str] | None = None) -> Iterator[ConnectServer]:
    server = start_connect_server(root, master=master, driver_memory=driver_memory, conf=conf)
    try:
        yield server
    finally:
        server.stop()


def _wait_for_port(server: ConnectServer, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.processes[0].poll() is not None:
            raise ClusterError(f"the Spark Connect server exited with "
                               f"{server.processes[0].returncode}; see {server.root}/server.log")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.25)  # polling the port, not synchronising on time
    raise ClusterError(f"timed out after {timeout:.0f} s waiting for the Spark Connect server; "
                       f"see {server.root}/server.log")
