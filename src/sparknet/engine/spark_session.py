"""Creating the SparkSession sparknet runs on, after checking the master can be reached."""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import urlparse

from sparknet.errors import ConfigError, TrainingError
from sparknet.weights_dir import replace_link

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_LOCAL = re.compile(r"^local(\[(\*|\d+)(,\s*\d+)?\])?$")


def check_master(master: str) -> None:
    """Validates a master URL before Spark starts; for network masters, checks the port answers."""
    local = _LOCAL.match(master)
    if local:
        threads, failures = local.group(2), (local.group(3) or "").strip(", ")
        if threads == "0" or failures == "0":
            what = "threads" if threads == "0" else "task attempts"
            raise ConfigError(f"master {master!r} asks for zero {what}: use local[K] with "
                              "K >= 1 (local[K,4] retries each failed task)")
        return
    if master.startswith("local-cluster["):
        return
    if master == "yarn":
        if not (os.environ.get("HADOOP_CONF_DIR") or os.environ.get("YARN_CONF_DIR")):
            raise ConfigError("master 'yarn' needs HADOOP_CONF_DIR or YARN_CONF_DIR set to the "
                              "folder of the cluster's configuration files")
        return
    if master.startswith("k8s://"):
        api = master.removeprefix("k8s://")
        parsed = urlparse(api if "://" in api else f"https://{api}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(f"master {master!r} is not of the form k8s://https://HOST:PORT "
                              "(the Kubernetes API server)")
        _check_port(master, parsed.hostname,
                    parsed.port or (443 if parsed.scheme == "https" else 80))
        return
    if master.startswith("spark://"):
        for hostport in master.removeprefix("spark://").split(","):
            host, _, port = hostport.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"master {master!r} is not of the form spark://HOST:PORT")
            _check_port(master, host, int(port))
        return
    raise ConfigError(f"master {master!r} is not a Spark master URL: use local[K], "
                      "spark://HOST:PORT, yarn or k8s://...")


def _check_port(master: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot reach Spark master {master} ({exc.strerror or exc}): "
                          "start the master or fix --master") from None


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


