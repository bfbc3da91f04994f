"""Weight files: caffemodel (current and legacy dims), HDF5, binaryproto; write and read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sparknet.caffe import (
    build_net,
    load_net,
    parse_net_text,
    read_caffemodel,
    read_caffemodel_h5,
    read_net,
    write_caffemodel_h5,
)
from sparknet.caffe.weights import read_binaryproto, write_binaryproto
from sparknet.errors import CaffeFormatError

from .conftest import caffe_path

LENET = ("models", "lenet_ethereon", "lenet.prototxt")
LENET_W = ("models", "lenet_ethereon", "lenet_iter_10000.caffemodel")


def test_legacy_4d_dims_are_fitted_to_layer_shapes() -> None:
    net = load_net(caffe_path("models", "v1_everpeace_2014", "lenet.prototxt"),
                   caffe_path("models", "v1_everpeace_2014", "lenet_iter_10000.caffemodel"))
    raw = read_caffemodel(caffe_path("models", "v1_everpeace_2014", "lenet_iter_10000.caffemodel"))
    assert raw["ip1"][0].shape == (1, 1, 500, 800)
    blobs = net.caffe_blobs()
    assert blobs["ip1"][0].shape == (500, 800) and blobs["ip1"][1].shape == (500,)
    np.testing.assert_array_equal(blobs["ip1"][0], raw["ip1"][0].reshape(500, 800))


def test_caffemodel_round_trip_gives_the_same_bytes(tmp_path: Path) -> None:
    net = load_net(caffe_path(*LENET), caffe_path(*LENET_W))
    out = tmp_path / "out.caffemodel"
    net.to_caffemodel(out)
    original, written = read_caffemodel(caffe_path(*LENET_W)), read_caffemodel(out)
    assert list(written) == list(original)
    for name, blobs in original.items():
        for a, b in zip(blobs, written[name], strict=True):
            assert a.shape == b.shape and a.dtype == b.dtype == np.float32
            assert a.tobytes() == b.tobytes(), name
    again = load_net(caffe_path(*LENET), out)
    for name, blobs in net.caffe_blobs().items():
        for a, b in zip(blobs, again.caffe_blobs()[name], strict=True):
            assert a.tobytes() == b.tobytes()


def test_v1_model_written_in_blobshape_form(tmp_path: Path) -> None:
    net = load_net(caffe_path("models", "v1_everpeace_2014", "cifar10_quick.prototxt"),
                   caffe_path("models", "v1_everpeace_2014", "cifar10_quick_iter_5000.caffemodel"))
    net.to_caffemodel(tmp_path / "c.caffemodel")
    written = read_caffemodel(tmp_path / "c.caffemodel")
    assert written["ip1"][0].shape == (64, 1024) and written["ip1"][1].shape == (64,)
    legacy = read_caffemodel(caffe_path("models", "v1_everpeace_2014",
                                        "cifar10_quick_iter_5000.caffemodel"))
    assert written["ip1"][0].tobytes() == legacy["ip1"][0].tobytes()


def test_deploy_prototxt_and_caffemodel_load_back(tmp_path: Path) -> None:
    train = load_net(caffe_path("reference", "solver", "lenet_memorydata_train.prototxt"),
                     caffe_path("reference", "solver", "lenet_init.caffemodel"), phase="TRAIN")
    train.to_deploy_prototxt(tmp_path / "deploy.prototxt")
    train.to_caffemodel(tmp_path / "w.caffemodel")
    deploy = load_net(tmp_path / "deploy.prototxt", tmp_path / "w.caffemodel",
                      allow_extra_weights=False)
    assert deploy.input_names == ["data"] and deploy.output_names == ["prob"]
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        a = train(data=x)["ip2"]
        b = deploy(x)
    torch.testing.assert_close(b["ip2"], a, rtol=0, atol=0)
    torch.testing.assert_close(b["prob"], torch.softmax(a, 1))


def test_hdf5_snapshot_layout_round_trip(tmp_path: Path) -> None:
    net = load_net(caffe_path(*LENET), caffe_path(*LENET_W))
    path = tmp_path / "w.caffemodel.h5"
    write_caffemodel_h5(path, net.caffe_blobs())
    import h5py

    with h5py.File(path) as f:
        assert f["data/conv1/0"].shape == (20, 1, 5, 5)
        assert f["data/ip2/1"].shape == (10,)
    loaded = read_caffemodel_h5(path)
    again = load_net(caffe_path(*LENET), path)
    for name, blobs in net.caffe_blobs().items():
        for a, b, c in zip(blobs, loaded[name], again.caffe_blobs()[name], strict=True):
            assert a.tobytes() == b.tobytes() == c.tobytes()


def test_hdf5_without_data_group_is_an_error(tmp_path: Path) -> None:
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("other", data=np.zeros(2))
    with pytest.raises(CaffeFormatError, match="/data"):
        read_caffemodel_h5(tmp_path / "x.h5")


@pytest.mark.parametrize("cut", [7, 1000, 100_000, -3])
def test_truncated_caffemodel_is_an_error(tmp_path: Path, cut: int) -> None:
    data = caffe_path(*LENET_W).read_bytes()
    (tmp_path / "t.caffemodel").write_bytes(data[:cut])
    with pytest.raises(CaffeFormatError):
        load_net(caffe_path(*LENET), tmp_path / "t.caffemodel")


def test_corrupt_caffemodel_is_an_error(tmp_path: Path) -> None:
    data = bytearray(caffe_path(*LENET_W).read_bytes())
    data[0:16] = b"\xff" * 16
    (tmp_path / "c.caffemodel").write_bytes(bytes(data))
    with pytest.raises(CaffeFormatError, match="truncated or corrupt"):
        read_caffemodel(tmp_path / "c.caffemodel")


def test_blob_count_mismatch_is_an_error(tmp_path: Path) -> None:
    net = read_net(caffe_path(*LENET))
    net.layer[1].convolution_param.bias_term = False
    with pytest.raises(CaffeFormatError, match="conv1.*expects 1 blobs.*has 2"):
        build_net(net, weights=read_caffemodel(caffe_path(*LENET_W)))


def test_blob_shape_mismatch_names_layer_and_shapes() -> None:
    net = read_net(caffe_path(*LENET))
    net.layer[3].convolution_param.num_output = 40  # conv2 had 50 filters
    net.layer[5].inner_product_param.num_output = 500
    with pytest.raises(CaffeFormatError,
                       match=r"'conv2' \(Convolution\) blob 0 has shape \(50, 20, 5, 5\) but "
                             r"the layer expects \(40, 20, 5, 5\)"):
        build_net(net, weights=read_caffemodel(caffe_path(*LENET_W)))


def test_weights_for_layers_the_definition_lacks(tmp_path: Path) -> None:
    text = caffe_path(*LENET).read_text()
    small = parse_net_text(text)
    del small.layer[-2:]  # drop ip2 and prob
    weights = read_caffemodel(caffe_path(*LENET_W))
    with pytest.raises(CaffeFormatError, match=r"\['ip2'\].*allow_extra_weights"):
        build_net(small, weights=weights)
    with pytest.warns(UserWarning, match="ip2"):
        net = build_net(small, weights=weights, allow_extra_weights=True)
    assert net.load_report.extra == ("ip2",)
    assert net.load_report.loaded == ("conv1", "conv2", "ip1")


def test_missing_weights_are_an_error_unless_allowed() -> None:
    weights = read_caffemodel(caffe_path(*LENET_W))
    del weights["ip1"]
    with pytest.raises(CaffeFormatError, match=r"no weights for layers \['ip1'\]"):
        build_net(read_net(caffe_path(*LENET)), weights=weights)
    with pytest.warns(UserWarning):
        net = build_net(read_net(caffe_path(*LENET)), weights=weights,
                        allow_missing_weights=True)
    assert net.load_report.missing == ("ip1",)


def test_failed_load_changes_nothing() -> None:
    net = load_net(caffe_path(*LENET))
    before = {k: [b.copy() for b in v] for k, v in net.caffe_blobs().items()}
    weights = read_caffemodel(caffe_path(*LENET_W))
    weights["ip2"][0] = weights["ip2"][0][:5]
    with pytest.raises(CaffeFormatError):
        net.load_caffe_blobs(weights)
    for name, blobs in net.caffe_blobs().items():
        for a, b in zip(blobs, before[name], strict=True):
            np.testing.assert_array_equal(a, b)


def test_binaryproto_round_trip(tmp_path: Path) -> None:
    mean = read_binaryproto(caffe_path("models", "cifar10_mean", "mean.binaryproto"))
    assert mean.shape == (1, 3, 32, 32) and mean.dtype == np.float32
    write_binaryproto(tmp_path / "m.binaryproto", mean)
    assert read_binaryproto(tmp_path / "m.binaryproto").tobytes() == mean.tobytes()


def test_binaryproto_with_wrong_count_is_an_error(tmp_path: Path) -> None:
    from sparknet.caffe import schema

    blob = schema.BlobProto(num=1, channels=2, height=2, width=2)
    blob.data.extend([1.0, 2.0])
    (tmp_path / "b.binaryproto").write_bytes(blob.SerializeToString())
    with pytest.raises(CaffeFormatError, match="needs 8 values"):
        read_binaryproto(tmp_path / "b.binaryproto")


@pytest.mark.parametrize("shape", [(2, 3, 4), (5,), (0,), (1, 1, 3, 2)])
def test_blobs_are_written_as_caffe_encodes_them(shape: tuple[int, ...]) -> None:
    from sparknet.caffe import schema
    from sparknet.caffe.weights import array_to_blob, blob_to_array

    values = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    reference = schema.BlobProto()  # value by value through protobuf's own packed encoding
    reference.shape.dim.extend(shape)
    reference.data.extend(values.ravel().tolist())
    written = array_to_blob(values).SerializeToString()
    assert written == reference.SerializeToString()
    parsed = schema.BlobProto.FromString(written)
    assert blob_to_array(parsed, where="t").tobytes() == values.tobytes()
