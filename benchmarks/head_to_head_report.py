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


def tau_text(run: dict[str, Any]) -> str:
    taus = run.get("tau_decisions")
    if not taus:
        return ""
    return ", ".join(str(t) for t in sorted(set(taus), key=taus.index))


def table(report: dict[str, Any]) -> str:
    runs = report["runs"]
    base = [r["time_to_target_s"] for r in runs
            if r["delay_s"] == 0 and not r["contender"].startswith("sparknet")
            and r["time_to_target_s"] is not None]
    best_other = min(base) if base else None
    own_s0 = {r["contender"]: r["time_to_target_s"] for r in runs
              if r["delay_s"] == 0 and r["time_to_target_s"] is not None}
    lines = ["| contender | lr | S | time to 89% | samples to 89% | samples/s | "
             "sent per worker | received per worker | vs best other (S=0) | tau |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        time = r["time_to_target_s"]
        shown = (f"{time:.0f} s" if time is not None else
                 f"not reached in {r['train_seconds']:.0f} s ({100 * r['final_accuracy']:.1f}%)")
        ratio = (f"{time / best_other:.2f}x" if time is not None and best_other else "")
        own = own_s0.get(r["contender"])
        if r["delay_s"] > 0 and time is not None and own:
            ratio = f"{ratio} ({time / own:.2f}x own S=0)"
        samples = f"{r['samples_to_target']:,}" if r["samples_to_target"] else ""
        lines.append(f"| {r['contender']} | {r['lr']} | {r['delay_s']:g} s | {shown} | "
                     f"{samples} | {r['samples_per_s']:,.0f} | "
                     f"{mb(r['bytes_sent_per_worker'])} | {mb(r['bytes_received_per_worker'])} "
                     f"| {ratio} | {tau_text(r)} |")
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


def screening_table(report: dict[str, Any]) -> str:
    rows = report.get("screening") or []
    if not rows:
        return "Learning rates given on the command line (no screening).\n"
    lines = ["| contender (as the simulator replays it) | lr | samples to 89% | accuracy at stop |",
             "|---|---|---|---|"]
    for r in rows:
        chosen = " **(best)**" if report["best_lr"].get(r["contender"]) == r["lr"] else ""
        hit = f"{r['samples_to_target']:,}" if r["samples_to_target"] else \
            ("diverged (NaN loss)" if r.get("diverged") else f"not in {r['samples']:,}")
        lines.append(f"| {r['contender']} | {r['lr']}{chosen} | {hit} | "
                     f"{100 * r['final_accuracy']:.2f}% |")
    return "\n".join(lines) + "\n"


def ceiling_text(report: dict[str, Any]) -> str:
    """The ceiling and the best time ratio any 2-worker scheme could reach against the loop."""
    c = report.get("ceiling")
    if not c:
        return ""
    one, two, pair = c["loop_1_thread"], c["loop_2_threads"], c["two_1_thread_processes"]
    text = (f"Throughput ceiling (samples/s): plain loop 1 thread {one:,.0f}, 2 threads "
            f"{two:,.0f} ({two / one:.2f}x), two 1-thread loops side by side {pair:,.0f} "
            f"({pair / one:.2f}x).")
    rows = report.get("screening") or []
    samples = {r["contender"]: r["samples_to_target"] for r in rows
               if r["lr"] == report["best_lr"].get(r["contender"]) and r["samples_to_target"]}
    if "sparknet nesterov" in samples and "plain loop" in samples:
        bound = (samples["sparknet nesterov"] / samples["plain loop"]) * (two / pair)
        text += (f" With both at their best learning rate, sparknet needs "
                 f"{samples['sparknet nesterov']:,} samples to 89% and the loop "
                 f"{samples['plain loop']:,}; so even with no overhead at all and the full "
                 f"side-by-side throughput, sparknet's time would be at least "
                 f"**{bound:.2f}x** the 2-thread loop's.")
    return text + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0]) if args else SOURCE
    report = json.loads(source.read_text())
    text = (f"Machine: {report['machine']}\n\nCommand: `{report['command']}`\n\n"
            f"Eval interval: {report.get('eval_interval_samples')} samples (sparknet: each "
            "round)\n\n## Learning-rate screening\n\n" + screening_table(report)
            + "\n## Throughput ceiling\n\n" + ceiling_text(report)
            + "\n## Time to 89%\n\n" + table(report) + "\n")
    source.with_suffix(".md").write_text(text)
    figures = ROOT / "docs" / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    plot(report, figures / f"{source.stem}.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
