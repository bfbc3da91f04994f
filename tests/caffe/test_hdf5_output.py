"""HDF5Output beyond the real-Caffe references (tests/data/caffe_layer_references/
hdf5output_*, tests/caffe_oracle/test_hdf5_output_oracle.py): the file appears with the first
forward pass (not when the net is built, nor in the engine's logits-only passes), a second
pass is one line that leaves the first pass's file, and what Caffe aborts on is refused in
one line when the net is built."""

from __future__ import annotations

import contextlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from sparknet.caffe import CaffeLogits, build_net, parse_net_text
from sparknet.errors import CaffeFormatError, DataError

INPUT = ('layer { name: "in" type: "Input" top: "x" top: "y" input_param { '
         'shape { dim: 2 dim: 3 dim: 2 } shape { dim: 2 } } }\n')
OUT = ('layer {{ name: "out" type: "HDF5Output" {links} '
       'hdf5_output_param {{ file_name: "{file}" }} }}\n')


def _net(links: str = 'bottom: "x" bottom: "y"', file: str = "out.h5", extra: str = ""):
    return build_net(parse_net_text(INPUT + extra + OUT.format(links=links, file=file)))


def test_first_pass_writes_caffes_datasets_and_a_second_is_refused(tmp_path: Path) -> None:
    x, y = torch.randn(2, 3, 2), torch.tensor([4.0, 5.0])
    with contextlib.chdir(tmp_path):
        net = _net()
        assert not (tmp_path / "out.h5").exists()  # built, not run: nothing written
        net(x=x, y=y)
        with h5py.File("out.h5", "r") as file:
            assert sorted(file) == ["data", "label"] and not dict(file.attrs)
            assert file["data"].dtype == np.float32 and file["data"].shape == (2, 3, 2, 1)
            assert file["label"].shape == (2, 1, 1, 1)
            np.testing.assert_array_equal(file["data"][...].reshape(2, 3, 2), x.numpy())
        with pytest.raises(DataError, match="Caffe aborts on a second pass") as err:
            net(x=x + 1, y=y)
        assert "\n" not in str(err.value)
        with h5py.File("out.h5", "r") as file:
            np.testing.assert_array_equal(file["label"][...].reshape(2), y.numpy())
        _net()(x=x + 1, y=y)  # a net built again writes the file again
        with h5py.File("out.h5", "r") as file:
            np.testing.assert_array_equal(file["data"][...].reshape(2, 3, 2), (x + 1).numpy())


def test_logits_passes_do_not_run_it(tmp_path: Path) -> None:
    # The engine trains and scores on the logits blob only: HDF5Output never runs there.
    extra = ('layer { name: "ip" type: "InnerProduct" bottom: "x" top: "logits" '
             "inner_product_param { num_output: 4 } }\n")
    with contextlib.chdir(tmp_path):
        model = CaffeLogits(_net('bottom: "logits" bottom: "y"', extra=extra))
        model(torch.randn(2, 3, 2))
        model(torch.randn(2, 3, 2))
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize(("links", "file", "message"), [
    ('bottom: "x"', "o.h5", "takes 2 bottoms"),
    ('bottom: "x" bottom: "y" bottom: "x"', "o.h5", "takes 2 bottoms"),
    ('bottom: "x" bottom: "y" top: "z"', "o.h5", "has no top blob"),
    ('bottom: "x" bottom: "y"', "", "file_name is empty"),
    ('bottom: "x" bottom: "w"', "o.h5", "more than 4 axes"),
    ('bottom: "x" bottom: "v"', "o.h5", "have 2 and 3 rows"),
])
def test_what_caffe_aborts_on_is_one_line(links: str, file: str, message: str) -> None:
    extra = ('layer { name: "more" type: "Input" top: "w" top: "v" input_param { '
             "shape { dim: 2 dim: 1 dim: 1 dim: 1 dim: 2 } shape { dim: 3 } } }\n")
    with pytest.raises(CaffeFormatError, match=message) as err:
        _net(links, file, extra)
    assert "\n" not in str(err.value)


def test_an_unwritable_file_is_one_line(tmp_path: Path) -> None:
    net = _net(file=str(tmp_path / "missing" / "out.h5"))
    with pytest.raises(DataError, match="cannot write the HDF5 file .*check that its folder"):
        net(x=torch.zeros(2, 3, 2), y=torch.zeros(2))
