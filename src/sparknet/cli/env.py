"""``sparknet env``: versions and machine facts to paste into a bug report."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
from typing import Any


def register(commands: Any) -> None:
    parser = commands.add_parser("env", help="print versions and machine facts for bug reports")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from sparknet.engine.run_dir import versions

    facts = dict(versions())
    facts["platform"] = platform.platform()
    facts["cpus"] = str(os.cpu_count())
    facts["cuda"] = (f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
                     if torch.cuda.is_available() else "not available")
    java = shutil.which("java")
    if java:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
        facts["java"] = (out.stderr or out.stdout).splitlines()[0] if (out.stderr or out.stdout) \
            else "unknown"
    else:
        facts["java"] = "not found (Spark needs Java 17+)"
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        print(f"{key:<{width}}  {value}")
    return 0