def remote_session(url: str, *, app_name: str = "sparknet",
                   timeout: float = 120.0) -> SparkSession:
    """A Spark Connect session; the server's executors run the training tasks.

    The server must answer within ``timeout`` seconds (a listener that accepts connections
    and never answers is one line, not a silent wait); afterwards the client's calls other
    than running a job have that deadline, and all its calls together retry a server that
    went away for ``timeout`` seconds, not Spark's 10 minutes per call
    (``engine.connect_deadlines``).
    """
    check_remote(url)
    import warnings

    from pyspark import SparkContext
    from pyspark.sql.connect.session import SparkSession as RemoteSession

    from sparknet.engine.connect_deadlines import bound_client, channel

    # PySpark warns when its retries of a lost server run out, then raises: the raised error
    # becomes sparknet's one line, the warning would be two more.
    warnings.filterwarnings("ignore", message=r"\[RETRIES_EXCEEDED\]")

    if SparkContext._active_spark_context is not None:
        raise ConfigError("this process already runs a classic Spark session, which a Spark "
                          "Connect session cannot join: connect from a fresh process")

    # Made directly, so that its client has the deadlines before its first call (the
    # builder's getOrCreate calls the server at once); the builder then finds it as the
    # default session and sets the application name.
    session = RemoteSession(connection=channel(url, timeout))
    bound_client(session, timeout)
    RemoteSession._set_default_and_active_session(session)
    failed: list[BaseException] = []

    def connect() -> None:
        try:
            RemoteSession.builder.appName(app_name).getOrCreate()  # finds ``session``
            session.version  # noqa: B018 - the first call that needs the server's answer
        except BaseException as exc:  # noqa: BLE001 - reported below, in this thread
            failed.append(exc)

    thread = threading.Thread(target=connect, name="sparknet-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    answered = not thread.is_alive()
    said = list(failed) if answered else []  # what the server said within the timeout
    if answered and not said:
        # What PySpark's builder sets for a remote session: functions (F.col, ...) then build
        # Connect columns.
        os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
        return cast("SparkSession", session)
    # Closed without a call to the server: exiting must not wait for it either. Closing the
    # channel makes the connecting thread's next try fail at once; stop() runs beside it, as
    # it takes a lock that thread may hold while it backs off between tries (up to 5 s).
    session.release_session_on_close = False
    session.client.close()
    threading.Thread(target=session.stop, name="sparknet-connect-stop", daemon=True).start()
    silent = bool(said) and any(f"StatusCode.{code}" in str(said[0])
                                for code in ("DEADLINE_EXCEEDED", "UNAVAILABLE"))
    if said and not silent:
        first = (str(said[0]).strip().splitlines() or [type(said[0]).__name__])[0]
        raise ConfigError(f"the Spark Connect server at {url} did not start a session "
                          f"({first[:200]}): check the server's log, or raise "
                          "--start-timeout") from None
    raise ConfigError(f"the Spark Connect server at {url} did not answer within {timeout:.0f} s "
                      "(it accepts connections but says nothing): check that it is a Spark "
                      "Connect server and running, or raise --start-timeout")


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


# What sparknet sets on the sessions it starts; a Spark Connect server or a cluster a user
# starts should have the ones marked (docs/engine.md, "A cheaper round job").
SESSION_SETTINGS = {
    "spark.python.worker.reuse": "true",  # keeps the per-worker model cache warm
    # A round's state and results are dense float32 weights: LZ4 gains nothing on them and
    # costs time on both ends (measured in benchmarks/round_overhead.py).
    "spark.broadcast.compress": "false",
    # Results up to this size come back with the task's status message instead of being
    # stored in the block manager and fetched by a second request (Spark's default: 1 MiB).
    "spark.task.maxDirectResultSize": "64m",
    # Workers of cancelled tasks end without a BrokenPipeError traceback on the terminal, and
    # a reused worker takes its next task without a full garbage collection first.
    "spark.python.daemon.module": "sparknet.engine.quiet_daemon",
}


def get_or_create_session(master: str, *, app_name: str = "sparknet",
                          extra_conf: dict[str, str] | None = None,
                          log_file: Path | None = None,
                          tasks: int | None = None) -> SparkSession:
    """A SparkSession with settings suited to round-based training.

    With ``log_file``, the driver JVM's log goes there instead of the terminal (the command
    line's choice: its own messages are the one-line ones). With ``tasks`` (a round's K) and
    dynamic allocation on in Spark's own settings (``spark-defaults.conf``,
    ``PYSPARK_SUBMIT_ARGS``), the executors a round needs stay requested
    (``elastic_settings``).
    """
    check_master(master)
    from pyspark.sql import SparkSession

    conf = {
        **SESSION_SETTINGS,
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.driver.memory": "4g",
        "spark.task.maxFailures": "4",
    }
    if log_file is not None:
        conf["spark.driver.extraJavaOptions"] = (
            f"-Dlog4j2.configurationFile=file:{_log_config(log_file)}")
    conf.update(extra_conf or {})
    with _worker_python(master):
        if tasks is not None and not _LOCAL.match(master):
            conf.update(elastic_settings(_launch(master, app_name, conf), tasks=tasks))
        builder = SparkSession.builder.master(master).appName(app_name)
        for key, value in conf.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def elastic_settings(conf: Mapping[str, str], *, tasks: int) -> dict[str, str]:
    """What a session with dynamic allocation needs so that executors for a round's ``tasks``
    stay requested: ``spark.dynamicAllocation.minExecutors``, unless the user set it.

    Spark's allocation manager asks for executors only once a task has waited
    ``spark.dynamicAllocation.schedulerBacklogTimeout``, which it counts in whole seconds
    (at least 1 s); a round's waiting task waits a fraction of that, so without a floor no
    executor is ever asked for, and a worker that joins the cluster gets none. The floor is
    what the manager asks for when it does see the backlog: ceil(tasks x
    executorAllocationRatio / tasks per executor), within maxExecutors.
    """
    if conf.get("spark.dynamicAllocation.enabled", "false").strip().lower() != "true" or \
            "spark.dynamicAllocation.minExecutors" in conf:
        return {}
    per_executor = max(1, int(conf.get("spark.executor.cores", "1")) //
                       int(conf.get("spark.task.cpus", "1")))
    ratio = float(conf.get("spark.dynamicAllocation.executorAllocationRatio", "1"))
    executors = math.ceil(tasks * ratio / per_executor)
    if "spark.dynamicAllocation.maxExecutors" in conf:
        executors = min(executors, int(conf["spark.dynamicAllocation.maxExecutors"]))
    return {"spark.dynamicAllocation.minExecutors": str(max(1, executors))}


def _launch(master: str, app_name: str, conf: dict[str, str]) -> dict[str, str]:
    """Starts the driver JVM with ``conf`` (as the builder would) and returns Spark's settings
    as it sees them: ``conf`` with spark-defaults.conf and PYSPARK_SUBMIT_ARGS."""
    from pyspark import SparkConf, SparkContext

    if SparkContext._active_spark_context is None:
        SparkContext._ensure_initialized(conf=SparkConf(loadDefaults=False).setMaster(master)
                                         .setAppName(app_name).setAll(list(conf.items())))
    return dict(SparkConf().getAll())


def _log_config(log_file: Path) -> Path:
    """A log4j2 configuration that writes every JVM log line to ``log_file``."""
    replace_link(Path(log_file))  # never log through a link out of the run directory
    folder = Path(tempfile.mkdtemp(prefix="sparknet-log4j2-"))
    config = folder / "log4j2.properties"
    config.write_text("\n".join([
        "rootLogger.level = warn",
        "rootLogger.appenderRef.file.ref = file",
        "appender.file.type = File",
        "appender.file.name = file",
        f"appender.file.fileName = {Path(log_file).resolve()}",
        "appender.file.layout.type = PatternLayout",
        "appender.file.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex",
        ""]))
    return config


def start_session(master: str, *, app_name: str, timeout: float,
                  log_file: Path | None = None, tasks: int | None = None) -> SparkSession:
    """``get_or_create_session`` that gives up after ``timeout`` seconds, in one line.

    A master that accepts connections but never registers the application, or a cluster
    with no worker able to host an executor, would otherwise hang or end in a JVM traceback.
    """
    outcome: dict[str, object] = {}

    def create() -> None:
        try:
            outcome["session"] = get_or_create_session(master, app_name=app_name,
                                                       log_file=log_file, tasks=tasks)
        except Exception as exc:  # noqa: BLE001 - reported below as one line
            outcome["error"] = exc

    starter = threading.Thread(target=create, name="sparknet-session-start", daemon=True)
    starter.start()
    starter.join(timeout)
    if starter.is_alive():
        raise TrainingError(f"Spark did not start with master {master} within {timeout:.0f} s: "
                            "check that it is a running Spark master (its web UI, port 8080, "
                            "lists it as ALIVE), or raise --start-timeout")
    if "error" in outcome:
        raise TrainingError(f"Spark could not start with master {master} "
                            f"({_first_line(outcome['error'])}): check that the master is "
                            "running and answers (its web UI, port 8080)"
                            + (f"; the JVM's log is in {log_file}" if log_file else ""))
    session = cast("SparkSession", outcome["session"])
    if not _LOCAL.match(master):
        _wait_for_executors(session, master, deadline=time.monotonic() + timeout)
    return session


def _wait_for_executors(session: SparkSession, master: str, *, deadline: float) -> None:
    """Returns once one executor has registered; a cluster with none is one line, not a hang."""
    status = session.sparkContext._jsc.sc().getExecutorMemoryStatus()
    while status.size() <= 1:  # the driver's own block manager is always listed
        if time.monotonic() > deadline:
            session.stop()
            raise TrainingError(
                f"no executor registered with master {master} in time: no worker has the free "
                "cores and memory this application asks for; check the workers on the master's "
                "web UI (port 8080), spark.executor.cores/memory, or raise --start-timeout")
        time.sleep(0.5)
        status = session.sparkContext._jsc.sc().getExecutorMemoryStatus()


def _first_line(exc: object) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    java = [line for line in lines if "Exception:" in line and not line.startswith("at ")]
    return (java[0] if java else lines[0] if lines else type(exc).__name__).lstrip(": ")[:300]
