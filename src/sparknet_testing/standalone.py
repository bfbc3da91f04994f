"""A Spark standalone cluster on 127.0.0.1 started from the Spark that PySpark ships.

One master and ``num_workers`` workers, each a separate JVM in its own process group, on free
ports, with their work and local directories under one folder. ``stop()`` ends every process
the cluster started, executors and their Python daemons included, also after a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from sparknet.errors import SparknetError
from sparknet_testing.netns import VirtualHosts

# Executors inherit the worker's environment; this tells fault-injecting test models where
# their plan files live (see sparknet_testing.faults).
FAULT_DIR_ENV = "SPARKNET_FAULT_DIR"
EXECUTOR_MAIN = "org.apache.spark.executor.CoarseGrainedExecutorBackend"

_LOG4J = """\
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss.SSS} %p %c{1}: %m%n
"""


class ClusterError(SparknetError, RuntimeError):
    """The standalone cluster could not be started."""


def spark_home() -> Path:
    """The Spark distribution inside the installed ``pyspark`` package."""
    import pyspark

    home = Path(pyspark.__file__).parent
    if not (home / "bin" / "spark-class").is_file():
        raise ClusterError(f"{home} has no bin/spark-class: reinstall pyspark from PyPI")
    return home


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class StandaloneCluster:
    """A running master and its workers; use as a context manager or call ``stop()``."""

    root: Path
    master_url: str
    web_url: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)  # by index

    @property
    def fault_dir(self) -> Path:
        return self.root / "faults"

    def local_dirs(self) -> list[Path]:
        """Each worker's SPARK_LOCAL_DIRS (executors' block manager and shuffle files)."""
        return sorted(self.root.glob("worker-*/local"))

    def work_dirs(self) -> list[Path]:
        """Each worker's work directory (one folder per application and executor)."""
        return sorted(self.root.glob("worker-*/work"))

    def state(self) -> dict[str, object]:
        """The master's JSON status (workers, applications)."""
        with urllib.request.urlopen(f"{self.web_url}/json/", timeout=5) as reply:
            return dict(json.loads(reply.read()))

    def executor_processes(self) -> list[psutil.Process]:
        """The executor JVMs of the running applications."""
        found = []
        for proc in self.descendants():
            with contextlib.suppress(psutil.Error):
                if EXECUTOR_MAIN in " ".join(proc.cmdline()):
                    found.append(proc)
        return found

    def descendants(self) -> list[psutil.Process]:
        """Every live process started by this cluster (by ancestry or by working directory)."""
        found: dict[int, psutil.Process] = {}
        for popen in self.processes:
            with contextlib.suppress(psutil.Error):
                parent = psutil.Process(popen.pid)
                found[parent.pid] = parent
                for child in parent.children(recursive=True):
                    found[child.pid] = child
        root = str(self.root)
        for proc in psutil.process_iter(["cwd"]):
            # Python daemons move to their own process group; their cwd is the executor's.
            cwd = proc.info.get("cwd") or ""
            if cwd.startswith(root) and proc.pid != os.getpid():
                found[proc.pid] = proc
        return list(found.values())

    def stop(self) -> None:
        """Stops the workers, then the master, then kills anything they left behind."""
        for popen in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for popen in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        leftovers = self.descendants()
        for popen in self.processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(leftovers, timeout=10)
        for popen in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=10)

    def add_worker(self, *, host: str = "127.0.0.1", cores: int = 1, memory: str = "2g",
                   daemon_opts: str = "", timeout: float = 120.0) -> int:
        """Starts one more worker against the running master (a host joining the cluster
        mid-run); returns its index once the master lists it as alive."""
        index = len(self.workers)
        alive = int(self.state().get("aliveworkers", 0))  # type: ignore[call-overload]
        self.workers.append(_launch_worker(self, index, host=host, cores=cores, memory=memory,
                                           daemon_opts=daemon_opts))
        _wait(self, lambda s: s.get("aliveworkers") == alive + 1, timeout,
              f"worker {index} to register")
        return index

    def decommission_worker(self, index: int) -> None:
        """Asks worker ``index`` to leave gracefully: SIGPWR, as ``sbin/decommission-worker.sh``
        sends (the worker needs ``spark.decommission.enabled=true`` in its options)."""
        worker = psutil.Process(self.workers[index].pid)
        if "org.apache.spark.deploy.worker.Worker" not in " ".join(worker.cmdline()):
            raise ClusterError(f"process {worker.pid} is not worker {index}'s JVM")
        worker.send_signal(signal.SIGPWR)

    def launched_by_worker(self, index: int) -> list[psutil.Process]:
        """Every live process worker ``index`` launched: its executor JVMs and their Python
        daemons and workers (the worker JVM itself not included)."""
        try:
            return list(psutil.Process(self.workers[index].pid).children(recursive=True))
        except psutil.Error:
            return []

    def worker_index_of(self, proc: psutil.Process) -> int:
        """Which worker launched ``proc`` (an executor JVM or one of its Python workers)."""
        pids = {popen.pid: index for index, popen in enumerate(self.workers)}
        current: psutil.Process | None = proc
        while current is not None:
            if current.pid in pids:
                return pids[current.pid]
            current = current.parent()
        raise LookupError(f"process {proc.pid} does not run under a worker of this cluster")

    def worker_state(self, index: int) -> str:
        """The master's word for worker ``index``: ALIVE, DECOMMISSIONED, DEAD, ..."""
        port = self._worker_ports().get(index)
        workers = self.state().get("workers")
        for worker in workers if isinstance(workers, list) else []:
            if port is not None and str(worker.get("webuiaddress", "")).endswith(f":{port}"):
                return str(worker.get("state"))
        return "UNKNOWN"

    def _worker_ports(self) -> dict[int, int]:
        ports = {}
        for index, popen in enumerate(self.workers):
            with contextlib.suppress(psutil.Error, ValueError, IndexError):
                args = psutil.Process(popen.pid).cmdline()
                ports[index] = int(args[args.index("--webui-port") + 1])
        return ports

    def __enter__(self) -> StandaloneCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_cluster(root: str | Path, *, num_workers: int = 2, cores_per_worker: int = 1,
                  worker_memory: str = "2g", timeout: float = 120.0,
                  hosts: VirtualHosts | None = None,
                  daemon_opts: str = "",
                  worker_hosts: Sequence[str] = ()) -> StandaloneCluster:
    """Starts a master and ``num_workers`` workers on 127.0.0.1 and waits until all registered.

    With ``hosts``, the master listens on the bridge address and worker ``i`` runs in the
    network namespace ``hosts.namespace(i)`` (a separate host on a virtual link).
    ``worker_hosts`` gives worker ``i`` the loopback address ``worker_hosts[i]`` (e.g.
    127.0.0.2) instead: Spark then sees it as another host, which speculation needs (it never
    runs a task's copy on a host that already runs it).
    ``daemon_opts`` are JVM options for the master and the workers (e.g. a shorter
    ``spark.worker.timeout``, which both must agree on).
    Everything the cluster writes goes under ``root``; on any failure the started processes
    are stopped before the error propagates.
    """
    root = Path(root).resolve()
    conf_dir = root / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "log4j2.properties").write_text(_LOG4J)
    (root / "faults").mkdir(exist_ok=True)
    master_host = hosts.host_ip if hosts is not None else "127.0.0.1"
    port, web_port = free_port(), free_port()
    cluster = StandaloneCluster(root=root, master_url=f"spark://{master_host}:{port}",
                                web_url=f"http://{master_host}:{web_port}")
    try:
        cluster.processes.append(_launch(
            root, "master", conf_dir,
            ["org.apache.spark.deploy.master.Master", "--host", master_host, "--port",
             str(port), "--webui-port", str(web_port)], local_dir=root / "master" / "local",
            local_ip=master_host, extra_env={"SPARK_MASTER_OPTS": daemon_opts}))
        _wait(cluster, lambda s: s.get("status") == "ALIVE", timeout, "the master to start")
        for index in range(num_workers):
            if hosts is not None:
                cluster.workers.append(_launch_worker(
                    cluster, index, host=hosts.worker_ip(index), cores=cores_per_worker,
                    memory=worker_memory, daemon_opts=daemon_opts,
                    prefix=hosts.command_prefix(index)))
            else:
                host = worker_hosts[index] if index < len(worker_hosts) else "127.0.0.1"
                cluster.workers.append(_launch_worker(
                    cluster, index, host=host, cores=cores_per_worker, memory=worker_memory,
                    daemon_opts=daemon_opts))
        _wait(cluster, lambda s: s.get("aliveworkers") == num_workers, timeout,
              f"{num_workers} workers to register")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _launch_worker(cluster: StandaloneCluster, index: int, *, host: str, cores: int,
                   memory: str, daemon_opts: str,
                   prefix: list[str] | None = None) -> subprocess.Popen[bytes]:
    home = cluster.root / f"worker-{index}"
    (home / "work").mkdir(parents=True, exist_ok=True)
    popen = _launch(
        cluster.root, f"worker-{index}", cluster.root / "conf",
        ["org.apache.spark.deploy.worker.Worker", "--host", host, "--cores", str(cores),
         "--memory", memory, "--work-dir", str(home / "work"), "--webui-port",
         str(free_port()), cluster.master_url], local_dir=home / "local", local_ip=host,
        prefix=prefix, extra_env={"SPARK_WORKER_OPTS": daemon_opts})
    cluster.processes.append(popen)
    return popen


