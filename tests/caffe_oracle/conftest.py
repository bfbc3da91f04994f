"""The oracle suite's settings: the seed and the number of configurations per layer type or
solver come from the environment, so a larger run needs no code change.

SPARKNET_ORACLE_SEED      base seed (default 0); case i of a layer type uses (seed, type, i)
SPARKNET_ORACLE_CASES     configurations per layer type (default 12)
SPARKNET_ORACLE_SOLVER_CASES  configurations per solver type and lr_policy (default 2)
SPARKNET_ORACLE_SUMMARY   a file to which every test appends one JSON line of counts
SPARKNET_ORACLE_SAVE      a folder to which every mismatching case is written as a
                          regression case (prototxt + npz + json)
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.caffe.oracle_cases import Arrays, NetCase, SolverCase, save_case

from .oracle import oracle_status


def setting(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def case_rng(*parts: object) -> np.random.Generator:
    """A generator for one case, from the base seed and the case's identity."""
    key = zlib.crc32("/".join(str(p) for p in parts).encode())
    return np.random.default_rng([setting("SPARKNET_ORACLE_SEED", 0), key])


@pytest.fixture(scope="session")
def oracle_ready() -> None:
    ready, line = oracle_status()
    if not ready:
        pytest.skip(f"real Caffe oracle not available: {line}")


def record(summary: dict[str, object], mismatched: list[tuple[NetCase | SolverCase, Arrays,
                                                                 list[str]]]) -> None:
    """Append the counts to SPARKNET_ORACLE_SUMMARY and save mismatching cases."""
    path = os.environ.get("SPARKNET_ORACLE_SUMMARY")
    if path:
        with Path(path).open("a") as f:
            f.write(json.dumps(summary) + "\n")
    folder = os.environ.get("SPARKNET_ORACLE_SAVE")
    if folder:
        for case, caffe, problems in mismatched:
            save_case(case, caffe, Path(folder), found="; ".join(problems)[:2000])
