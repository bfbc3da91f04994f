"""Appends sparknet runs with an injected delay S to a head-to-head results file.

Run 2 of docs/head_to_head.md: after the S = 0 contenders, sparknet (Nesterov, lr 0.01) with
S = 0.1 and 1 s, using the same functions as head_to_head.py:

    .venv/bin/python benchmarks/head_to_head_sparknet_delays.py
"""
import json
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import head_to_head as h

from sparknet.data.sources import fashion_mnist_data
from sparknet.engine.spark_session import get_or_create_session

path = h.RESULTS / "head_to_head_run2.json"
report = json.loads(path.read_text())
spark = get_or_create_session("local[2]", app_name="sparknet-head-to-head")
shards = fashion_mnist_data(spark.sparkContext, num_workers=2, seed=h.SEED)
free = h.Limits(interval=0, max_samples=400_000, max_seconds=600)
for delay in (0.1, 1.0):
    run = h.sparknet_run(shards, lr=0.01, outer="nesterov", delay=delay, limits=free)
    row = h.summarise("sparknet nesterov", 0.01, delay, run)
    report["runs"].append(row)
    path.write_text(json.dumps(report, indent=1))
    print(time.strftime("%H:%M:%S"), delay, row["time_to_target_s"], row["tau_decisions"],
          flush=True)
report["command"] += " ; then sparknet S=0.1 and S=1 appended by the same functions (sparknet_run)"
path.write_text(json.dumps(report, indent=1))
