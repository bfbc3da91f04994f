"""A real MLflow tracking server on 127.0.0.1: a SQLite backend and a local artifact folder.

``mlflow server`` runs in its own process group (the server and its workers), so ``kill()``
(a server that goes away mid-run) and ``stop()`` end every process it started and no other.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sparknet_testing.standalone import free_port


@dataclass
class MlflowServer:
    root: Path
    url: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def kill(self) -> None:
        """Ends the server at once (SIGKILL to its process group), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def start_mlflow_server(root: str | Path, *, timeout: float = 120.0) -> MlflowServer:
    """Starts ``mlflow server`` and waits until its health endpoint answers."""
    root = Path(root).resolve()
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = MlflowServer(root=root, url=f"http://127.0.0.1:{port}")
    command = [sys.executable, "-m", "mlflow", "server",
               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
               "--default-artifact-root", str(root / "artifacts"),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(root / "server.log", "wb") as log:
        server.process = subprocess.Popen(command, cwd=root, env=env, stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"mlflow server exited: see {root / 'server.log'}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.25)  # polling a port that is not open yet; no event to wait on
    server.stop()
    raise RuntimeError(f"mlflow server did not answer in {timeout:.0f} s: see "
                       f"{root / 'server.log'}")
