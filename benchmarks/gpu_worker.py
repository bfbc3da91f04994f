#!/usr/bin/env python
"""The worker on a GPU: images/s of ``run_local_steps`` against a plain PyTorch loop, a round
on the CPU against the same round on the GPU, and LeNet through the in-process runner.

For AlexNet (batch 256), GoogLeNet (32) and ResNet-50 (64), sparknet's built-ins, on in-memory
uint8 images (3x227x227 for AlexNet, 3x224x224 for the others):

- the worker: ``run_local_steps`` rounds of ``--tau`` steps (state loaded, batches gathered
  one step ahead, copied as uint8, converted on the GPU, the change copied back once);
- the plain loop: the same network, optimizer (SGD momentum 0.9) and precision, its uint8
  images already on the GPU, each step indexing a batch, scaling it and stepping;

in fp32 (exact: TF32 off), bf16 (autocast) and bf16 with channels_last. Target: the worker
>= 0.95x the plain loop. Then one round of 20 LeNet steps on the CPU and on the GPU in exact
fp32 (target: relative difference of the change <= 1e-4), and LeNet samples/s through the
in-process runner with K = 8 virtual workers (tau 50, batch 64).

Needs PyTorch only (no Java, no PySpark). ``--smoke`` runs everything at tiny sizes on the CPU
in seconds (what the tests run). Writes ``gpu_worker.json`` and ``gpu_worker.md`` to ``--out``.

    python benchmarks/gpu_worker.py --out benchmarks/results      # on a CUDA host, < 8 min
    python benchmarks/gpu_worker.py --smoke --out /tmp/gpu-smoke  # anywhere
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sparknet.config import OptimizerConfig
from sparknet.data.shards import Shard
from sparknet.engine.device import forward_precision, tf32_scope
from sparknet.engine.local_steps import LocalPlan, RoundState, run_local_steps
from sparknet.engine.runner import InProcessRunner
from sparknet.flat import FlatLayout, flatten_state
from sparknet.models.kinds import ScaledInput, TorchOptimizer
from sparknet.models.zoo import builtin_factory


@dataclass(frozen=True)
class Case:
    net: str
    batch: int
    size: int


FULL = (Case("alexnet", 256, 227), Case("googlenet", 32, 224), Case("resnet50", 64, 224))
SMOKE = (Case("alexnet", 2, 64), Case("googlenet", 2, 32), Case("resnet50", 2, 32))
VARIANTS = (("fp32", False), ("bf16", False), ("bf16", True))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def network(case: Case, device: torch.device, classes: int) -> nn.Module:
    torch.manual_seed(0)
    factory = builtin_factory(f"{case.net}#{classes}")
    assert factory is not None
    return factory().to(device)


def plan_for(case: Case, *, tau: int, precision: str, channels_last: bool) -> LocalPlan:
    return LocalPlan(seed=0, round_index=0, step_offset=0, tau=tau, batch_size=case.batch,
                     optimizer=TorchOptimizer(OptimizerConfig(lr=0.001, momentum=0.9)),
                     input_prep=ScaledInput((3, case.size, case.size), 1 / 255),
                     compression="none", sample_weight=False, threads=1,
                     precision=precision,  # type: ignore[arg-type]
                     channels_last=channels_last)


def worker_images_per_s(case: Case, shard: Shard, device: torch.device, *, tau: int,
                        rounds: int, precision: str, channels_last: bool) -> float:
    """Images/s of whole worker rounds (the first is a warm-up), median over rounds."""
    model = network(case, device, classes=10)
    layout = FlatLayout.of(model)
    floats, ints = flatten_state(model, layout)
    state = RoundState(floats, ints)
    plan = plan_for(case, tau=tau, precision=precision, channels_last=channels_last)
    seconds = []
    for index in range(rounds + 1):
        sync(device)
        started = time.perf_counter()
        run_local_steps(model, layout, shard, state, replace(plan, round_index=index),
                        partition=0, device=device)
        sync(device)
        if index:
            seconds.append(time.perf_counter() - started)
    return tau * case.batch / statistics.median(seconds)


def plain_images_per_s(case: Case, shard: Shard, device: torch.device, *, steps: int,
                       precision: str, channels_last: bool) -> float:
    """Images/s of a plain loop with its uint8 images already on the device."""
    model = network(case, device, classes=10)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    images = torch.from_numpy(shard.features).to(device)
    labels = torch.from_numpy(shard.labels).to(device)
    order = torch.randperm(len(shard), generator=torch.Generator().manual_seed(0)).to(device)
    model.train()

    def step(index: int) -> None:
        pick = order[(index * case.batch) % len(shard):][:case.batch]
        x = (images[pick].to(torch.float32) * (1 / 255)).contiguous(memory_format=fmt)
        optimizer.zero_grad(set_to_none=True)
        with forward_precision(precision, device):  # type: ignore[arg-type]
            loss = F.cross_entropy(model(x), labels[pick])
        loss.backward()
        optimizer.step()

    with tf32_scope(precision):  # type: ignore[arg-type]
        for index in range(max(3, steps // 5)):  # warm-up (cuDNN's algorithm search)
            step(index)
        sync(device)
        started = time.perf_counter()
        for index in range(steps):
            step(index)
        sync(device)
    return steps * case.batch / (time.perf_counter() - started)


def images(case: Case, count: int) -> Shard:
    rng = np.random.default_rng(1)
    return Shard(rng.integers(0, 256, (count, 3, case.size, case.size), dtype=np.uint8),
                 rng.integers(0, 10, count).astype(np.int64))


def compare_worker(cases: tuple[Case, ...], device: torch.device, *, tau: int,
                   rounds: int) -> list[dict[str, Any]]:
    rows = []
    for case in cases:
        shard = images(case, max(2 * case.batch, 8))
        for precision, channels_last in VARIANTS:
            plain = plain_images_per_s(case, shard, device, steps=tau * rounds,
                                       precision=precision, channels_last=channels_last)
            worker = worker_images_per_s(case, shard, device, tau=tau, rounds=rounds,
                                         precision=precision, channels_last=channels_last)
            row = {"net": case.net, "batch": case.batch, "size": case.size,
                   "precision": precision, "channels_last": channels_last,
                   "plain_images_per_s": plain, "worker_images_per_s": worker,
                   "ratio": worker / plain}
            print(json.dumps(row), flush=True)
            rows.append(row)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def lenet_round(device: torch.device, *, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(initial weights, the round's change) of ``steps`` LeNet steps in exact fp32."""
    torch.manual_seed(0)
    model = builtin_factory("lenet")()  # type: ignore[misc]
    layout = FlatLayout.of(model)
    floats, ints = flatten_state(model, layout)
    rng = np.random.default_rng(2)
    shard = Shard(rng.integers(0, 256, (1024, 1, 28, 28), dtype=np.uint8),
                  rng.integers(0, 10, 1024).astype(np.int64))
    plan = LocalPlan(seed=0, round_index=0, step_offset=0, tau=steps, batch_size=64,
                     optimizer=TorchOptimizer(OptimizerConfig(lr=0.01, momentum=0.9)),
                     input_prep=ScaledInput((1, 28, 28), 1 / 255), compression="none",
                     sample_weight=False, threads=1, precision="fp32")
    result = run_local_steps(model.to(device), layout, shard, RoundState(floats, ints), plan,
                             partition=0, device=device)
    return floats, np.asarray(result.delta.data)


