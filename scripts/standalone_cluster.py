#!/usr/bin/env python
"""Start or stop a Spark standalone cluster on 127.0.0.1 (the one the cluster tests use).

    python scripts/standalone_cluster.py start --root /tmp/sparknet-cluster [--workers 2]
        starts a master and the workers (1 core each) from PySpark's own Spark, prints the
        master URL, and keeps running until Ctrl-C or SIGTERM, then stops every process.
    python scripts/standalone_cluster.py stop --root /tmp/sparknet-cluster
        stops a cluster started with that root (and anything it left behind).

Then train on it, e.g.:
    sparknet train --master spark://127.0.0.1:PORT --train-limit 4000 --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import psutil

from sparknet_testing.standalone import start_cluster, stop_leftovers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--root", type=Path, default=Path("/tmp/sparknet-cluster"),
                        help="folder for logs, work and local dirs (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1, help="cores per worker")
    parser.add_argument("--memory", default="2g", help="memory per worker")
    args = parser.parse_args()
    info = args.root / "cluster.json"

    if args.action == "stop":
        if info.is_file():
            pid = json.loads(info.read_text())["pid"]
            with contextlib.suppress(psutil.Error):
                starter = psutil.Process(pid)
                starter.terminate()  # it stops its cluster on the way out
                starter.wait(timeout=60)
        count = stop_leftovers(args.root)
        info.unlink(missing_ok=True)
        print(f"stopped the cluster in {args.root} ({count} processes)")
        return 0

    cluster = start_cluster(args.root, num_workers=args.workers, cores_per_worker=args.cores,
                            worker_memory=args.memory)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        info.write_text(json.dumps({"pid": os.getpid(), "master_url": cluster.master_url,
                                    "web_url": cluster.web_url}))
        print(f"master {cluster.master_url} (web UI {cluster.web_url}), "
              f"{args.workers} workers; logs in {cluster.root}. Ctrl-C stops it.", flush=True)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
        info.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
