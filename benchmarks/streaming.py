"""Streamed shards (the ``streamed`` placement): memory bound, speed, round cost vs data size.

Four measurements, each in one run on one machine (``local[2]``, K = 2, LeNet):

1. memory: a streamed DataFrame of uint8 images (Fashion-MNIST rows, generated on the
   executors, never on the driver) at two sizes, 1x and 4x, with every Spark Python process
   inside a memory cgroup whose limit is the documented bound per worker times the workers
   (plus the daemons); the peak resident memory (VmHWM) of every Python worker while it
   writes the files and while it trains, and the group's OOM kills (which fail the run).
2. speed: Fashion-MNIST uint8, streamed vs in memory (broadcast), samples/s at tau = 50.
3. decode: a 64x64 RGB JPEG folder, images/s on one core through a streamed shard (read +
   decode + the model's input preparation) vs a plain ``torch.utils.data.DataLoader`` reading
   the same files with the same decoder and preparation (``num_workers=0``: one core each).
4. round cost: Spark's per-round overhead (round time minus the workers' compute time) with
   10x more rows per partition.

    flock /tmp/sparknet-bench.lock .venv/bin/python benchmarks/streaming.py [--parts memory --keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from common import RESULTS, machine_line, write_report
from common import command as run_command

from sparknet_testing.cgroup import (
    CgroupUnavailable,
    MemoryCgroup,
    launcher_in_group,
    pyspark_python,
)

MiB = 1 << 20
FASHION_ROWS = 60_000
PYTHON_WORKERS = 4  # local[2]: two task slots x two worker pools (Arrow UDFs, RDD tasks)
PYTHON_DAEMONS = 2  # one per pool
WORKER_BOUND_MIB = 560  # docs/streaming.md: LeNet on Fashion-MNIST, PyTorch 2.13 CPU
DAEMON_MIB = 64  # a PySpark daemon: the interpreter and pyspark.daemon (45 MiB measured)


class WorkerPeaks:
    """Peak resident memory of each Spark Python process (pid -> bytes) over a phase.

    On entry every Python process under the JVM gets its peak reset (``clear_refs`` 5), so
    VmHWM covers this phase only; a thread samples it every 50 ms. A process whose parent is
    the JVM is a PySpark daemon, the others are the workers it forked. With ``group``, each
    process is also checked to run inside that memory cgroup.
    """

    def __init__(self, jvm_pid: int, group: MemoryCgroup | None = None) -> None:
        self.jvm = psutil.Process(jvm_pid)
        self.group = group
        self.peaks: dict[int, int] = {}
        self.daemons: set[int] = set()
        self.outside: set[int] = set()
        self.most_alive = 0  # workers alive at once, at most
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _pythons(self) -> list[psutil.Process]:
        found = []
        for child in self.jvm.children(recursive=True):
            try:
                if "python" in child.name():
                    found.append(child)
            except psutil.Error:
                continue
        return found

    def _run(self) -> None:
        while not self._stop.is_set():
            alive = 0
            for process in self._pythons():
                try:
                    status = Path(f"/proc/{process.pid}/status").read_text()
                    daemon = process.ppid() == self.jvm.pid
                except (OSError, psutil.Error):
                    continue
                if "VmHWM:" in status:
                    hwm = int(status.split("VmHWM:")[1].split()[0]) * 1024
                    self.peaks[process.pid] = max(self.peaks.get(process.pid, 0), hwm)
                    if daemon:
                        self.daemons.add(process.pid)
                    else:
                        alive += 1
                    if self.group is not None and not self.group.holds(process.pid) \
                            and process.is_running():
                        self.outside.add(process.pid)
            self.most_alive = max(self.most_alive, alive)
            time.sleep(0.05)

    def __enter__(self) -> WorkerPeaks:
        for process in self._pythons():
            with contextlib.suppress(OSError):
                Path(f"/proc/{process.pid}/clear_refs").write_text("5")
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def mib(self, *, daemons: bool = False) -> list[float]:
        return sorted(round(peak / MiB, 1) for pid, peak in self.peaks.items()
                      if (pid in self.daemons) == daemons)


def _config(*, tau: int, rounds: int, eval_every: int = 0) -> Any:
    from sparknet.config import TrainConfig

    return TrainConfig.from_dict({"model": "lenet", "seed": 0, "checkpoint_every": 0,
                                  "engine": {"num_workers": 2, "tau": tau, "batch_size": 64,
                                             "rounds": rounds, "eval_every": eval_every},
                                  "optimizer": {"lr": 0.01}})


def fashion_parquet(spark: Any, folder: Path) -> str:
    """Fashion-MNIST's 60,000 training images as Spark image structs in Parquet (``idx``,
    ``image``, ``label``), written by the executors: the seed of the generated datasets."""
    import pyarrow as pa

    from sparknet.data import fashion_mnist

    struct = ("idx long, image struct<origin:string, height:int, width:int, nChannels:int, "
              "mode:int, data:binary>, label double")

    def make(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        split = fashion_mnist.load_split("train")
        for batch in batches:
            ids = batch.column(0).to_numpy()
            n = len(ids)
            data = [split.images[i, 0].tobytes() for i in ids]
            image = pa.StructArray.from_arrays(
                [pa.array([""] * n), pa.array([28] * n, pa.int32()),
                 pa.array([28] * n, pa.int32()), pa.array([1] * n, pa.int32()),
                 pa.array([0] * n, pa.int32()), pa.array(data, pa.binary())],
                names=["origin", "height", "width", "nChannels", "mode", "data"])
            yield pa.RecordBatch.from_arrays(
                [pa.array(ids), image, pa.array(split.labels[ids].astype(np.float64))],
                names=["idx", "image", "label"])

    path = str(folder / "fashion-mnist.parquet")
    spark.range(0, FASHION_ROWS, numPartitions=2).mapInArrow(make, struct).write.parquet(path)
    return path


def _generated_frame(spark: Any, seed: str, rows: int) -> Any:
    """``rows`` Fashion-MNIST images (cycled), joined in the executors' JVMs from the Parquet
    seed: no Python stage before sparknet's own conversion, nothing on the driver."""
    from pyspark.sql import functions as F  # noqa: N812

    ids = spark.range(0, rows, numPartitions=max(2, rows // 200_000))
    return (ids.withColumn("idx", F.col("id") % FASHION_ROWS)
            .join(F.broadcast(spark.read.parquet(seed)), "idx").select("image", "label"))


def memory_limit_mib(worker_bound_mib: float) -> float:
    """What the Python processes of ``local[2]`` may hold: the documented bound per worker
    times the workers that can be alive at once, plus the daemons.

    Spark keeps one pool of Python workers (and one daemon) for Arrow UDFs, which convert the
    rows, and one for RDD tasks, which write the shard files and train; each pool holds up to
    one worker per task slot, and idle workers stay alive for reuse.
    """
    return PYTHON_WORKERS * worker_bound_mib + PYTHON_DAEMONS * DAEMON_MIB


def memory(seed: str, rows_1x: int, rounds: int, worker_bound_mib: float) -> dict[str, Any]:
    """Trains at 1x and 4x rows with every Spark Python process inside a memory cgroup."""
    from sparknet.data.shards import InputSpec
    from sparknet.data.sources import dataframe_data
    from sparknet.engine.spark_session import get_or_create_session
    from sparknet.engine.trainer import train

    spec = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)
    limit = int(memory_limit_mib(worker_bound_mib) * MiB)
    out: dict[str, Any] = {"worker_bound_mib": worker_bound_mib, "limit_mib": limit / MiB,
                           "python_workers": PYTHON_WORKERS, "python_daemons": PYTHON_DAEMONS}
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        try:
            group: MemoryCgroup | None = stack.enter_context(MemoryCgroup.create(
                f"sparknet-bench-{os.getpid()}", limit_bytes=limit))
        except CgroupUnavailable as exc:
            group, out["unenforced"] = None, str(exc)
        if group is not None:
            out["cgroup"] = {"path": str(group.path), "version": group.version}
            stack.enter_context(pyspark_python(launcher_in_group(group, sys.executable,
                                                                 Path(folder))))
        spark = get_or_create_session("local[2]", app_name="sparknet-bench-streaming-memory")
        gateway = spark.sparkContext._jvm
        assert gateway is not None
        jvm = int(gateway.ProcessHandle.current().pid())
        try:
            for scale in (1, 4):
                rows = rows_1x * scale
                started = time.perf_counter()
                with WorkerPeaks(jvm, group) as writing:
                    data, _ = dataframe_data(_generated_frame(spark, seed, rows),
                                             features="image", label="label", spec=spec,
                                             num_workers=2, batch_size=64, streamed=True)
                written = time.perf_counter() - started
                try:
                    with WorkerPeaks(jvm, group) as training:
                        result = train(data, config=_config(tau=50, rounds=rounds),
                                       progress=False)
                finally:
                    data.release()
                out[f"{scale}x"] = {
                    "rows": rows, "stored_mib": rows * (784 + 8) / MiB,
                    "write_seconds": written, "writing_peak_mib": writing.mib(),
                    "worker_peak_mib": training.mib(),
                    "daemon_peak_mib": sorted(set(writing.mib(daemons=True) +
                                                  training.mib(daemons=True))),
                    "outside_cgroup": sorted(writing.outside | training.outside),
                    "most_workers_alive": max(writing.most_alive, training.most_alive),
                    "train_accuracy": result.metrics[-1]["train_accuracy"]}
                if group is not None:
                    out[f"{scale}x"]["cgroup_events"] = asdict(group.events())
                print(f"memory {scale}x: {out[f'{scale}x']}", flush=True)
        finally:
            spark.stop()
            if group is not None:
                out["cgroup_events"] = asdict(group.events())
    return out


def _samples_per_second(result: Any) -> float:
    rounds = result.metrics[2:]  # the first rounds warm caches up
    return sum(r["samples"] for r in rounds) / sum(r["round_seconds"] for r in rounds)


def _overhead(result: Any) -> float:
    return statistics.median(r["overhead_seconds"] for r in result.metrics[2:])


def speed(spark: Any, rows: int, rounds: int, repeats: int) -> dict[str, Any]:
    from sparknet.data import fashion_mnist
    from sparknet.data.shards import InputSpec
    from sparknet.data.sources import from_arrays
    from sparknet.engine.trainer import train

    split = fashion_mnist.load_split("train")
    take = np.arange(rows) % len(split.labels)
    arrays = (split.images[take], split.labels[take])
    spec = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)
    rates: dict[str, list[float]] = {"memory": [], "streamed": []}
    overheads: dict[str, list[float]] = {"memory": [], "streamed": []}
    for _ in range(repeats):
        for name in ("memory", "streamed"):
            data = from_arrays(spark, train=arrays, test=None, spec=spec, num_workers=2,
                               seed=0, streamed=name == "streamed")
            try:
                result = train(data, config=_config(tau=50, rounds=rounds), progress=False)
            finally:
                data.release()
            rates[name].append(_samples_per_second(result))
            overheads[name].append(_overhead(result))
    return {"rows": rows, "samples_per_s": {k: statistics.median(v) for k, v in rates.items()},
            "overhead_s": {k: statistics.median(v) for k, v in overheads.items()},
            "runs": rates}


