"""docs/figures/mlflow_run.png: the MLflow UI's test-accuracy chart of a small sparknet run.

Starts a real MLflow server (SQLite, local artifacts), trains LeNet on 2,048 Fashion-MNIST
examples with ``sparknet train --mlflow``, evaluating every round, and screenshots the run's
metric page in headless Chromium (a docs artifact: install it with apt-get install chromium;
scripts/bootstrap.sh does not need it). Run from the checkout: python scripts/mlflow_screenshot.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

from sparknet_testing.mlflow_server import start_mlflow_server

ROOT = Path(__file__).resolve().parents[1]
FIGURE = ROOT / "docs" / "figures" / "mlflow_run.png"


def main() -> int:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("mlflow_screenshot: needs Chromium: apt-get install chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sparknet-screenshot-") as tmp:
        server = start_mlflow_server(Path(tmp) / "mlflow")
        try:
            output = Path(tmp) / "lenet-K2"
            subprocess.run([sys.executable, "-m", "sparknet.cli.main", "train", "--output",
                            str(output), "--train-limit", "2048", "--test-limit", "512",
                            "--num-workers", "2", "--tau", "4", "--batch-size", "32",
                            "--rounds", "12", "--eval-every", "1", "--no-progress",
                            "--mlflow", server.url, "--mlflow-experiment", "sparknet"],
                           check=True)
            run = json.loads((output / "mlflow.json").read_text())
            runs = quote(json.dumps([run["run_id"]]))
            url = (f"{server.url}/#/metric?runs={runs}&metric=%22test_accuracy%22"
                   "&experiments=%5B%221%22%5D&plot_metric_keys=%5B%22test_accuracy%22%5D"
                   "&x_axis=step")
            FIGURE.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                            f"--screenshot={FIGURE}", "--window-size=1400,1000",
                            "--virtual-time-budget=15000", url], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            print(f"{FIGURE} from {url}")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
