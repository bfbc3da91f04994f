"""Helpers shared by the benchmark scripts: machine facts and report writing."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform(),
            "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def machine_line() -> str:
    """One line for a report: processor, cores, torch, and the load when the run ended."""
    info = machine()
    return (f"{info['cpu']}, {info['cores']} cores; torch {info['torch']}; load average "
            f"{os.getloadavg()[0]:.1f} at the end")


def command() -> str:
    return " ".join([Path(sys.executable).name, *sys.argv])


def write_report(name: str, markdown: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str))
    path = RESULTS / f"{name}.md"
    path.write_text(markdown)
    return path
