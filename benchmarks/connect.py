"""Spark Connect against a classic session: per-round overhead and samples/s, and how large a
network the round's state transport carries, at what cost per round.

Each phase runs in its own process (a Connect client switches PySpark into Connect mode for the
whole process): ``classic`` on ``local[2]``, ``connect`` through a Spark Connect server on
``local[2]`` started with PySpark's own launcher, and one ``size`` phase per state size, each
against a fresh server (4 GiB of driver memory, as the classic session has). Same
data (the full Fashion-MNIST training set), LeNet, K = 2, tau = 50; the first rounds warm up.

    .venv/bin/python benchmarks/connect.py [--rounds 8] [--sizes-mb 16,32,64,96,140]
        [--file-mb 96,256]   (empty lists: the size table of the last run is kept)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command, machine, machine_line, write_report  # noqa: E402

WARMUP_ROUNDS = 2


def wide_mlp(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def hidden_for(megabytes: float) -> int:
    return max(1, int(megabytes * 2**20 / 4 / (784 + 1 + 10)))


def session(remote: str | None) -> Any:
    from sparknet.engine.spark_session import get_or_create_session, remote_session

    return remote_session(remote) if remote else get_or_create_session("local[2]")


def throughput(spark: Any, rounds: int, overlap: str = "off") -> dict[str, Any]:
    """LeNet, K = 2, tau = 50 on 60,000 examples: per-round figures after the warm-up."""
    from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
    from sparknet.data.sources import fashion_mnist_data
    from sparknet.engine.trainer import train

    data = fashion_mnist_data(spark, num_workers=2, seed=0, test_limit=1)
    config = TrainConfig(outer=OuterConfig(name="average"), model="lenet", checkpoint_every=0,
                         engine=EngineConfig(num_workers=2, tau=50, batch_size=64,
                                             rounds=WARMUP_ROUNDS + rounds, eval_every=0,
                                             overlap=overlap),  # type: ignore[arg-type]
                         optimizer=OptimizerConfig(momentum_policy="reset", lr=0.01))
    try:
        result = train(data, config=config, progress=False)
    finally:
        data.release()
    timed = result.metrics[WARMUP_ROUNDS:]
    seconds = sum(r["round_seconds"] for r in timed)
    return {"samples_per_second": sum(r["tau"] * 64 * 2 for r in timed) / seconds,
            "round_seconds": statistics.median(r["round_seconds"] for r in timed),
            "overhead_seconds": statistics.median(r["overhead_seconds"] for r in timed),
            "compute_seconds": statistics.median(r["compute_seconds"] for r in timed),
            "warmup_seconds": result.warmup_seconds, "floats_sha": _digest(result.floats)}


def state_cost(spark: Any, megabytes: float, state_dir: str | None) -> dict[str, Any]:
    """Per-round overhead of a network whose state is ``megabytes`` (tau = 1, batch 8)."""
    from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
    from sparknet.data.sources import fashion_mnist_data
    from sparknet.engine import frame_runner
    from sparknet.engine.trainer import train

    frame_runner.INLINE_LIMIT_BYTES = 2**40  # measure where the transport itself fails
    hidden = hidden_for(megabytes)
    data = fashion_mnist_data(spark, num_workers=2, seed=0, train_limit=2000, test_limit=1)
    config = TrainConfig(outer=OuterConfig(name="average"), model="unused", checkpoint_every=0,
                         engine=EngineConfig(num_workers=2, tau=1, batch_size=8,
                                             rounds=WARMUP_ROUNDS + 3, eval_every=0),
                         optimizer=OptimizerConfig(momentum_policy="reset", lr=0.01, momentum=0.0))
    row: dict[str, Any] = {"state_mb": round(megabytes, 1), "hidden": hidden,
                           "transport": "files" if state_dir else "inline"}
    try:
        result = train(data, config=config, model=functools.partial(wide_mlp, hidden),
                       progress=False, state_dir=state_dir)
        timed = result.metrics[WARMUP_ROUNDS:]
        row.update(ok=True, round_seconds=statistics.median(r["round_seconds"] for r in timed),
                   overhead_seconds=statistics.median(r["overhead_seconds"] for r in timed))
    except Exception as exc:  # noqa: BLE001 - a failing size is a result here
        row.update(ok=False, error=str(exc).splitlines()[0][:300])
    finally:
        with contextlib.suppress(Exception):
            data.release()
    return row


def _digest(floats: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(floats.tobytes()).hexdigest()[:16]


def run_phase(args: argparse.Namespace) -> None:
    spark = session(args.remote)
    try:
        if args.phase == "size":
            out = state_cost(spark, args.size_mb, args.state_dir)
        else:
            out = {"sync": throughput(spark, args.rounds),
                   "overlap": throughput(spark, args.rounds, "eager")}
    finally:
        spark.stop()
    Path(args.out).write_text(json.dumps(out))


def child(phase: str, folder: Path, *options: str, timeout: float = 900) -> Any:
    out = folder / f"{phase}.json"
    subprocess.run([sys.executable, __file__, "--phase", phase, "--out", str(out), *options],
                   check=True, timeout=timeout)
    return json.loads(out.read_text())


def size_on_fresh_server(folder: Path, megabytes: float, files: bool) -> dict[str, Any]:
    """One state size against its own server, so a failure cannot carry over to the next."""
    from sparknet_testing.connect_server import connect_server

    root = folder / f"server-{megabytes:g}-{'files' if files else 'inline'}"
    options = ["--size-mb", str(megabytes)]
    if files:
        options += ["--state-dir", str(root / "state")]
    with connect_server(root, master="local[2]", driver_memory="4g") as server:
        try:
            return dict(child("size", folder, "--remote", server.url, *options, timeout=600))
        except subprocess.TimeoutExpired:
            log = (root / "server.log").read_text(errors="replace")
            cause = ("the server ran out of memory (java.lang.OutOfMemoryError) and the client "
                     "waited on" if "OutOfMemoryError" in log else "no answer from the server")
            return {"state_mb": megabytes, "hidden": hidden_for(megabytes),
                    "transport": "files" if files else "inline", "ok": False,
                    "error": f"{cause} for 600 s"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=8, help="timed rounds after the warm-up")
    parser.add_argument("--sizes-mb", default="16,32,64,96,140",
                        help="state sizes carried inside the plan (MiB)")
    parser.add_argument("--file-mb", default="96,256",
                        help="state sizes carried as files (--state-dir), MiB")
    parser.add_argument("--phase", choices=("classic", "connect", "size"), default=None)
    parser.add_argument("--remote", default=None)
    parser.add_argument("--size-mb", type=float, default=16)
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.phase is not None:
        run_phase(args)
        return
    from sparknet.engine.spark_session import SESSION_SETTINGS
    from sparknet_testing.connect_server import connect_server

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rounds = ["--rounds", str(args.rounds)]
        classic = child("classic", folder, *rounds)
        with connect_server(folder / "server", master="local[2]", driver_memory="4g",
                            conf=SESSION_SETTINGS) as server:
            remote = child("connect", folder, "--remote", server.url, *rounds)
        sizes = [size_on_fresh_server(folder, float(mb), False)
                 for mb in args.sizes_mb.split(",") if mb]
        sizes += [size_on_fresh_server(folder, float(mb), True)
                  for mb in args.file_mb.split(",") if mb]
    sizes_from = None
    if not sizes:  # not measured this time: keep the last run's table, dated
        earlier = json.loads((RESULTS / "connect.json").read_text())
        sizes, sizes_from = earlier["sizes"], earlier.get("sizes_from") or \
            earlier["machine"]["date"]
    report = {"machine": machine(), "command": command(), "classic": classic,
              "connect": remote, "sizes": sizes, "sizes_from": sizes_from,
              "samples_per_second_ratio": {
                  mode: remote[mode]["samples_per_second"] / classic[mode]["samples_per_second"]
                  for mode in ("sync", "overlap")}}
    path = write_report("connect", markdown(report), report)
    print(path.read_text())


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Spark Connect against a classic session", "",
        f"Command: `{r['command']}`  ", f"Machine: {machine_line()}; {r['machine']['date']}", "",
        "LeNet, K = 2, tau = 50, batch 64, the full Fashion-MNIST training set, master "
        "`local[2]` (the Connect server's too, started with sparknet's session settings, "
        "docs/engine.md), medians of the timed rounds after "
        f"{WARMUP_ROUNDS} warm-up rounds; synchronous and overlapped rounds "
        "(`engine.overlap = eager`).", "",
        "| rounds | session | samples/s | round (s) | compute (s) | overhead per round (s) | "
        "warm-up (s) | final weights (SHA-256) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode in ("sync", "overlap"):
        c, k = r["classic"][mode], r["connect"][mode]
        for name, m in (("classic", c), ("Spark Connect", k)):
            lines.append(f"| {mode} | {name} | {m['samples_per_second']:,.0f} | "
                         f"{m['round_seconds']:.3f} | {m['compute_seconds']:.3f} | "
                         f"{m['overhead_seconds']:.3f} | {m['warmup_seconds']:.1f} | "
                         f"{m['floats_sha']} |")
    for mode in ("sync", "overlap"):
        same = r["classic"][mode]["floats_sha"] == r["connect"][mode]["floats_sha"]
        lines.append(f"\n{mode}: Connect / classic samples/s "
                     f"**{r['samples_per_second_ratio'][mode]:.3f}**; the same final weights "
                     f"on both: {'yes' if same else 'NO'}.")
    dated = f" (measured {r['sizes_from']}, not rerun this time)" if r.get("sizes_from") else ""
    lines += ["", f"## How large a state the transport carries{dated}",
              "", "An MLP 784-H-10 sized to the state below, K = 2, tau = 1, batch 8 (so the "
              "round is almost all transport); overhead = round time minus the slowest "
              "worker's compute; each size against a fresh server. `inline`: the state inside "
              "the plan and the results as Arrow "
              "rows (the default); `files`: the state written once per round to a folder "
              "every executor reads (`--state-dir`), the results as files there too. The "
              "Connect server runs with `--driver-memory 4g`.", "",
              "| state (MiB) | transport | result | round (s) | overhead per round (s) |",
              "|---|---|---|---|---|"]
    for s in r["sizes"]:
        if s["ok"]:
            lines.append(f"| {s['state_mb']} | {s['transport']} | ok | "
                         f"{s['round_seconds']:.2f} | {s['overhead_seconds']:.2f} |")
        else:
            lines.append(f"| {s['state_mb']} | {s['transport']} | fails: {s['error']} | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
