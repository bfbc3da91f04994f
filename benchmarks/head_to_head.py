"""Head to head: time to 89% test accuracy on Fashion-MNIST, all contenders in one run.

Same network (LeNet in Caffe's layout, same initial weights), data, batch (64 per worker or
process) and SGD momentum 0.9 for every contender:

- sparknet, K = 2 on ``local[2]``, Nesterov outer step, tau = auto and tau = 100;
- PySpark's ``TorchDistributor`` with 2 processes (DDP over gloo, CPU);
- a plain PyTorch loop with 1 thread and with 2 threads.

Phases, in one process tree, one after another:

1. Learning rates: each contender's best from {0.005, 0.01, 0.02, 0.04}, as the fewest
   training samples to 89% in an exact replay by the simulator (the loop is one virtual worker
   that keeps its momentum; DDP is two that average weights and momentum after every step,
   which is DDP's gradient average; sparknet is itself). Step time does not depend on the
   learning rate, so fewest samples is fastest.
2. Throughput ceiling: samples/s of the plain loop with 1 and 2 threads, and of two 1-thread
   loops in two processes side by side (the most any 2-worker scheme can get from 2 cores).
3. Timed runs to 89% on the full test set, evaluated every ``--eval-samples`` training
   samples (sparknet at the end of each round). Clocks count training only: evaluation is
   paused out, and so are one-off starts (DDP's process launch, sparknet's warm-up job).
4. The same with a delay S injected per round (sparknet, inside each round's tasks) and per
   all-reduce (DDP, a comm hook that sleeps S before all-reducing), S in {0.1, 1 s}.

    .venv/bin/python benchmarks/head_to_head.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import baseline
import numpy as np
from baseline import BATCH, SEED, batches, initial_network, sgd, torch_threads, train_steps
from common import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FIGURES = ROOT / "docs" / "figures"
TARGET = 0.89
LRS = (0.005, 0.01, 0.02, 0.04)


# ---------------------------------------------------------------- shared pieces
def fashion() -> dict[str, np.ndarray]:
    from sparknet.data import fashion_mnist

    train, test = fashion_mnist.load_split("train"), fashion_mnist.load_split("test")
    return {"train_x": train.images, "train_y": train.labels, "test_x": test.images,
            "test_y": test.labels}


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
    """The baseline loop until the target, evaluated every ``limits.interval`` samples."""
    model = initial_network(SEED)
    optimizer = sgd(model, lr)
    images, labels = data["train_x"], data["train_y"]
    stream = batches(len(labels), partition=0)
    curve, samples, seconds = [], 0, 0.0
    with torch_threads(threads):
        while True:
            started = time.perf_counter()
            train_steps(model, optimizer, images, labels, stream, limits.interval // BATCH)
            seconds += time.perf_counter() - started
            samples += limits.interval
            acc = accuracy(model, data["test_x"], data["test_y"])
            curve.append({"samples": samples, "seconds": seconds, "test_accuracy": acc})
            if done(limits, acc, samples, seconds):
                return {"curve": curve, "bytes_sent_per_worker": 0,
                        "steps": samples // BATCH}


# ---------------------------------------------------------------- DDP via TorchDistributor
def ddp_main(lr: float, delay: float, interval: int, max_samples: int, max_seconds: float,
             target: float | None, out_path: str) -> None:
    """Runs in each of TorchDistributor's processes (torchrun sets rank and world size).

    Rank 0 writes its curve to ``out_path`` (TorchDistributor may return any rank's output).
    """
    import torch
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.nn.parallel import DistributedDataParallel

    from sparknet.data.shards import split_into_shards

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = fashion()
    shard = split_into_shards(data["train_x"], data["train_y"], world, seed=SEED)[rank]
    model = DistributedDataParallel(initial_network(SEED))
    stats = {"bytes": 0, "allreduces": 0}

    def delayed_allreduce(state, bucket):  # type: ignore[no-untyped-def]  # DDP checks these
        if state > 0:
            time.sleep(state)  # the injected synchronisation delay S, per all-reduce
        stats["bytes"] += bucket.buffer().numel() * bucket.buffer().element_size()
        stats["allreduces"] += 1
        return default_hooks.allreduce_hook(None, bucket)

    model.register_comm_hook(delay, delayed_allreduce)
    optimizer = sgd(model, lr)
    stream = batches(len(shard), partition=rank)
    limits = Limits(interval, max_samples, max_seconds, target)
    curve, samples, seconds = [], 0, 0.0
    flag = torch.zeros(1)
    while True:
        dist.barrier()
        started = time.perf_counter()
        train_steps(model, optimizer, shard.features, shard.labels, stream,
                    interval // (BATCH * world))
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

    # torchrun's processes cannot import benchmarks/: ship its functions by value, not by name
    cloudpickle.register_pickle_by_value(baseline)
    if __name__ != "__main__":
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
    def runner(self) -> Any:
        return self.inner.runner

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


def clock_curve(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The evaluated rounds of a sparknet run against its training clock (rounds only)."""
    curve, seconds = [], 0.0
    for record in metrics:
        seconds += record["round_seconds"]
        if record.get("test_accuracy") is not None:
            curve.append({"samples": record["samples"], "seconds": seconds, "tau": record["tau"],
                          "test_accuracy": record["test_accuracy"]})
    return curve


def sparknet_run(data: Any, *, lr: float, outer: str, delay: float, limits: Limits,
                 tau: int | str = "auto") -> dict[str, Any]:
    from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
    from sparknet.engine.trainer import train

    config = TrainConfig(model="lenet", seed=SEED,
                         engine=EngineConfig(num_workers=2, tau=tau, batch_size=BATCH,
                                             rounds=100_000, eval_every=1),
                         optimizer=OptimizerConfig(momentum_policy="reset", lr=lr, momentum=0.9),
                         outer=OuterConfig(name=outer))
    if delay > 0:
        data = replace(data, train=DelayedShards(data.train, delay))
    clock = {"seconds": 0.0}

    def stop(record: dict[str, Any]) -> bool:
        clock["seconds"] += record["round_seconds"]
        return done(limits, record["test_accuracy"], record["samples"], clock["seconds"])

    result = train(data, config=config, progress=False, stop=stop)
    curve = clock_curve(result.metrics)
    rounds = len(result.metrics)
    up = sum(r["bytes_per_worker"] for r in result.metrics)
    down = rounds * 4 * result.layout.num_floats  # the broadcast weights each worker fetches
    return {"curve": curve, "bytes_sent_per_worker": up, "bytes_received_per_worker": down,
            "rounds": rounds, "tau_decisions": [r["tau"] for r in result.metrics],
            "warmup_seconds": result.warmup_seconds,
            "steps": sum(r["tau"] for r in result.metrics)}


# ---------------------------------------------------------------- 1. learning-rate screening
# Each contender as the simulator replays it; eval cadences give 6,400 samples (12,800 for
# sparknet's tau=100 rounds) between full-test-set evaluations.
SCREENED = {
    "plain loop": {"k": 1, "tau": 50, "outer": "average", "momentum_policy": "average",
                   "eval_every": 2},
    "DDP (TorchDistributor)": {"k": 2, "tau": 1, "outer": "average",
                               "momentum_policy": "average", "eval_every": 50},
    "sparknet nesterov": {"k": 2, "tau": 100, "outer": "nesterov", "momentum_policy": "reset",
                          "eval_every": 1},
}


def screen_one(job: tuple[str, float, int]) -> dict[str, Any]:
    """Samples to 89% of one (contender, lr), replayed by the simulator on one thread."""
    import torch

    from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
    from sparknet.data.shards import InputSpec
    from sparknet.errors import TrainingError
    from sparknet.simulate import simulate

    name, lr, cap_samples = job
    shape = SCREENED[name]
    torch.set_num_threads(1)
    data = fashion()
    per_round = shape["k"] * shape["tau"] * BATCH
    config = TrainConfig(
        model="lenet", seed=SEED,
        engine=EngineConfig(num_workers=shape["k"], tau=shape["tau"], batch_size=BATCH,
                            rounds=-(-cap_samples // per_round), eval_every=shape["eval_every"]),
        optimizer=OptimizerConfig(lr=lr, momentum=0.9, momentum_policy=shape["momentum_policy"]),
        outer=OuterConfig(name=shape["outer"]))
    try:
        result = simulate((data["train_x"], data["train_y"]), config=config,
                          test=(data["test_x"], data["test_y"]),
                          spec=InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255),
                          stop=lambda r: r["test_accuracy"] >= TARGET)
    except TrainingError:  # the loss became NaN: this rate is too high for this contender
        return {"contender": name, "lr": lr, "samples_to_target": None,
                "final_accuracy": 0.0, "samples": 0, "diverged": True}
    curve = result.curve()
    hit = next((r["samples"] for r in curve if r["test_accuracy"] >= TARGET), None)
    return {"contender": name, "lr": lr, "samples_to_target": hit,
            "final_accuracy": curve[-1]["test_accuracy"], "samples": curve[-1]["samples"]}


def screen(names: list[str], *, cap_samples: int, processes: int) -> list[dict[str, Any]]:
    import multiprocessing

    jobs = [(name, lr, cap_samples) for name in names for lr in LRS]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        return pool.map(screen_one, jobs, chunksize=1)


def best_lr(rows: list[dict[str, Any]], name: str) -> float:
    mine = [r for r in rows if r["contender"] == name]
    return min(mine, key=lambda r: (r["samples_to_target"] or float("inf"),
                                    -r["final_accuracy"]))["lr"]


# ---------------------------------------------------------------- 2. throughput ceiling
def ceiling(data: dict[str, np.ndarray], *, steps: int) -> dict[str, float]:
    images, labels = data["train_x"], data["train_y"]
    return {"loop_1_thread": baseline.loop_throughput(images, labels, threads=1, steps=steps),
            "loop_2_threads": baseline.loop_throughput(images, labels, threads=2, steps=steps),
            "two_1_thread_processes": sum(baseline.side_by_side(steps))}


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
            **{k: run[k] for k in ("tau_decisions", "rounds", "allreduces", "warmup_seconds")
               if k in run},
            "curve": run["curve"]}


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--screen-cap", type=int, default=256_000,
                        help="a screening run stops here if it has not reached 89%%")
    parser.add_argument("--eval-samples", type=int, default=12_800,
                        help="evaluate the loop and DDP every this many training samples")
    parser.add_argument("--ceiling-steps", type=int, default=400)
    parser.add_argument("--max-samples", type=int, default=640_000)
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="training-clock cap of one run")
    parser.add_argument("--taus", default="100,auto", help="sparknet's tau settings to run")
    parser.add_argument("--delays", default="0.1,1")
    parser.add_argument("--delay-max-seconds", type=float, default=150.0,
                        help="training-clock cap of the DDP runs with a delay")
    parser.add_argument("--lr", action="append", default=[], metavar="CONTENDER=LR",
                        help="skip screening for a contender ('plain', 'ddp', 'nesterov') and "
                             "use this learning rate")
    parser.add_argument("--out", type=Path, default=RESULTS / "head_to_head.json")
    args = parser.parse_args(list(argv) if argv is not None else None)

    report: dict[str, Any] = {
        "machine": machine(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "target": TARGET, "eval_interval_samples": args.eval_samples,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "screening": [], "runs": []}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))

    def log(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    # 1. Learning rates, before Spark starts (the screening forks worker processes).
    aliases = {"plain": "plain loop", "ddp": "DDP (TorchDistributor)",
               "nesterov": "sparknet nesterov"}
    best = {aliases[k]: float(v) for k, _, v in (item.partition("=") for item in args.lr)}
    report["lr_chosen_without_screening"] = sorted(best)
    names = [name for name in SCREENED if name not in best]
    if names:
        report["screening"] = screen(names, cap_samples=args.screen_cap, processes=2)
        for row in report["screening"]:
            log(f"screen {row['contender']} lr={row['lr']}: samples to 89% "
                f"{row['samples_to_target']}, final {100 * row['final_accuracy']:.2f}%")
        best.update({name: best_lr(report["screening"], name) for name in names})
    report["best_lr"] = best
    save()

    # 2. Throughput ceiling of two cores.
    data = fashion()
    report["ceiling"] = ceiling(data, steps=args.ceiling_steps)
    log(f"ceiling (samples/s): {report['ceiling']}")
    save()

    from sparknet.data.sources import fashion_mnist_data
    from sparknet.engine.spark_session import get_or_create_session

    spark = get_or_create_session("local[2]", app_name="sparknet-head-to-head")
    shards = fashion_mnist_data(spark.sparkContext, num_workers=2, seed=SEED)

    def record(name: str, lr: float, delay: float, run: dict[str, Any]) -> dict[str, Any]:
        row = summarise(name, lr, delay, run)
        report["runs"].append(row)
        save()
        log(f"{name} lr={lr} S={delay}: time to 89% {row['time_to_target_s']} s, "
            f"final {100 * row['final_accuracy']:.2f}%, {row['samples_per_s']:.0f} samples/s")
        return row

    # 3. Timed runs to 89%.
    free = Limits(interval=0, max_samples=args.max_samples, max_seconds=args.max_seconds)
    limits = replace(free, interval=args.eval_samples)
    taus = [t if t == "auto" else int(t) for t in args.taus.split(",")]
    lr = best["sparknet nesterov"]
    for tau in taus:
        record(f"sparknet nesterov, tau {tau}", lr, 0.0,
               sparknet_run(shards, lr=lr, outer="nesterov", delay=0.0, limits=free, tau=tau))
    lr = best["plain loop"]
    record("plain loop, 1 thread", lr, 0.0, plain_loop(data, lr=lr, threads=1, limits=limits))
    record("plain loop, 2 threads", lr, 0.0, plain_loop(data, lr=lr, threads=2, limits=limits))
    lr = best["DDP (TorchDistributor)"]
    record("DDP (TorchDistributor)", lr, 0.0, ddp(lr=lr, delay=0.0, limits=limits))

    # 4. The same with a synchronisation delay S.
    for delay in (float(d) for d in args.delays.split(",") if d):
        lr = best["sparknet nesterov"]
        for tau in taus:
            record(f"sparknet nesterov, tau {tau}", lr, delay,
                   sparknet_run(shards, lr=lr, outer="nesterov", delay=delay, limits=free,
                                tau=tau))
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
