"""Every path training data can take gives the weights of one single-process reference.

Placement (in memory, streamed, Spark Connect) x entry point (``from_arrays``,
``dataframe_data``, ``SparkNetEstimator.fit``, ``sparknet train --parquet``) x input kind
(uint8 pixels, float arrays, dense and sparse ML vectors, PNG bytes, image structs, Parquet
array and vector columns) x objective (multiclass, binary, multilabel, regression with one and
with three targets, a user's loss) x rounds (synchronous, overlapped eager or decoupled): the
final weights equal, bit for bit, those of the in-process run (no Spark) on the shards the path
should make (``sparknet_testing.matrix``).

The default run covers every pair of factors that can meet (placement x entry, placement x
objective, entry x objective, entry x kind, kind x placement, rounds x each) at least once;
the slow tier runs the full product (882 cases). The
streamed placement on Spark Connect is not supported and is refused in one line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet_testing.matrix import (
    Case,
    all_cases,
    cases_file,
    covering_cases,
    reference,
    run_case,
    write_parquet,
)

# The report that started this matrix: regression targets through streamed driver arrays.
ISSUE_ROWS = [Case("streamed", "from_arrays", "floats", "mse3"),
              Case("streamed", "from_arrays", "pixels", "mse1")]
FAST = list(dict.fromkeys(covering_cases() + ISSUE_ROWS))
SLOW = [case for case in all_cases() if case not in FAST]


@pytest.fixture(scope="module")
def folder(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("matrix")


def _classic(cases: list[Case]) -> list[Any]:
    return [pytest.param(case, id=case.name) for case in cases if case.placement != "connect"]


@pytest.mark.spark
@pytest.mark.parametrize("case", _classic(FAST))
def test_classic_paths_give_the_reference_weights(spark: Any, folder: Path, case: Case) -> None:
    if case.entry != "from_arrays":
        write_parquet(spark, folder, case)
    np.testing.assert_array_equal(run_case(spark, case, folder), reference(case),
                                  err_msg=case.name)


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("case", _classic(SLOW))
def test_classic_paths_give_the_reference_weights_full_product(spark: Any, folder: Path,
                                                               case: Case) -> None:
    test_classic_paths_give_the_reference_weights(spark, folder, case)


def _connect_run(spark: Any, connect_server: Any, folder: Path, cases: list[Case]
                 ) -> tuple[Any, dict[str, str]]:
    import json

    for case in cases:
        if case.entry != "from_arrays":
            write_parquet(spark, folder, case)
    cases_file(folder, cases)
    done = subprocess.run([sys.executable, "-m", "sparknet_testing.matrix", connect_server.url,
                           str(folder)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return (np.load(folder / "weights.npz", allow_pickle=False),
            json.loads((folder / "refusals.json").read_text()))


@pytest.mark.connect
def test_connect_paths_give_the_reference_weights_and_refuse_streaming(
        spark: Any, connect_server: Any, folder: Path) -> None:
    refused = [Case("streamed", entry, kind, "multiclass")
               for entry, kind in (("from_arrays", "pixels"), ("dataframe_data", "array"),
                                   ("estimator", "vector"), ("cli", "parquet_array"))]
    cases = [case for case in FAST if case.placement == "connect"]
    weights, refusals = _connect_run(spark, connect_server, folder, cases + refused)
    for case in cases:
        np.testing.assert_array_equal(weights[case.name], reference(case), err_msg=case.name)
    assert sorted(refusals) == sorted(case.name for case in refused)
    for name, message in refusals.items():
        lines = message.strip().splitlines()
        assert len(lines) == 1 and "streamed shards need a classic Spark session" in lines[0], \
            (name, message)


@pytest.mark.connect
@pytest.mark.slow
def test_connect_paths_give_the_reference_weights_full_product(
        spark: Any, connect_server: Any, tmp_path: Path) -> None:
    cases = [case for case in SLOW if case.placement == "connect"]
    weights, _ = _connect_run(spark, connect_server, tmp_path, cases)
    for case in cases:
        np.testing.assert_array_equal(weights[case.name], reference(case), err_msg=case.name)


def test_the_fast_tier_covers_every_pair_of_factors_that_can_meet() -> None:
    for first, second in (("placement", "entry"), ("placement", "objective"),
                          ("entry", "objective"), ("entry", "kind"), ("kind", "placement"),
                          ("rounds", "placement"), ("rounds", "entry"), ("rounds", "kind"),
                          ("rounds", "objective")):
        def pairs(cases: list[Case], a: str = first, b: str = second) -> set[tuple[str, str]]:
            return {(getattr(case, a), getattr(case, b)) for case in cases}

        assert pairs(FAST) == pairs(all_cases()), (first, second)