def cpu_vs_device(device: torch.device, *, steps: int) -> dict[str, Any]:
    start, on_cpu = lenet_round(torch.device("cpu"), steps=steps)
    _, on_device = lenet_round(device, steps=steps)
    change = float(np.linalg.norm(on_device - on_cpu) / np.linalg.norm(on_cpu))
    weights = float(np.linalg.norm(on_device - on_cpu) / np.linalg.norm(start + on_cpu))
    return {"steps": steps, "device": str(device), "relative_difference_of_change": change,
            "relative_difference_of_weights": weights, "target": 1e-4,
            "within_target": change <= 1e-4}


def in_process_lenet(device: torch.device, *, workers: int, tau: int, rounds: int,
                     examples: int) -> dict[str, Any]:
    """LeNet samples/s through the in-process runner (K virtual workers in turn)."""
    from sparknet.models.registry import resolve_model

    rng = np.random.default_rng(3)
    train = (rng.integers(0, 256, (examples, 1, 28, 28), dtype=np.uint8),
             rng.integers(0, 10, examples).astype(np.int64))
    runner = InProcessRunner(train, num_workers=workers, seed=0, device=device.type)
    kind = resolve_model("lenet")
    runner.start(kind, state_bytes=0)
    torch.manual_seed(0)
    model = kind.build()
    layout = FlatLayout.of(model)
    floats, ints = flatten_state(model, layout)
    plan = LocalPlan(seed=0, round_index=0, step_offset=0, tau=tau, batch_size=64,
                     optimizer=TorchOptimizer(OptimizerConfig(lr=0.01, momentum=0.9)),
                     input_prep=ScaledInput((1, 28, 28), 1 / 255), compression="none",
                     sample_weight=False, threads=1)
    seconds = []
    for index in range(rounds + 1):
        started = time.perf_counter()
        runner.run_round(RoundState(floats, ints), replace(plan, round_index=index), fan_in=4)
        if index:
            seconds.append(time.perf_counter() - started)
    runner.close()
    samples = workers * tau * 64
    return {"workers": workers, "tau": tau, "batch": 64, "device": str(runner.device),
            "samples_per_s": samples / statistics.median(seconds),
            "step_ms": 1000 * runner.step_seconds}


