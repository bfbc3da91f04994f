#!/usr/bin/env python
"""The real-Caffe oracle report: how many configurations of each layer type and solver the
differential fuzzer (tests/caffe_oracle) compared with real Caffe, forward and backward, and
how many mismatched before the fixes and after them.

Runs the oracle suite (``pytest -m caffe_oracle tests/caffe_oracle``) on this checkout's
``src``, and with ``--before-src`` a second time on an older tree's ``src`` (the same
generators and seed, so the same configurations), e.g. the commit before the fixes:

    mkdir -p /tmp/sparknet-before && git archive b38decb src | tar -x -C /tmp/sparknet-before
    .venv/bin/python benchmarks/caffe_oracle.py --before-src /tmp/sparknet-before/src \\
        [--cases 40] [--solver-cases 4] [--seed 0]

Needs the chroot of ``scripts/caffe_oracle.sh build``. Writes
benchmarks/results/caffe_oracle.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command, machine, write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REGRESSIONS = ROOT / "tests" / "data" / "caffe_regressions"


def run_suite(src: Path, *, cases: int, solver_cases: int, seed: int) -> dict[str, Any]:
    """One oracle run on ``src``: its per-type summaries, exit code and time."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.jsonl"
        env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}",
               "SPARKNET_ORACLE_CASES": str(cases),
               "SPARKNET_ORACLE_SOLVER_CASES": str(solver_cases),
               "SPARKNET_ORACLE_SEED": str(seed), "SPARKNET_ORACLE_SUMMARY": str(summary)}
        started = time.perf_counter()
        # Its own basetemp: another pytest run's clean-up must not delete its request folders.
        # -rA: one PASSED/FAILED line per test (the checks table); an older src that lacks
        # a module a newer test imports fails that file only.
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p",
                               "no:cacheprovider", "--continue-on-collection-errors",
                               f"--basetemp={Path(tmp) / 'pytest'}", "-m", "caffe_oracle",
                               str(ROOT / "tests" / "caffe_oracle")],
                              cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        lines = summary.read_text().splitlines() if summary.is_file() else []
    if not lines:
        raise SystemExit(f"the oracle suite recorded nothing (is the chroot built?):\n"
                         f"{done.stdout[-3000:]}{done.stderr[-2000:]}")
    rows = [json.loads(line) for line in lines]
    return {"src": str(src), "returncode": done.returncode, "seconds": round(seconds, 1),
            "layers": {r["type"]: r for r in rows if r["kind"] == "layer"},
            "solvers": {r["type"]: r for r in rows if r["kind"] == "solver"},
            "nets": {r["type"]: r for r in rows if r["kind"] == "net"},
            "checks": _check_results(done.stdout),
            "check_counts": _check_counts(done.stdout),
            "check_failures": _check_counts(done.stdout, "FAILED"),
            "tail": done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "",
            "failed": [ln.split()[1].split("[")[-1].rstrip("]")
                       for ln in done.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]}


