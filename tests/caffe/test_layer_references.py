"""The Caffe 1.0 layer types added for the whole registry (Log, Swish, Clip, Bias, Crop,
Tile, Reduction, ArgMax, MVN, Embed, Im2col, Parameter, BatchReindex, Filter, SPP, the
loss layers, LSTM, RNN, LSTMUnit and HDF5Output, whose files are compared dataset by
dataset) against real Caffe's stored results: two random
configurations of each, drawn by the oracle fuzzer (tests/caffe_oracle/generators.py) and
written with SPARKNET_ORACLE_REFERENCES=DIR; forward blobs and input and parameter
gradients. ``*_passes_*``: LSTM and RNN over several passes in a row, each starting from the
state the one before ended with (tests/caffe_oracle/test_recurrent_passes_oracle.py)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from .oracle_cases import NetCase, compare_net, load_case, run_sparknet_net

FOLDER = Path(__file__).resolve().parents[1] / "data" / "caffe_layer_references"
CASES = sorted(p.with_suffix("") for p in FOLDER.glob("*.json"))
ADDED = ("Log", "Swish", "Clip", "Bias", "Crop", "Tile", "Reduction", "ArgMax", "MVN",
         "Embed", "Im2col", "Parameter", "BatchReindex", "Filter", "SPP",
         "SigmoidCrossEntropyLoss", "HingeLoss", "MultinomialLogisticLoss", "InfogainLoss",
         "ContrastiveLoss", "LSTM", "RNN", "LSTMUnit", "HDF5Output")


def test_every_added_type_has_references() -> None:
    types = [load_case(path)[0].layer_type for path in CASES]  # type: ignore[union-attr]
    assert sorted(set(types)) == sorted(ADDED)
    assert all(types.count(kind) >= 2 for kind in ADDED)
    carried = [load_case(path)[0] for path in CASES if "_passes_" in path.name]
    assert {c.layer_type for c in carried if c.passes > 1} == {"LSTM", "RNN"}  # type: ignore[union-attr]


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_layer_matches_real_caffe(path: Path) -> None:
    case, caffe = load_case(path)
    assert isinstance(case, NetCase) and caffe
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # in-place Power/Log warn by design
        problems = compare_net(case, run_sparknet_net(case), caffe)
    assert not problems, "\n".join(problems)