def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cpu": platform.processor() or platform.machine(),
                            "cores": os.cpu_count(), "device": str(device),
                            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def report(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = ["# The worker on a GPU against a plain PyTorch loop", "",
             f"Device: {m.get('gpu', m['device'])} (torch {m['torch']}, CUDA "
             f"{m.get('cuda', 'none')}); {m['cores']} CPU cores; {m['date']}.",
             f"Command: `{data['command']}`." + (" **Smoke run: tiny sizes, not figures.**"
                                                 if data["smoke"] else ""), "",
             "Worker: `run_local_steps` rounds of tau steps (state in, change out included); "
             "plain: the same network and optimizer with its uint8 images already on the "
             "device. Target: ratio >= 0.95.", "",
             "| net | batch | precision | channels_last | plain images/s | worker images/s "
             "| ratio |", "|---|---|---|---|---|---|---|"]
    for r in data["worker"]:
        lines.append(f"| {r['net']} | {r['batch']} | {r['precision']} | {r['channels_last']} "
                     f"| {r['plain_images_per_s']:.1f} | {r['worker_images_per_s']:.1f} | "
                     f"{r['ratio']:.3f} |")
    c = data["cpu_vs_device"]
    lines += ["", f"One round of {c['steps']} LeNet steps in exact fp32, CPU vs {c['device']}: "
              f"relative difference of the change {c['relative_difference_of_change']:.2e}, "
              f"of the weights {c['relative_difference_of_weights']:.2e} (target 1e-4 on the "
              f"change: {'met' if c['within_target'] else 'missed'}).", ""]
    r = data["in_process"]
    lines += [f"LeNet through the in-process runner, K = {r['workers']} virtual workers, tau "
              f"{r['tau']}, batch {r['batch']} on {r['device']}: {r['samples_per_s']:.0f} "
              f"samples/s ({r['step_ms']:.2f} ms per local step, the figure "
              "`sparknet simulate --step-ms` takes).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the report")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--tau", type=int, default=10, help="steps per worker round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per case")
    args = parser.parse_args()
    if args.smoke:
        device, cases, tau, rounds = torch.device("cpu"), SMOKE, 2, 1
        lenet = {"workers": 8, "tau": 2, "rounds": 1, "examples": 1024}
        steps = 3
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run on a GPU host, or pass --smoke")
        device, cases, tau, rounds = torch.device("cuda"), FULL, args.tau, args.rounds
        lenet = {"workers": 8, "tau": 50, "rounds": 3, "examples": 60_000}
        steps = 20
    started = time.perf_counter()
    data: dict[str, Any] = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
                            "smoke": args.smoke, "machine": machine(device)}
    data["worker"] = compare_worker(cases, device, tau=tau, rounds=rounds)
    data["cpu_vs_device"] = cpu_vs_device(device, steps=steps)
    data["in_process"] = in_process_lenet(device, **lenet)
    data["seconds"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_worker.json").write_text(json.dumps(data, indent=2))
    (args.out / "gpu_worker.md").write_text(report(data))
    print(f"report: {args.out / 'gpu_worker.md'} ({data['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