def decode(folder: Path, files: int, repeats: int) -> dict[str, Any]:
    """Images/s on one core: streamed shard vs DataLoader, same decoder and preparation."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    from sparknet.data.chunks import ChunkLayout
    from sparknet.data.images import decode_image
    from sparknet.data.placements.streamed import StreamedShard, write_shard_file
    from sparknet.models.kinds import ScaledInput
    from sparknet_testing.data import write_image_folder

    torch.set_num_threads(1)
    write_image_folder(folder, split="train", count=files, size=64, rgb=True)
    paths = sorted(folder.glob("*/*.jpg"))
    labels = np.array([int(p.parent.name.split("-")[0]) for p in paths], np.int64)
    shape = (3, 64, 64)
    prep = ScaledInput(shape, 1 / 255)
    device = torch.device("cpu")
    rng = np.random.default_rng(0)
    blobs = [p.read_bytes() for p in paths]
    lengths = np.array([len(b) for b in blobs], np.int64)
    chunk = (lengths.tobytes() + b"".join(blobs), labels.tobytes(), len(blobs))
    layout = ChunkLayout(stored="encoded", shape=shape)
    write_shard_file(folder / "shard.arrow", layout, [chunk])

    class Files(Dataset[tuple[np.ndarray, int]]):
        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
            return decode_image(paths[i].read_bytes(), shape), int(labels[i])

    def streamed() -> float:
        shard = StreamedShard(folder / "shard.arrow", layout, decode_threads=1)
        order = rng.permutation(len(shard))
        started = time.perf_counter()
        for start in range(0, len(order), 64):
            features, y = shard.rows(order[start: start + 64])
            prep(features, device, train=True, rng=rng)
        elapsed = time.perf_counter() - started
        shard.close()
        return len(order) / elapsed

    def loader() -> float:
        batches = DataLoader(Files(), batch_size=64, shuffle=True, num_workers=0,
                             collate_fn=lambda items: (np.stack([x for x, _ in items]),
                                                       np.array([y for _, y in items])))
        started = time.perf_counter()
        for features, _ in batches:
            prep(features, device, train=True, rng=rng)
        return len(paths) / (time.perf_counter() - started)

    streamed(), loader()  # warm up: page cache, Pillow
    rates: dict[str, list[float]] = {"streamed": [], "dataloader": []}
    for _ in range(repeats):
        rates["streamed"].append(streamed())
        rates["dataloader"].append(loader())
    return {"files": len(paths), "images_per_s_per_core": {k: statistics.median(v)
                                                            for k, v in rates.items()},
            "runs": rates}


def round_cost(spark: Any, rows_small: int, rounds: int, repeats: int) -> dict[str, Any]:
    from sparknet.data import fashion_mnist
    from sparknet.data.shards import InputSpec
    from sparknet.data.sources import from_arrays
    from sparknet.engine.trainer import train

    split = fashion_mnist.load_split("train")
    spec = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)
    overheads: dict[str, list[float]] = {"1x": [], "10x": []}
    for _ in range(repeats):
        for name, rows in (("1x", rows_small), ("10x", 10 * rows_small)):
            take = np.arange(rows) % len(split.labels)
            data = from_arrays(spark, train=(split.images[take], split.labels[take]), test=None,
                               spec=spec, num_workers=2, seed=0, streamed=True)
            try:
                result = train(data, config=_config(tau=50, rounds=rounds), progress=False)
            finally:
                data.release()
            overheads[name].append(_overhead(result))
    return {"rows_per_partition": {"1x": rows_small // 2, "10x": 5 * rows_small},
            "overhead_s": {k: statistics.median(v) for k, v in overheads.items()},
            "runs": overheads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memory-rows", type=int, default=2_400_000,
                        help="rows of the 1x dataset (784 + 8 bytes each)")
    parser.add_argument("--worker-bound-mib", type=float, default=WORKER_BOUND_MIB,
                        help="the documented memory bound of one Python worker "
                             "(docs/streaming.md); sets the cgroup limit")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--decode-files", type=int, default=4000)
    parser.add_argument("--parts", default="speed,decode,round,memory")
    parser.add_argument("--keep", action="store_true",
                        help="keep the parts of the last report that this run does not measure")
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    from sparknet.engine.spark_session import get_or_create_session

    spark = get_or_create_session("local[2]", app_name="sparknet-bench-streaming")
    results: dict[str, Any] = {"machine": machine_line(), "command": run_command()}
    if args.keep and (RESULTS / "streaming.json").is_file():
        # Parts measured by an earlier run stay, each with its own command and machine line.
        earlier = json.loads((RESULTS / "streaming.json").read_text())
        results["earlier"] = {"machine": earlier.get("machine"),
                              "command": earlier.get("command"),
                              "parts": sorted(set(earlier) & {"speed", "decode",
                                                              "round_cost", "memory"} - parts)}
        results.update({k: v for k, v in earlier.items() if k in results["earlier"]["parts"]})
    if "speed" in parts:
        results["speed"] = speed(spark, 60_000, args.rounds, args.repeats)
        print("speed", results["speed"], flush=True)
    if "decode" in parts:
        with tempfile.TemporaryDirectory() as folder:
            results["decode"] = decode(Path(folder), args.decode_files, args.repeats)
        print("decode", results["decode"], flush=True)
    if "round" in parts:
        results["round_cost"] = round_cost(spark, 12_000, args.rounds, args.repeats)
        print("round", results["round_cost"], flush=True)
    with tempfile.TemporaryDirectory() as folder:
        seed = fashion_parquet(spark, Path(folder)) if "memory" in parts else ""
        spark.stop()  # the memory part starts its own session, its Python inside a cgroup
        if "memory" in parts:
            results["memory"] = memory(seed, args.memory_rows, args.rounds,
                                       args.worker_bound_mib)
    path = write_report("streaming", report(results), results)
    print(f"wrote {path}")
    if "memory" in parts and _memory_failures(results["memory"]):
        raise SystemExit("memory: " + "; ".join(_memory_failures(results["memory"])))


def _section(title: str, header: str, rows: list[tuple[str, str]], verdict: str) -> list[str]:
    return [f"## {title}", "", f"| {header} |", "|---|---|",
            *[f"| {name} | {value} |" for name, value in rows], "", verdict, ""]


def _verdict(label: str, value: str, ok: bool, target: str) -> str:
    return f"{label}: **{value}** (target {target}: {'met' if ok else 'MISSED'})."


def report(results: dict[str, Any]) -> str:
    lines = ["# Streamed shards", "", f"Machine: {results['machine']}.",
             f"Command: `{results['command']}`.", ""]
    if "earlier" in results:
        e = results["earlier"]
        lines += [f"Parts {', '.join(e['parts'])} are from an earlier run: `{e['command']}` on "
                  f"{e['machine']}.", ""]
    pairs = [("speed", "samples_per_s", "memory",
              "Speed: streamed vs in memory (Fashion-MNIST uint8, LeNet, K=2, tau=50)",
              "source | samples/s (median)", "in memory (broadcast)",
              "streamed (local Arrow file)", 0.95),
             ("decode", "images_per_s_per_core", "dataloader",
              "JPEG decode + prepare per core (64x64 RGB, Pillow, batch 64)",
              "reader | images/s on one core (median)",
              "torch DataLoader over the files (num_workers=0)",
              "streamed shard (Arrow file, decode_threads=1)", 1.0)]
    for part, key, base, title, header, base_name, ours_name, target in pairs:
        if part in results:
            rates = results[part][key]
            ratio = rates["streamed"] / rates[base]
            runs = results[part]["runs"]
            spread = "; ".join(f"{name} runs: " + ", ".join(f"{r:.0f}" for r in values)
                               for name, values in runs.items())
            lines += _section(title, header, [(base_name, f"{rates[base]:.0f}"),
                                              (ours_name, f"{rates['streamed']:.0f}")],
                              _verdict("Ratio streamed / baseline", f"{ratio:.3f}",
                                       ratio >= target, f">= {target}") +
                              f" Every run ({spread}): on a loaded machine the spread between "
                              "runs of one source is larger than the difference measured.")
    if "round_cost" in results:
        r = results["round_cost"]
        o, rows = r["overhead_s"], r["rows_per_partition"]
        change = o["10x"] / o["1x"] - 1
        lines += _section(
            "Per-round overhead vs rows per partition (streamed, tau=50)",
            "rows per partition | overhead per round (median, s)",
            [(f"{rows['1x']:,}", f"{o['1x']:.3f}"), (f"{rows['10x']:,}", f"{o['10x']:.3f}")],
            _verdict("Change with 10x data", f"{100 * change:+.1f}%", abs(change) <= 0.10,
                     "within 10%"))
    if "memory" in results:
        lines += _memory_section(results["memory"])
    return "\n".join(lines) + "\n"


def _memory_failures(m: dict[str, Any]) -> list[str]:
    """What makes the memory run fail outright: an OOM kill, or a Python process outside the
    group (its memory would have escaped the limit)."""
    failures = []
    if m.get("cgroup_events", {}).get("oom_kills", 0):
        failures.append(f"{m['cgroup_events']['oom_kills']} Python processes OOM-killed")
    outside = [pid for size in ("1x", "4x") for pid in m[size].get("outside_cgroup", [])]
    if outside:
        failures.append(f"Python processes {outside} ran outside the memory cgroup")
    return failures


def _memory_section(m: dict[str, Any]) -> list[str]:
    limit, bound = m["limit_mib"], m["worker_bound_mib"]
    top = {size: max(m[size]["writing_peak_mib"] + m[size]["worker_peak_mib"])
           for size in ("1x", "4x")}
    ratio = {size: m[size]["stored_mib"] / limit for size in ("1x", "4x")}
    change = top["4x"] / top["1x"] - 1
    if "unenforced" in m:
        lines = [f"No limit was enforced ({m['unenforced']}); the figures are unenforced, "
                 f"compared with what the limit would be, {limit:.0f} MiB.", ""]
    else:
        cgroup = m["cgroup"]
        setting = "memory.limit_in_bytes" if cgroup["version"] == 1 else "memory.max"
        lines = [f"Enforced limit: **{limit:.0f} MiB** for all of Spark's Python processes "
                 f"together, a cgroup v{cgroup['version']} memory group ({setting}; it counts "
                 "their resident memory and the page cache they fill, which the kernel "
                 "reclaims at the limit) that the PySpark daemons join as they start "
                 f"(`sparknet_testing.cgroup`): {m['python_workers']} workers x {bound:.0f} "
                 f"MiB (the documented bound per worker, docs/streaming.md) + "
                 f"{m['python_daemons']} daemons x {DAEMON_MIB} MiB.", ""]
    rows = [(f"{size} ({m[size]['rows']:,} rows, {m[size]['stored_mib']:,.0f} MiB = "
             f"{ratio[size]:.2f}x the limit), {phase}",
             ", ".join(f"{p:.0f}" for p in m[size][key]))
            for size in ("1x", "4x") for phase, key in (("writing the files", "writing_peak_mib"),
                                                        ("training", "worker_peak_mib"))]
    section = _section(
        "Memory: peak RSS (VmHWM) per Python worker, streamed, two dataset sizes",
        "dataset (rows, stored size vs the limit), phase | peak per Python worker (MiB)", rows,
        _verdict("Largest worker peak, 4x vs 1x", f"{100 * change:+.1f}%",
                 abs(change) <= 0.10, "within 10%"))
    lines = section[:2] + lines + section[2:]  # the limit first, under the heading
    daemon = max(p for size in ("1x", "4x") for p in m[size]["daemon_peak_mib"])
    alive = max(m[size]["most_workers_alive"] for size in ("1x", "4x"))
    lines += [
        _verdict("Largest worker peak vs the documented bound",
                 f"{max(top.values()):.0f} MiB", max(top.values()) <= bound,
                 f"<= {bound:.0f} MiB") +
        f" At most {alive} workers were alive at once (the limit allows for "
        f"{m['python_workers']}; a phase can list more, when Spark stopped an idle worker and "
        f"forked another); the daemons peaked at {daemon:.0f} MiB. Python, "
        "PyTorch, pyarrow and LeNet account for nearly all of a worker's peak; the data a "
        "worker holds is under 1 MiB (docs/streaming.md).", "",
        _verdict("The 4x dataset vs the limit", f"{ratio['4x']:.2f}x", ratio["4x"] >= 3,
                 ">= 3x") + f" The 1x dataset is {ratio['1x']:.2f}x the limit. Writing the "
        f"files took {m['1x']['write_seconds']:.0f} s at 1x and {m['4x']['write_seconds']:.0f} "
        "s at 4x.", ""]
    if "cgroup_events" in m:
        events = m["cgroup_events"]
        first = m["1x"]["cgroup_events"]
        lines += [
            _verdict("OOM kills in the group", str(events["oom_kills"]),
                     events["oom_kills"] == 0, "0") +
            f" failcnt {events['failcnt']:,} ({first['failcnt']:,} by the end of 1x): the "
            "times the group reached its limit and the kernel reclaimed page cache instead. "
            f"The group's peak usage, page cache included: {events['peak_bytes'] / MiB:.0f} "
            "MiB. Python processes seen outside the group: "
            f"{len(m['1x']['outside_cgroup']) + len(m['4x']['outside_cgroup'])}.", ""]
    return lines


if __name__ == "__main__":
    main()