# The oracle tests that are not fuzzers: what each compares with real Caffe.
CHECKS = {
    "test_net_semantics_match_caffe": "net semantics: anonymous loss tops, loss weights (0, "
    "on a split loss blob, on a non-loss top), shared and named params (STRICT, and "
    "PERMISSIVE between shapes of one count), Convolution over two bottoms, MAX pooling "
    "mask, per-class Accuracy, level/stage rules; every blob and gradient",
    "test_first_batch_equals_caffes_data_layer": "Data layer: databases written by Caffe's "
    "convert_imageset (LMDB, LevelDB; raw, gray, resized, encoded PNG/JPEG, force_gray): "
    "the first batch equals Caffe's Data layer output (one test per database)",
    "test_a_caffe_made_lmdb_trains_through_the_cli": "a Caffe-made LMDB trains through "
    "`sparknet train --model caffe:NET.prototxt`",
    "test_schema_declares_every_field_of_caffes_proto": "every field of Caffe's caffe_pb2 is "
    "in sparknet's schema with its number, type and label",
    "test_fillers_match_caffe_by_blob_rank": "fillers (constant, uniform, gaussian, sparse "
    "gaussian, xavier and msra with every variance_norm, positive_unitball) on blobs of rank "
    "1-4: bounds, standard deviations, zeros, row sums",
    "test_bilinear_filler_is_caffes_exactly": "the bilinear filler, kernel sizes 1-7, bit "
    "for bit",
    "test_solver_state_matches_caffe": "solver state: Caffe's .solverstate after 2 of 4 "
    "iterations equals sparknet's, and restored it reaches Caffe's weights of iteration 4 "
    "(every solver type)",
    "test_cli_continues_a_snapshot_as_caffe": "`sparknet train --caffe-snapshot` (K=1, on "
    "Spark) from Caffe's snapshot after 2 iterations ends at the weights Caffe's "
    "`solver.restore` reaches after the 4 left to max_iter (every solver type; SGD and "
    "Nesterov over 2 and 4 rounds of averaged momentum)",
    "test_second_forward_pass_is_refused_as_caffe_aborts": "HDF5Output over two forward "
    "passes: Caffe aborts on the second (its datasets exist); sparknet refuses it in one "
    "line, and its file of the first pass is Caffe's",
    "test_hdf5_data_matches_caffe": "HDF5Data on files written by h5py (float32/float64/"
    "integer datasets, 1-3 files, 2-3 tops, rows of 1-4 axes, vector labels): Caffe's first "
    "3 batches (spanning files, cycling) equal sparknet's rows exactly; with shuffle every "
    "row Caffe gives is a row of the files with its label (one test per case)",
    "test_dummy_data_matches_caffe": "DummyData over 3 passes: constant fillers (and none) "
    "exactly in both shape spellings, random fillers (uniform, gaussian, xavier, msra, "
    "positive_unitball) by their distribution, drawn anew each pass (one test per case)",
    "test_image_data_matches_caffe": "ImageData on an image list (PNG/JPEG, colour/gray, "
    "resize, crop, mean values, scale): Caffe's first 3 batches equal sparknet's exactly "
    "(one test per case)",
    "test_window_data_matches_caffe": "WindowData on a window file (warp/square crops, "
    "context padding clipped at borders, mirror, mean values/file, scale): each item of "
    "Caffe's 3 batches is sparknet's warp of a window of its kind with its label, exactly "
    "(one test per case)",
}

# Caffe 1.0's layer types outside the fuzzer's table, and how each is compared with Caffe
# (the counts come from the run: ``_outside_count``).
OUTSIDE = {
    "Input": "every configuration in the layer table reads its bottoms from Input layers",
    "MemoryData": "every solver configuration (below) and every --caffe-snapshot case feeds "
                  "its batches through MemoryData",
    "Data": "databases written by Caffe's `convert_imageset` (LMDB, LevelDB): the first "
            "batch equals Caffe's Data layer output, one case per database (checks table)",
    "ImageData": "an image list made in the oracle's folder: the first batches equal Caffe's "
                 "ImageData output (checks table); real Caffe's stored batches are also "
                 "compared in the default suite (tests/caffe/test_transform.py)",
    "HDF5Data": "files written by h5py: the first batches equal Caffe's HDF5Data output, "
                "one case per file set (checks table)",
    "DummyData": "constant fillers exactly, random ones by distribution, per pass (checks "
                 "table)",
    "WindowData": "each item of Caffe's batches matched to sparknet's warp of one window "
                  "(checks table)",
    "Python": "never built: it runs the Python module its prototxt names",
}


def _check_results(stdout: str) -> dict[str, str]:
    """PASSED/FAILED/ERROR per check test (parametrised ones: failed if any case failed)."""
    results: dict[str, str] = {}
    for line in stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word not in ("PASSED", "FAILED", "ERROR"):
            continue
        name = rest.split("::")[-1].split("[")[0].split(" ")[0]
        if name in CHECKS and results.get(name) != "failed":
            results[name] = "passed" if word == "PASSED" else "failed"
    return results


def _check_counts(stdout: str, outcome: str = "PASSED") -> dict[str, int]:
    """How many cases (parametrisations) of each check test passed (or failed)."""
    counts: dict[str, int] = {}
    for line in stdout.splitlines():
        word, _, rest = line.partition(" ")
        name = rest.split("::")[-1].split("[")[0].split(" ")[0]
        if word == outcome and name in CHECKS:
            counts[name] = counts.get(name, 0) + 1
    return counts


OUTSIDE_TESTS = {"Data": "test_first_batch_equals_caffes_data_layer",
                 "HDF5Data": "test_hdf5_data_matches_caffe",
                 "DummyData": "test_dummy_data_matches_caffe",
                 "ImageData": "test_image_data_matches_caffe",
                 "WindowData": "test_window_data_matches_caffe"}


