"""Head to head: time to 89% test accuracy on Fashion-MNIST, all contenders in one run.

Same network (LeNet in Caffe's layout, same initial weights), data, batch (64 per worker or
process) and SGD momentum 0.9 for every contender:

- sparknet, K = 2 on ``local[2]``, tau = auto, Nesterov or plain-average outer step;
- PySpark's ``TorchDistributor`` with 2 processes (DDP over gloo, CPU);
- a plain PyTorch loop with 1 thread and with 2 threads.

Each contender's learning rate is chosen from {0.005, 0.01, 0.02, 0.04} by a screening run of
``--screen-samples`` samples (highest full-test-set accuracy); then timed runs go until 89%
on the full test set, evaluated every ``interval`` training samples (sparknet's round size
after its probe rounds). Clocks count training only: evaluation is paused out. A delay S is
then injected per round (sparknet, inside each round's tasks) and per all-reduce (DDP, a comm
hook that sleeps S before all-reducing), S in {0, 0.1, 1 s}.

    .venv/bin/python benchmarks/head_to_head.py
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FIGURES = ROOT / "docs" / "figures"
TARGET = 0.89
LRS = (0.005, 0.01, 0.02, 0.04)
BATCH = 64
SEED = 0


# ---------------------------------------------------------------- shared pieces
def fashion() -> dict[str, np.ndarray]:
    from sparknet.data import fashion_mnist

    train, test = fashion_mnist.load_split("train"), fashion_mnist.load_split("test")
    return {"train_x": train.images, "train_y": train.labels, "test_x": test.images,
            "test_y": test.labels}


def initial_lenet() -> Any:
    """LeNet with sparknet's seeded initial weights, so every contender starts equal."""
    from sparknet.engine.trainer import initial_state
    from sparknet.flat import load_flat_state
    from sparknet.models.registry import model_source

    source = model_source("lenet")
    layout, floats, ints = initial_state(source, SEED)
    model = source.build()
    load_flat_state(model, layout, floats, ints)
    return model


def accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(y), 1000):
            batch = torch.from_numpy(x[start:start + 1000]).float() * (1 / 255)
            correct += int((model(batch).argmax(1).numpy() == y[start:start + 1000]).sum())
    model.train()
    return correct / len(y)


def batches(n: int, *, partition: int) -> Iterator[np.ndarray]:
    """Endless seeded epoch-wise batches, the same stream sparknet's workers draw."""
    from sparknet.engine.local_steps import batch_indices

    offset = 0
    while True:
        yield from batch_indices(num_examples=n, batch_size=BATCH, steps=100,
                                 step_offset=offset, seed=SEED, partition=partition)
        offset += 100


@dataclass
class Limits:
    interval: int          # evaluate every this many training samples
    max_samples: int
    max_seconds: float     # training-clock cap (S = 1 s runs of DDP)
    target: float | None = TARGET


def done(limits: Limits, accuracy_now: float, samples: int, seconds: float) -> bool:
    return ((limits.target is not None and accuracy_now >= limits.target)
            or samples >= limits.max_samples or seconds >= limits.max_seconds)