@contextlib.contextmanager
def standalone_cluster(root: str | Path, *, num_workers: int = 2, cores_per_worker: int = 1,
                       worker_memory: str = "2g") -> Iterator[StandaloneCluster]:
    """``with standalone_cluster(tmp) as cluster:`` ... the cluster is stopped on exit."""
    cluster = start_cluster(root, num_workers=num_workers, cores_per_worker=cores_per_worker,
                            worker_memory=worker_memory)
    try:
        yield cluster
    finally:
        cluster.stop()


def stop_leftovers(root: str | Path) -> int:
    """Kills every process whose working directory is under ``root`` (a cluster's folder);
    returns how many there were. For clusters whose starting process is gone."""
    cluster = StandaloneCluster(root=Path(root).resolve(), master_url="", web_url="")
    leftovers = cluster.descendants()
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(leftovers, timeout=15)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=10)
    return len(leftovers)


def _launch(root: Path, name: str, conf_dir: Path, args: list[str], *,
            local_dir: Path, local_ip: str = "127.0.0.1", prefix: list[str] | None = None,
            extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    local_dir.mkdir(parents=True, exist_ok=True)
    home = spark_home()
    env = dict(os.environ)
    env.update({
        "SPARK_HOME": str(home), "SPARK_CONF_DIR": str(conf_dir),
        "SPARK_LOCAL_DIRS": str(local_dir), "SPARK_LOCAL_IP": local_ip,
        "SPARK_LOG_DIR": str(root / "logs"), "SPARK_PID_DIR": str(root),
        "PYSPARK_PYTHON": sys.executable, FAULT_DIR_ENV: str(root / "faults"),
        **(extra_env or {}),
    })
    log = open(root / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it from here
    try:
        # Own process group: stop() can signal the JVM and the executors it launched at once.
        return subprocess.Popen([*(prefix or []), str(home / "bin" / "spark-class"), *args],
                                cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()


def _wait(cluster: StandaloneCluster, ready: Callable[[dict[str, object]], bool],
          timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        for popen in cluster.processes:
            if popen.poll() is not None:
                raise ClusterError(f"a cluster process exited with {popen.returncode} while "
                                   f"waiting for {what}; see the logs in {cluster.root}")
        try:
            if ready(cluster.state()):
                return
        except OSError as exc:
            last_error = str(exc)
        time.sleep(0.25)  # polling the master's status page, not synchronising on time
    raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what} ({last_error}); "
                       f"see the logs in {cluster.root}")