def _outside_count(after: dict[str, Any], kind: str) -> tuple[str, str]:
    """(cases compared, cases mismatched) of a type outside the layer table."""
    counts = after.get("check_counts", {})
    failures = after.get("check_failures", {})
    if kind == "Input":
        return (str(sum(row["forward"] for row in after["layers"].values())),
                str(sum(row["mismatched"] for row in after["layers"].values())))
    if kind == "MemoryData":
        solvers = sum(row["compared"] for row in after["solvers"].values())
        snapshot = "test_cli_continues_a_snapshot_as_caffe"
        return (str(solvers + 6 * (counts.get(snapshot, 0) + failures.get(snapshot, 0))),
                str(sum(row["mismatched"] for row in after["solvers"].values())
                    + 6 * failures.get(snapshot, 0)))
    if kind in OUTSIDE_TESTS:
        name = OUTSIDE_TESTS[kind]
        return (str(counts.get(name, 0) + failures.get(name, 0)), str(failures.get(name, 0)))
    return "–", "–"


def outside_table(after: dict[str, Any]) -> list[str]:
    lines = ["| layer type | compared with Caffe | mismatched | how |", "|---|---:|---:|---|"]
    for kind, how in OUTSIDE.items():
        compared, mismatched = _outside_count(after, kind)
        lines.append(f"| {kind} | {compared} | {mismatched} | {how} |")
    return lines


def checks_table(after: dict[str, Any], before: dict[str, Any] | None) -> list[str]:
    lines = ["| oracle test | what it compares with real Caffe | before | after |",
             "|---|---|---|---|"]
    for name, what in CHECKS.items():
        old = (before or {}).get("checks", {}).get(name, "not there") if before else "–"
        lines.append(f"| `{name}` | {what} | {old} | {after['checks'].get(name, 'not run')} |")
    return lines


def _before(before: dict[str, Any] | None, kind: str, name: str, key: str) -> str:
    if before is None:
        return "–"
    row = before[kind].get(name)
    return "–" if row is None else str(row[key])


