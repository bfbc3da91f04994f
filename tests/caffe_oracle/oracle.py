"""The client side of the real-Caffe oracle: write a request folder, run
``scripts/caffe_oracle.sh run`` on it, read Caffe's results back (npz, never pickle)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from tests.caffe.oracle_cases import Arrays, NetCase, SolverCase

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "caffe_oracle.sh"
Result = Arrays | str  # Caffe's results, or why Caffe refused the case


def oracle_status() -> tuple[bool, str]:
    """Whether the chroot is built, and the script's line saying where (or how to build it)."""
    done = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True,
                          check=False)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


def _write_request(folder: Path, cases: list[NetCase | SolverCase]) -> None:
    entries = []
    for case in cases:
        arrays = f"{case.name}.npz"
        np.savez(folder / arrays, **case.arrays)  # type: ignore[arg-type]
        if isinstance(case, NetCase):
            (folder / f"{case.name}.prototxt").write_text(case.prototxt)
            entries.append({"name": case.name, "kind": "net", "prototxt": f"{case.name}.prototxt",
                            "phase": case.phase, "arrays": arrays, "backward": case.backward,
                            "passes": case.passes, "lr": case.lr})
        else:
            net = f"{case.name}.net.prototxt"
            (folder / net).write_text(case.net)
            (folder / f"{case.name}.solver.prototxt").write_text(f'net: "{net}"\n{case.solver}')
            entries.append({"name": case.name, "kind": "solver", "arrays": arrays,
                            "solver": f"{case.name}.solver.prototxt",
                            "iterations": case.iterations})
    (folder / "request.json").write_text(json.dumps({"cases": entries}))


def _why_aborted(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if "Check failed" in ln or ln.startswith("F")]
    tail = lines[-1] if lines else (stderr.strip().splitlines() or ["no output"])[-1]
    return f"Caffe aborted: {tail.strip()}"


def run_oracle(cases: list[NetCase | SolverCase], workdir: Path) -> dict[str, Result]:
    """Caffe's results for every case, by name. A case Caffe aborts on (a CHECK failure ends
    the process) gets the reason as a string, and the cases after it run again."""
    results: dict[str, Result] = {}
    remaining = list(cases)
    attempt = 0
    while remaining:
        folder = workdir / f"request{attempt}"
        folder.mkdir(parents=True)
        attempt += 1
        _write_request(folder, remaining)
        done = subprocess.run(["bash", str(SCRIPT), "run", str(folder)], capture_output=True,
                              text=True, check=False)
        out = folder / "out"
        finished = (out / "done").read_text().split() if (out / "done").is_file() else []
        for name in finished:
            error = out / f"{name}.error"
            if error.is_file():
                results[name] = f"Caffe raised: {error.read_text().strip().splitlines()[-1]}"
                continue
            with np.load(out / f"{name}.npz", allow_pickle=False) as npz:
                results[name] = {k: npz[k] for k in npz.files}
        remaining = remaining[len(finished):]
        if done.returncode != 0:
            if not remaining:
                raise RuntimeError(f"caffe oracle failed: {done.stderr.strip()[-2000:]}")
            results[remaining[0].name] = _why_aborted(done.stderr)
            remaining = remaining[1:]
    return results


def run_request(folder: Path, entries: list[dict[str, object]]) -> dict[str, Result]:
    """Caffe's results for request entries whose files the caller has put in ``folder``
    (imageset and schema cases); what the runner leaves in ``folder/out`` stays there."""
    (folder / "request.json").write_text(json.dumps({"cases": entries}))
    done = subprocess.run(["bash", str(SCRIPT), "run", str(folder)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"caffe oracle failed: {_why_aborted(done.stderr)}")
    results: dict[str, Result] = {}
    for entry in entries:
        name = str(entry["name"])
        error = folder / "out" / f"{name}.error"
        if error.is_file():
            results[name] = f"Caffe raised: {error.read_text().strip().splitlines()[-1]}"
            continue
        with np.load(folder / "out" / f"{name}.npz", allow_pickle=False) as npz:
            results[name] = {k: npz[k] for k in npz.files}
    return results