# ---------------------------------------------------------------- plain PyTorch loop
def plain_loop(data: dict[str, np.ndarray], *, lr: float, threads: int,
               limits: Limits) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    model = initial_lenet()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    labels = torch.from_numpy(data["train_y"])
    curve, samples, seconds = [], 0, 0.0
    stream = batches(len(labels), partition=0)
    while True:
        started = time.perf_counter()
        for _ in range(limits.interval // BATCH):
            batch = next(stream)
            x = torch.from_numpy(data["train_x"][batch]).float() * (1 / 255)
            loss = F.cross_entropy(model(x), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds += time.perf_counter() - started
        samples += limits.interval
        acc = accuracy(model, data["test_x"], data["test_y"])
        curve.append({"samples": samples, "seconds": seconds, "test_accuracy": acc})
        if done(limits, acc, samples, seconds):
            return {"curve": curve, "bytes_sent_per_worker": 0, "steps": samples // BATCH}


# ---------------------------------------------------------------- DDP via TorchDistributor
def ddp_main(lr: float, delay: float, interval: int, max_samples: int, max_seconds: float,
             target: float | None, out_path: str) -> None:
    """Runs in each of TorchDistributor's processes (torchrun sets rank and world size).

    Rank 0 writes its curve to ``out_path`` (TorchDistributor may return any rank's output).
    """
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.nn.parallel import DistributedDataParallel

    from sparknet.data.shards import split_into_shards

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = fashion()
    shard = split_into_shards(data["train_x"], data["train_y"], world, seed=SEED)[rank]
    model = DistributedDataParallel(initial_lenet())
    stats = {"bytes": 0, "allreduces": 0}

    def delayed_allreduce(state, bucket):  # type: ignore[no-untyped-def]  # DDP checks these
        if state > 0:
            time.sleep(state)  # the injected synchronisation delay S, per all-reduce
        stats["bytes"] += bucket.buffer().numel() * bucket.buffer().element_size()
        stats["allreduces"] += 1
        return default_hooks.allreduce_hook(None, bucket)

    model.register_comm_hook(delay, delayed_allreduce)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    labels = torch.from_numpy(shard.labels)
    stream = batches(len(shard), partition=rank)
    limits = Limits(interval, max_samples, max_seconds, target)
    curve, samples, seconds = [], 0, 0.0
    flag = torch.zeros(1)
    while True:
        dist.barrier()
        started = time.perf_counter()
        for _ in range(interval // (BATCH * world)):
            batch = next(stream)
            x = torch.from_numpy(shard.features[batch]).float() * (1 / 255)
            loss = F.cross_entropy(model(x), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds += time.perf_counter() - started
        samples += interval
        if rank == 0:
            acc = accuracy(model.module, data["test_x"], data["test_y"])
            curve.append({"samples": samples, "seconds": seconds, "test_accuracy": acc})
            flag[0] = float(done(limits, acc, samples, seconds))
        dist.broadcast(flag, 0)
        if flag[0] > 0:
            break
    dist.destroy_process_group()
    if rank == 0:
        Path(out_path).write_text(json.dumps({
            "curve": curve, "bytes_sent_per_worker": stats["bytes"],
            "allreduces": stats["allreduces"], "steps": samples // (BATCH * world)}))


def ddp(*, lr: float, delay: float, limits: Limits) -> dict[str, Any]:
    from pyspark import cloudpickle
    from pyspark.ml.torch.distributor import TorchDistributor

    if __name__ != "__main__":  # imported: ship this file's functions by value, not by name
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    distributor = TorchDistributor(num_processes=2, local_mode=True, use_gpu=False)
    with tempfile.TemporaryDirectory() as folder:
        out_path = str(Path(folder) / "rank0.json")
        distributor.run(ddp_main, lr, delay, limits.interval, limits.max_samples,
                        limits.max_seconds, limits.target, out_path)
        return json.loads(Path(out_path).read_text())


# ---------------------------------------------------------------- sparknet
@dataclass(frozen=True)
class DelayedShards:
    """A ShardSet whose every task first waits ``delay`` s: S injected once per round."""

    inner: Any
    delay: float

    @property
    def context(self) -> Any:
        return self.inner.context

    @property
    def num_shards(self) -> int:
        return self.inner.num_shards

    def map_shards(self, fn: Callable[[int, Any], Any]) -> Any:
        delay = self.delay

        def delayed(index: int, shard: Any) -> Any:
            time.sleep(delay)
            return fn(index, shard)

        return self.inner.map_shards(delayed)

    def release(self) -> None:
        self.inner.release()


def sparknet_run(data: Any, *, lr: float, outer: str, delay: float,
                 limits: Limits) -> dict[str, Any]:
    from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
    from sparknet.engine.trainer import train

    config = TrainConfig(model="lenet", seed=SEED,
                         engine=EngineConfig(num_workers=2, tau="auto", batch_size=BATCH,
                                             rounds=100_000, eval_every=1),
                         optimizer=OptimizerConfig(lr=lr, momentum=0.9),
                         outer=OuterConfig(name=outer))
    if delay > 0:
        data = replace(data, train=DelayedShards(data.train, delay))
    clock = {"seconds": 0.0}

    def stop(record: dict[str, Any]) -> bool:
        clock["seconds"] += record["round_seconds"]
        return done(limits, record["test_accuracy"], record["samples"], clock["seconds"])

    result = train(data, config=config, progress=False, stop=stop)
    curve, seconds = [], 0.0
    for record in result.metrics:
        seconds += record["round_seconds"]
        curve.append({"samples": record["samples"], "seconds": seconds, "tau": record["tau"],
                      "test_accuracy": record["test_accuracy"]})
    rounds = len(result.metrics)
    up = sum(r["bytes_per_worker"] for r in result.metrics)
    down = rounds * 4 * result.layout.num_floats  # the broadcast weights each worker fetches
    return {"curve": curve, "bytes_sent_per_worker": up, "bytes_received_per_worker": down,
            "rounds": rounds, "tau_decisions": [r["tau"] for r in result.metrics],
            "steps": sum(r["tau"] for r in result.metrics)}


# ---------------------------------------------------------------- report
def summarise(name: str, lr: float, delay: float, run: dict[str, Any]) -> dict[str, Any]:
    hit = next((p for p in run["curve"] if p["test_accuracy"] >= TARGET), None)
    last = run["curve"][-1]
    return {"contender": name, "lr": lr, "delay_s": delay,
            "time_to_target_s": None if hit is None else hit["seconds"],
            "samples_to_target": None if hit is None else hit["samples"],
            "final_accuracy": last["test_accuracy"], "train_seconds": last["seconds"],
            "samples": last["samples"], "samples_per_s": last["samples"] / last["seconds"],
            "bytes_sent_per_worker": run["bytes_sent_per_worker"],
            "bytes_received_per_worker": run.get("bytes_received_per_worker",
                                                 run["bytes_sent_per_worker"]),
            **{k: run[k] for k in ("tau_decisions", "rounds", "allreduces") if k in run},
            "curve": run["curve"]}


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--screen-samples", type=int, default=48_000)
    parser.add_argument("--max-samples", type=int, default=640_000)
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="training-clock cap of one run (the DDP runs with S = 1 s)")
    parser.add_argument("--delays", default="0.1,1")
    parser.add_argument("--delay-max-seconds", type=float, default=150.0,
                        help="training-clock cap of the DDP runs with a delay")
    parser.add_argument("--lr", action="append", default=[], metavar="CONTENDER=LR",
                        help="skip screening for a contender ('plain', 'ddp', 'nesterov', "
                             "'average') and use this learning rate")
    parser.add_argument("--outers", default="nesterov,average",
                        help="sparknet outer optimizers to run")
    parser.add_argument("--out", type=Path, default=RESULTS / "head_to_head.json")
    args = parser.parse_args(list(argv) if argv is not None else None)

    from sparknet.data.sources import fashion_mnist_data
    from sparknet.engine.spark_session import get_or_create_session

    spark = get_or_create_session("local[2]", app_name="sparknet-head-to-head")
    data = fashion()
    shards = fashion_mnist_data(spark.sparkContext, num_workers=2, seed=SEED)
    report: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "command": " ".join([sys.executable, *sys.argv]), "target": TARGET,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "screening": [], "runs": []}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))

    def log(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    # 1. Learning-rate screening: a short run per lr, scored by full-test-set accuracy.
    screen = Limits(interval=args.screen_samples, max_samples=args.screen_samples,
                    max_seconds=1e9, target=None)
    best: dict[str, float] = {}
    contenders: dict[str, Callable[[float], dict[str, Any]]] = {
        "plain loop": lambda lr: plain_loop(data, lr=lr, threads=1, limits=screen),
        "DDP (TorchDistributor)": lambda lr: ddp(lr=lr, delay=0.0, limits=screen),
        "sparknet nesterov": lambda lr: sparknet_run(shards, lr=lr, outer="nesterov",
                                                     delay=0.0, limits=screen),
        "sparknet average": lambda lr: sparknet_run(shards, lr=lr, outer="average",
                                                    delay=0.0, limits=screen),
    }
    aliases = {"plain": "plain loop", "ddp": "DDP (TorchDistributor)",
               "nesterov": "sparknet nesterov", "average": "sparknet average"}
    for item in args.lr:
        key, _, value = item.partition("=")
        best[aliases[key]] = float(value)
    outers = args.outers.split(",")
    report["lr_chosen_without_screening"] = sorted(best)
    for name, runner in contenders.items():
        if name in best or (name.startswith("sparknet") and name.split()[-1] not in outers):
            continue
        scores = {}
        for lr in LRS:
            run = runner(lr)
            scores[lr] = run["curve"][-1]["test_accuracy"]
            report["screening"].append({"contender": name, "lr": lr,
                                        "samples": run["curve"][-1]["samples"],
                                        "test_accuracy": scores[lr]})
            log(f"screen {name} lr={lr}: {100 * scores[lr]:.2f}%")
            save()
        best[name] = max(scores, key=lambda lr: scores[lr])
    report["best_lr"] = best

    # 2. Timed runs to 89%. sparknet first: its round size sets everyone's eval interval.
    def record(name: str, lr: float, delay: float, run: dict[str, Any]) -> dict[str, Any]:
        row = summarise(name, lr, delay, run)
        report["runs"].append(row)
        save()
        log(f"{name} lr={lr} S={delay}: time to 89% {row['time_to_target_s']} s, "
            f"final {100 * row['final_accuracy']:.2f}%, {row['samples_per_s']:.0f} samples/s")
        return row

    free = Limits(interval=0, max_samples=args.max_samples, max_seconds=args.max_seconds)
    for outer in outers:
        name = f"sparknet {outer}"
        row = record(name, best[name], 0.0,
                     sparknet_run(shards, lr=best[name], outer=outer, delay=0.0, limits=free))
        if outer == "nesterov":
            interval = 2 * BATCH * row["tau_decisions"][-1]
            report["eval_interval_samples"] = interval
    limits = replace(free, interval=interval)
    lr = best["plain loop"]
    record("plain loop, 1 thread", lr, 0.0, plain_loop(data, lr=lr, threads=1, limits=limits))
    record("plain loop, 2 threads", lr, 0.0, plain_loop(data, lr=lr, threads=2, limits=limits))
    lr = best["DDP (TorchDistributor)"]
    record("DDP (TorchDistributor)", lr, 0.0, ddp(lr=lr, delay=0.0, limits=limits))

    # 3. The same with a synchronisation delay S.
    sparknet_best = min((r for r in report["runs"] if r["contender"].startswith("sparknet")),
                        key=lambda r: r["time_to_target_s"] or float("inf"))["contender"]
    report["sparknet_best_outer"] = sparknet_best
    for delay in (float(d) for d in args.delays.split(",") if d):
        lr = best[sparknet_best]
        record(sparknet_best, lr, delay,
               sparknet_run(shards, lr=lr, outer=sparknet_best.split()[-1], delay=delay,
                            limits=free))
        lr = best["DDP (TorchDistributor)"]
        capped = replace(limits, max_seconds=args.delay_max_seconds)
        record("DDP (TorchDistributor)", lr, delay, ddp(lr=lr, delay=delay, limits=capped))
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    save()
    shards.release()
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