def layer_table(after: dict[str, Any], before: dict[str, Any] | None) -> list[str]:
    lines = ["| layer type | generated | compared forward | compared backward | refused by "
             "both | compared before the fixes | mismatched before | mismatched after |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in sorted(after["layers"].items()):
        lines.append(f"| {name} | {row['generated']} | {row['forward']} | {row['backward']} | "
                     f"{row['both_refused']} | {_before(before, 'layers', name, 'forward')} | "
                     f"{_before(before, 'layers', name, 'mismatched')} | {row['mismatched']} |")
    return lines


def solver_tables(after: dict[str, Any], before: dict[str, Any] | None) -> list[str]:
    lines = ["| solver type | generated | compared | refused by both | compared before the "
             "fixes | mismatched before | mismatched after |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in after["solvers"].items():
        lines.append(f"| {name} | {row['generated']} | {row['compared']} | "
                     f"{row['both_refused']} | {_before(before, 'solvers', name, 'compared')} | "
                     f"{_before(before, 'solvers', name, 'mismatched')} | {row['mismatched']} |")
    policies: dict[str, list[int]] = {}
    for name, row in after["solvers"].items():
        previous = before["solvers"].get(name) if before else None
        for policy, count in row["per_policy"].items():
            totals = policies.setdefault(policy, [0, 0, 0])
            totals[0] += count
            totals[1] += previous["mismatched_per_policy"][policy] if previous else 0
            totals[2] += row["mismatched_per_policy"][policy]
    lines += ["", "| lr_policy (all solver types) | compared | mismatched before | "
              "mismatched after |", "|---|---:|---:|---:|"]
    for policy, (count, old, new) in policies.items():
        lines.append(f"| {policy} | {count} | {old if before else '–'} | {new} |")
    return lines


def regression_list() -> list[str]:
    lines = ["| regression case | kind | what mismatched before the fix |", "|---|---|---|"]
    for path in sorted(REGRESSIONS.glob("*.json")):
        meta = json.loads(path.read_text())
        kind = meta.get("layer_type") or f"{meta['solver_type']} / {meta['lr_policy']}"
        lines.append(f"| `{path.stem}` | {kind} | {meta['found']} |")
    return lines


def caffe_version() -> str:
    status = subprocess.run(["bash", str(ROOT / "scripts" / "caffe_oracle.sh"), "status"],
                            capture_output=True, text=True, check=False)
    root = status.stdout.strip()
    done = subprocess.run(["chroot", root, "dpkg-query", "-W", "-f", "${Version}",
                           "python3-caffe"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def render(data: dict[str, Any]) -> str:
    """The markdown report from the run's data (what ``--from-json`` re-renders)."""
    after, before, sizes, info = data["after"], data["before"], data["sizes"], data["machine"]
    failed = [name.split("[")[-1].rstrip("]") for name in before["failed"]] if before else []
    md = [
        "# Real Caffe as an oracle: layers, nets, data, fillers and solvers", "",
        f"Command: `{data['command']}`  ",
        f"Oracle: BVLC Caffe {data['caffe']} (Debian 11 `python3-caffe`, CPU) in the chroot "
        "of `scripts/caffe_oracle.sh`  ",
        f"Machine: {info['cpu']}, {info['cores']} cores; torch {info['torch']}; "
        f"{info['date']}  ",
        f"Size: {sizes['cases']} configurations per layer type, {sizes['solver_cases']} per "
        f"solver type and lr_policy ({sizes['solver_cases'] * 7} per solver type), seed "
        f"{sizes['seed']}  ",
        f"After the fixes: `{after['tail']}` in {after['seconds']} s"
        + (f"; before (`{before['src']}`): `{before['tail']}` in {before['seconds']} s "
           f"(failing: {', '.join(failed)})" if before else ""), "",
        "Forward blobs must match within 1e-5 · max(1, max|caffe|); input and parameter "
        "gradients within 1e-4 · max(1, max|caffe|); solver parameters after every iteration "
        "within 1e-4 · max(1, max|caffe|). \"Compared\" counts configurations run by both; a "
        "configuration that one side runs and the other refuses counts as a mismatch; "
        "\"refused by both\" are draws neither accepts (Caffe's CPU STOCHASTIC pooling is "
        "NOT_IMPLEMENTED and sparknet refuses it; AbsVal, Flatten and Reshape in place). "
        "\"net\" is a small multi-layer net (in-place layers, an automatic Split, a loss "
        "weight on a non-loss top, propagate_down, phase rules, with and without "
        "force_backward). Threshold, Accuracy and ArgMax have no backward pass in Caffe. A "
        "\"–\" in the before columns: the before run did not generate that type.", "",
        "## Layers", "",
        "Every Caffe 1.0 layer type that computes something, HDF5Output included (its file "
        "compared dataset by dataset: names, shapes, dtype, values); \"LSTM (state carried "
        "over 2-4 passes)\" and the RNN row: several forward and backward passes in a row, "
        "the weights stepped between them in TRAIN, the batch changing now and then.", "",
        *layer_table(after, before), "",
        "The data layers and Python, outside this table:", "", *outside_table(after), "",
        "## Nets, databases, schema, fillers, solver state", "",
        "Not fuzzers: fixed cases compared with real Caffe (\"not there\": the test needs "
        "code the older src lacks).", "", *checks_table(after, before), "",
        "## Solvers", "",
        "Each configuration: a MemoryData → Convolution → ReLU (in place) → InnerProduct → "
        "SoftmaxWithLoss net, 3–5 iterations, random lr_mult/decay_mult, weight decay "
        "(L1 or L2) in 60%, iter_size 1–3, clip_gradients in 40%. Draws that both refuse: "
        "momentum with AdaGrad/RMSProp, rms_decay outside [0, 1).", "",
        *solver_tables(after, before), "",
        "## The mismatches found, each with its regression case", "",
        "Under `tests/data/caffe_regressions/` (prototxt + npz with Caffe's results + json), "
        "run by `tests/caffe/test_caffe_regressions.py` in the default suite. Refusals are "
        "unit tests in `tests/caffe/test_definition_errors.py`: in-place AbsVal, Flatten and "
        "Reshape (Caffe's CHECK), in-place LRN (Caffe computes wrong values), unpadded ceil "
        "pooling windows outside the input (Caffe reads and writes out of bounds), negative "
        "gamma for step/exp/inv/multistep/sigmoid, momentum with AdaGrad or RMSProp, "
        "rms_decay outside [0, 1) (Caffe's CHECKs); empty prototxt, caffemodel, solver; "
        "`sparknet caffe inspect` on a layer cycle, a duplicate name, an unknown type.", "",
        *regression_list(), "",
    ]
    return "\n".join(md)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40, help="configurations per layer type")
    parser.add_argument("--solver-cases", type=int, default=4,
                        help="configurations per solver type and lr_policy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--before-src", type=Path, default=None,
                        help="the src folder of the code before the fixes")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="re-render the report from a stored caffe_oracle.json, no run")
    args = parser.parse_args()
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        sizes = {"cases": args.cases, "solver_cases": args.solver_cases, "seed": args.seed}
        before = run_suite(args.before_src, **sizes) if args.before_src else None
        after = run_suite(ROOT / "src", **sizes)
        data = {"command": command(), "caffe": caffe_version(), "machine": machine(),
                "sizes": sizes, "after": after, "before": before}
    print(write_report("caffe_oracle", render(data), data))
    if data["after"]["returncode"] != 0:
        raise SystemExit(f"mismatches remain after the fixes: {data['after']['tail']}")


if __name__ == "__main__":
    main()
