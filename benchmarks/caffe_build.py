#!/usr/bin/env python
"""How long a network takes to build from its Caffe definition, and to write and read its
weights as a ``.caffemodel``: the BVLC AlexNet, CaffeNet and GoogLeNet deploy definitions.

Each measurement runs in a fresh Python process (what a Spark Python worker pays once), on
this checkout's ``src`` and, with ``--before-src``, on an older tree's ``src``, alternating
between the two so that both see the same machine load:

    mkdir -p /tmp/sparknet-before && git archive 4a8169a src | tar -x -C /tmp/sparknet-before
    .venv/bin/python benchmarks/caffe_build.py --before-src /tmp/sparknet-before/src

Writes benchmarks/results/caffe_build.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command, machine, machine_line, write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BVLC = ROOT.parent / "shared" / "caffe" / "models" / "bvlc_prototxt"
NETS = {"alexnet": "models__bvlc_alexnet__deploy.prototxt",
        "caffenet": "models__bvlc_reference_caffenet__deploy.prototxt",
        "googlenet": "models__bvlc_googlenet__deploy.prototxt"}


def measure(prototxt: Path, folder: Path) -> dict[str, float]:
    """Seconds to build (first, then again), write the weights, read them, build with them."""
    import torch

    from sparknet.caffe import load_net, read_caffemodel

    torch.set_num_threads(1)  # a Spark task's worker thread
    out: dict[str, float] = {}
    started = time.perf_counter()
    net = load_net(prototxt)
    out["build_first"] = time.perf_counter() - started
    started = time.perf_counter()
    net = load_net(prototxt)
    out["build"] = time.perf_counter() - started
    weights = folder / "w.caffemodel"
    started = time.perf_counter()
    net.to_caffemodel(weights)
    out["write_caffemodel"] = time.perf_counter() - started
    started = time.perf_counter()
    read_caffemodel(weights)
    out["read_caffemodel"] = time.perf_counter() - started
    started = time.perf_counter()
    load_net(prototxt, weights)
    out["build_with_weights"] = time.perf_counter() - started
    return out


def child(src: Path, net: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", net], cwd=ROOT, check=True,
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(src)})
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before-src", type=Path, help="an older tree's src to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(measure(BVLC / NETS[args.child], Path(tmp))))
        return
    trees = {"after": ROOT / "src"}
    if args.before_src is not None:
        trees = {"before": args.before_src.resolve(), **trees}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        net: {tree: [] for tree in trees} for net in args.nets.split(",")}
    for _ in range(args.repeats):
        for net, by_tree in runs.items():
            for tree, src in trees.items():  # alternate: both trees see the same load
                by_tree[tree].append(child(src, net))
                print(net, tree, by_tree[tree][-1], flush=True)
    medians = {net: {tree: {k: statistics.median(r[k] for r in rows) for k in rows[0]}
                     for tree, rows in by_tree.items()} for net, by_tree in runs.items()}
    write_report("caffe_build", report(medians, trees, args.repeats),
                 {"command": command(), "machine": machine(), "trees": trees,
                  "medians_seconds": medians, "runs": runs})


def report(medians: dict[str, Any], trees: dict[str, Path], repeats: int) -> str:
    keys = ("build_first", "build", "write_caffemodel", "read_caffemodel", "build_with_weights")
    lines = ["# Building networks from Caffe definitions", "",
             f"Median of {repeats} fresh processes per cell, seconds, one torch thread (a "
             "Spark task's). `build_first` is the first build in the process; "
             "`build_with_weights` reads the `.caffemodel` the same process wrote.", "",
             f"Machine: {machine_line()}.", f"Command: `{command()}`.", ""]
    lines += ["| net | tree | " + " | ".join(keys) + " |",
              "|---|---|" + "---|" * len(keys)]
    for net, by_tree in medians.items():
        for tree, values in by_tree.items():
            cells = " | ".join(f"{values[k]:.2f}" for k in keys)
            lines.append(f"| {net} | {tree} | {cells} |")
    if "before" in trees:
        lines += ["", "Ratio before / after (higher: the branch is faster):", "",
                  "| net | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for net, by_tree in medians.items():
            cells = " | ".join(f"{by_tree['before'][k] / by_tree['after'][k]:.1f}x"
                               for k in keys)
            lines.append(f"| {net} | {cells} |")
    lines += ["", "Trees: " + ", ".join(f"{t} = `{p}`" for t, p in trees.items()) + ".", "",
              "What the branch changed (issue 12): a `.caffemodel` blob is encoded from the "
              "array's bytes instead of a Python list of every value, and the shape probe "
              "at build time no longer copies the trainable blobs (AlexNet's fc6 alone is "
              "151 MB). Reading keeps protobuf's repeated fields, which its upb backend hands "
              "to numpy in one step (the pure-Python backend reads AlexNet's weights value by "
              "value: about a minute). The fillers were already whole-tensor operations. The "
              "11 s the issue measured on its GPU host was not reproduced on this machine: "
              "the deploy nets built in under a second here before the change too.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
