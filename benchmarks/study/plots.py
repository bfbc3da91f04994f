"""Heat maps and S-sweeps of SparkNet's speedup from the simulated curves (``grid.py``).

Speedup to a target = serial time / parallel time, with the serial loop's time
``serial_steps * C`` and the parallel time ``rounds * S + steps_per_worker * C`` (the time model
of ``sparknet.simulate.speedup``). A run that stopped at the serial loop's number of steps
without reaching the target is shown as "<1"; a cell never run is blank ("not run").
Measured points (real ``local[2]`` runs of ``measured.py``) are drawn on the S-sweep at their
measured per-round overhead.

    .venv/bin/python benchmarks/study/plots.py --step-ms 28.4
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sparknet.simulate import first_reaching, speedup  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parents[0] / "results" / "study"
FIGURES = HERE.parents[1] / "docs" / "figures"
KS = (1, 2, 4, 8, 16, 32)
TAUS = (1, 5, 10, 25, 50, 100, 200, 500)
DELAYS = (0.0, 0.1, 1.0, 10.0)


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def serial_steps(rows: list[dict[str, Any]], target: float) -> int | None:
    serial = next(r for r in rows if r["job"]["kind"] == "serial")
    hit = first_reaching(serial["curve"], target)
    return None if hit is None else int(hit["steps_per_worker"])


def cells(rows: list[dict[str, Any]], target: float, outer: str) -> dict[tuple[int, int], Any]:
    found = {}
    for row in rows:
        job = row["job"]
        if job["kind"] == "grid" and job["outer"] == outer and job["stop_at"] == target:
            found[(job["k"], job["tau"])] = row["curve"]
    return found


def heat(ax: Any, rows: list[dict[str, Any]], *, target: float, outer: str, delay: float,
         step: float) -> None:
    steps = serial_steps(rows, target)
    grid = cells(rows, target, outer)
    values = np.full((len(KS), len(TAUS)), np.nan)
    for i, k in enumerate(KS):
        for j, tau in enumerate(TAUS):
            if (k, tau) not in grid or steps is None:
                ax.text(j, i, "not\nrun", ha="center", va="center", fontsize=6, color="gray")
                continue
            value = speedup(steps, grid[(k, tau)], target, step_seconds=step,
                            overhead_seconds=delay)
            if value is None:
                ax.text(j, i, "<1", ha="center", va="center", fontsize=8)
                values[i, j] = 0.5
            else:
                values[i, j] = value
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    ax.imshow(values, cmap="viridis", vmin=0, vmax=max(2.0, float(np.nanmax(values))
                                                       if np.isfinite(values).any() else 2.0),
              aspect="auto")
    ax.set_xticks(range(len(TAUS)), [str(t) for t in TAUS])
    ax.set_yticks(range(len(KS)), [str(k) for k in KS])
    ax.set_xlabel("tau")
    ax.set_ylabel("K")
    ax.set_title(f"{outer}, {100 * target:.0f}%, S = {delay:g} s", fontsize=9)


def sweep(ax: Any, rows: list[dict[str, Any]], *, target: float, outer: str, step: float,
          measured: list[dict[str, Any]]) -> None:
    steps = serial_steps(rows, target)
    grid = cells(rows, target, outer)
    for k in KS:
        curves = {tau: c for (kk, tau), c in grid.items() if kk == k}
        if not curves or steps is None:
            continue
        per_step = [speedup(steps, curves[1], target, step_seconds=step, overhead_seconds=s)
                    if 1 in curves else None for s in DELAYS]
        best = [max((v for v in (speedup(steps, c, target, step_seconds=step,
                                         overhead_seconds=s) for c in curves.values())
                     if v is not None), default=None) for s in DELAYS]
        xs = [max(s, 0.01) for s in DELAYS]
        line = ax.plot(xs, [np.nan if v is None else v for v in best], "o-",
                       label=f"K={k}, best tau")[0]
        ax.plot(xs, [np.nan if v is None else v for v in per_step], "x--",
                color=line.get_color(), label=f"K={k}, tau=1")
    for point in measured:
        ax.plot(max(point["delay_s"], 0.01), point["speedup"], "*", markersize=11,
                label=f"measured {point['label']}, S={point['delay_s']:.2f} s")
    ax.set_xscale("log")
    ax.axhline(1.0, color="gray", lw=0.5)
    ax.set_xlabel("S, seconds per round (0 drawn at 0.01)")
    ax.set_ylabel("speedup over the serial loop")
    ax.set_title(f"{outer}, {100 * target:.0f}%", fontsize=9)
    ax.legend(fontsize=6)


def measured_points(path: Path | None, target: float, outer: str) -> list[dict[str, Any]]:
    """Real local[2] runs (``measured.py``), drawn at their measured per-round overhead S."""
    if path is None or not path.is_file():
        return []
    points = []
    for run in json.loads(path.read_text())["points"]:
        value = run.get(f"speedup_{round(100 * target)}")
        if run["outer"] == outer and value is not None:
            points.append({"delay_s": run["overhead_s"], "speedup": value,
                           "label": f"K={run['k']} tau={run['tau']}"})
    return points


def markdown(rows: list[dict[str, Any]], *, target: float, outer: str, delay: float,
             step: float) -> str:
    """The heat map as a Markdown table (for docs/study.md)."""
    steps = serial_steps(rows, target)
    grid = cells(rows, target, outer)
    lines = ["| K \\ tau | " + " | ".join(str(t) for t in TAUS) + " |",
             "|---" * (len(TAUS) + 1) + "|"]
    for k in KS:
        row = []
        for tau in TAUS:
            if (k, tau) not in grid or steps is None:
                row.append("not run")
                continue
            value = speedup(steps, grid[(k, tau)], target, step_seconds=step,
                            overhead_seconds=delay)
            row.append("<1" if value is None else f"{value:.2f}")
        lines.append(f"| {k} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curves", type=Path, default=RESULTS / "curves.jsonl")
    parser.add_argument("--step-ms", type=float, required=True,
                        help="C, measured milliseconds per local step")
    parser.add_argument("--targets", default="0.85")
    parser.add_argument("--measured", type=Path, default=RESULTS / "measured.json")
    args = parser.parse_args(argv)
    rows = load(args.curves)
    step = args.step_ms / 1000
    FIGURES.mkdir(parents=True, exist_ok=True)
    for target in (float(t) for t in args.targets.split(",")):
        fig, axes = plt.subplots(2, 2, figsize=(11, 8))
        for col, outer in enumerate(("average", "nesterov")):
            for row, delay in enumerate((0.0, 1.0)):
                heat(axes[row][col], rows, target=target, outer=outer, delay=delay, step=step)
        fig.suptitle(f"Speedup to {100 * target:.0f}% (simulated, C = {args.step_ms:g} ms/step)")
        fig.tight_layout()
        fig.savefig(FIGURES / f"speedup_heatmap_{round(100 * target)}.png", dpi=110)
        plt.close(fig)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        for col, outer in enumerate(("average", "nesterov")):
            sweep(axes[col], rows, target=target, outer=outer, step=step,
                  measured=measured_points(args.measured, target, outer))
        fig.tight_layout()
        fig.savefig(FIGURES / f"speedup_vs_s_{round(100 * target)}.png", dpi=110)
        plt.close(fig)
        tables = [f"{outer}, S = {delay:g} s:\n\n"
                  + markdown(rows, target=target, outer=outer, delay=delay, step=step)
                  for outer in ("average", "nesterov") for delay in (0.0, 1.0)]
        (RESULTS / f"speedup_{round(100 * target)}.md").write_text("\n\n".join(tables) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
