"""HDF5Output over two forward passes, against real Caffe: Caffe aborts on the second pass
(its datasets exist), sparknet refuses it in one line and keeps the first pass's file, which
is Caffe's file of that pass. (Single passes of random configurations are in the layer
fuzzer, tests/caffe_oracle/generators.py: hdf5_output.)"""

from __future__ import annotations

import contextlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from sparknet.caffe import build_net, parse_net_text
from sparknet.errors import DataError
from tests.caffe.oracle_cases import NetCase, compare_net, run_sparknet_net

from .oracle import run_oracle

pytestmark = pytest.mark.caffe_oracle

PROTOTXT = """force_backward: true
layer { name: "in" type: "Input" top: "x" top: "y"
        input_param { shape { dim: 3 dim: 2 dim: 4 } shape { dim: 3 } } }
layer { name: "scale" type: "Scale" bottom: "x" top: "s" scale_param { axis: 1 } }
layer { name: "out" type: "HDF5Output" bottom: "s" bottom: "y"
        hdf5_output_param { file_name: "twice.h5" } }
layer { name: "loss" type: "EuclideanLoss" bottom: "s" bottom: "x" top: "loss" }
"""


def test_second_forward_pass_is_refused_as_caffe_aborts(oracle_ready: None,
                                                        tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    first = {"input:x": rng.normal(size=(3, 2, 4)).astype(np.float32),
             "input:y": rng.normal(size=3).astype(np.float32)}
    weights = {"param:scale:0": rng.normal(size=2).astype(np.float32)}
    once = NetCase(name="once", layer_type="HDF5Output", prototxt=PROTOTXT, phase="TRAIN",
                   arrays={**first, **weights})
    twice = NetCase(name="twice", layer_type="HDF5Output", prototxt=PROTOTXT, phase="TEST",
                    passes=2, arrays={**{f"pass1:{k}": v for k, v in first.items()}, **weights,
                                      "pass2:input:x": first["input:x"] + 1,
                                      "pass2:input:y": first["input:y"] + 1})
    caffe = run_oracle([once, twice], tmp_path / "oracle")
    result = caffe["once"]
    assert not isinstance(result, str), result
    assert sorted(k for k in result if k.startswith("file:")) == ["file:twice.h5:data",
                                                                  "file:twice.h5:label"]
    assert not compare_net(once, run_sparknet_net(once), result)
    # Caffe: the pass-2 CHECK in hdf5.cpp ends the process.
    assert isinstance(caffe["twice"], str)
    assert caffe["twice"].startswith("Caffe aborted:")
    assert caffe["twice"].endswith("hdf5.cpp:124] Check failed: status >= 0 (-1 vs. 0) "
                                   "Failed to make float dataset data")
    # sparknet: one line on the second pass; the file still holds the first pass's data.
    net = build_net(parse_net_text(PROTOTXT), phase="TEST",
                    weights={"scale": [weights["param:scale:0"]]})
    with contextlib.chdir(tmp_path):
        net(x=torch.from_numpy(first["input:x"]), y=torch.from_numpy(first["input:y"]))
        with pytest.raises(DataError, match="already holds the datasets data and label") as err:
            net(x=torch.from_numpy(first["input:x"] + 1),
                y=torch.from_numpy(first["input:y"] + 1))
        assert "\n" not in str(err.value)
        with h5py.File("twice.h5", "r") as file:
            for dataset in ("data", "label"):
                np.testing.assert_array_equal(file[dataset][...],
                                              result[f"file:twice.h5:{dataset}"])
