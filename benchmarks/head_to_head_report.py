"""Table (Markdown) and accuracy-against-wall-time plot from ``head_to_head.json``.

    .venv/bin/python benchmarks/head_to_head_report.py [RESULTS.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "benchmarks" / "results" / "head_to_head.json"


def mb(value: float) -> str:
    return f"{value / 1e6:,.0f} MB"


def table(report: dict[str, Any]) -> str:
    runs = report["runs"]
    base = [r["time_to_target_s"] for r in runs
            if r["delay_s"] == 0 and not r["contender"].startswith("sparknet")
            and r["time_to_target_s"] is not None]
    best_other = min(base) if base else None
    lines = ["| contender | lr | S | time to 89% | samples to 89% | samples/s | "
             "sent per worker | received per worker | vs best other (S=0) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        time = r["time_to_target_s"]
        shown = (f"{time:.0f} s" if time is not None else
                 f"not reached in {r['train_seconds']:.0f} s ({100 * r['final_accuracy']:.1f}%)")
        ratio = (f"{time / best_other:.2f}x" if time is not None and best_other else "")
        samples = f"{r['samples_to_target']:,}" if r["samples_to_target"] else ""
        lines.append(f"| {r['contender']} | {r['lr']} | {r['delay_s']:g} s | {shown} | "
                     f"{samples} | {r['samples_per_s']:,.0f} | "
                     f"{mb(r['bytes_sent_per_worker'])} | {mb(r['bytes_received_per_worker'])} "
                     f"| {ratio} |")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in report["runs"]:
        xs = [p["seconds"] for p in r["curve"]]
        ys = [100 * p["test_accuracy"] for p in r["curve"]]
        style = "-" if r["delay_s"] == 0 else ("--" if r["delay_s"] < 1 else ":")
        ax.plot(xs, ys, style, marker=".", label=f"{r['contender']}, S={r['delay_s']:g} s")
    ax.axhline(100 * report["target"], color="gray", lw=0.6)
    ax.set_ylim(80, 91)
    ax.set_xlabel("training wall time, s (evaluation excluded)")
    ax.set_ylabel("test accuracy, % (full Fashion-MNIST test set)")
    ax.set_title("LeNet on Fashion-MNIST, 2 CPU cores, one run")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0]) if args else SOURCE
    report = json.loads(source.read_text())
    text = (f"Machine: {report['machine']}\n\nCommand: `{report['command']}`\n\n"
            f"Eval interval: {report.get('eval_interval_samples')} samples\n\n"
            + table(report) + "\n")
    source.with_suffix(".md").write_text(text)
    figures = ROOT / "docs" / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    plot(report, figures / f"{source.stem}.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
