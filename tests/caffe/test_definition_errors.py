"""Definitions and files that cannot be built give one line, everywhere: ``sparknet caffe
inspect`` (exit 2), load_net and the weight readers. Also the configurations real Caffe
refuses or runs out of bounds on (found by the oracle suite, tests/caffe_oracle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sparknet.caffe import load_net, load_solver, parse_net_text, read_binaryproto, read_weights
from sparknet.caffe.net import build_net
from sparknet.cli.main import main
from sparknet.errors import CaffeFormatError, ConfigError

INPUT = 'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }\n'

BROKEN = {
    "cycle": INPUT + 'layer { name: "a" type: "ReLU" bottom: "b" top: "a" }\n'
                     'layer { name: "b" type: "ReLU" bottom: "a" top: "b" }\n',
    "duplicate": INPUT + 'layer { name: "r" type: "ReLU" bottom: "x" top: "y" }\n'
                         'layer { name: "r" type: "TanH" bottom: "y" top: "z" }\n',
    "unknown_type": INPUT + 'layer { name: "c" type: "MyLayer" bottom: "x" top: "y" }\n',
    # A Data layer (shape known only to its database) first: the error must still surface.
    "unknown_type_after_data": 'layer { name: "d" type: "Data" top: "x" top: "label" '
                               'data_param { source: "db" batch_size: 4 } }\n'
                               'layer { name: "c" type: "MyLayer" bottom: "x" top: "y" }\n',
    "cycle_in_train_only": INPUT + 'layer { name: "a" type: "ReLU" bottom: "b" top: "a" '
                                   'include { phase: TRAIN } }\n'
                                   'layer { name: "b" type: "ReLU" bottom: "x" top: "b" }\n',
}
EXPECTED = {
    "cycle": "only a later layer ('b') produces it: a cycle",
    "duplicate": "layer 2 has the name of layer 1",
    "unknown_type": "unsupported layer type MyLayer",
    "unknown_type_after_data": "unsupported layer type MyLayer",
    "cycle_in_train_only": "only a later layer ('b') produces it",
}


def _one_line_error(capsys: Any, argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("sparknet: error:") and "\n" not in err, err
    assert captured.out == ""
    return err


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_inspect_exits_2_with_one_line(case: str, tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / f"{case}.prototxt"
    path.write_text(BROKEN[case])
    assert EXPECTED[case] in _one_line_error(capsys, ["caffe", "inspect", str(path)])


@pytest.mark.parametrize("case", ["cycle", "duplicate", "unknown_type"])
def test_load_net_refuses_the_same_definitions(case: str, tmp_path: Path) -> None:
    path = tmp_path / f"{case}.prototxt"
    path.write_text(BROKEN[case])
    with pytest.raises(CaffeFormatError, match=EXPECTED[case].replace("(", r"\(").replace(
            ")", r"\)")):
        load_net(path)


def test_inspect_still_notes_shapes_only_a_database_knows(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "data.prototxt"
    path.write_text('layer { name: "d" type: "Data" top: "x" top: "label" '
                    'data_param { source: "db" batch_size: 4 } }\n'
                    'layer { name: "r" type: "ReLU" bottom: "x" top: "y" }\n')
    assert main(["caffe", "inspect", str(path)]) == 0
    assert "shapes unknown" in capsys.readouterr().out


@pytest.mark.parametrize(("name", "content"), [
    ("empty.prototxt", ""), ("blank.prototxt", "\n  \n"),
    ("comments.prototxt", "# nothing but a comment\nname: \"n\"\n"),
])
def test_empty_prototxt_is_one_line_everywhere(name: str, content: str, tmp_path: Path,
                                               capsys: Any) -> None:
    path = tmp_path / name
    path.write_text(content)
    err = _one_line_error(capsys, ["caffe", "inspect", str(path)])
    assert "is empty" in err or "defines no layers" in err
    with pytest.raises(CaffeFormatError, match="is empty|defines no layers"):
        load_net(path)
    with pytest.raises(CaffeFormatError, match="is empty|defines no layers"):
        parse_net_text(content)


def test_empty_caffemodel_is_one_line_everywhere(tmp_path: Path, capsys: Any) -> None:
    weights = tmp_path / "empty.caffemodel"
    weights.write_bytes(b"")
    assert "is empty (0 bytes)" in _one_line_error(capsys, ["caffe", "inspect", str(weights)])
    with pytest.raises(CaffeFormatError, match="is empty"):
        read_weights(weights)
    net = tmp_path / "net.prototxt"
    net.write_text(INPUT + 'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
                           "inner_product_param { num_output: 2 } }\n")
    with pytest.raises(CaffeFormatError, match="is empty"):
        load_net(net, weights)
    named_only = tmp_path / "named.caffemodel"
    named_only.write_bytes(b'\x0a\x01n')  # a NetParameter holding only a name
    with pytest.raises(CaffeFormatError, match="holds no layers"):
        read_weights(named_only)
    mean = tmp_path / "empty.binaryproto"
    mean.write_bytes(b"")
    with pytest.raises(CaffeFormatError, match="is empty"):
        read_binaryproto(mean)


@pytest.mark.parametrize("content", ["", "# only a comment\n"])
def test_empty_solver_is_one_line(content: str, tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "solver.prototxt"
    path.write_text(content)
    with pytest.raises(ConfigError, match="is empty"):
        load_solver(path)


def test_empty_hdf5_snapshot_is_an_error(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "empty.caffemodel.h5"
    with h5py.File(path, "w") as file:
        file.create_group("data")
    with pytest.raises(CaffeFormatError, match="holds no layers"):
        read_weights(path)


# -- what real Caffe refuses, or runs out of bounds on ----------------------------------------

def _single(body: str, shape: tuple[int, ...] = (1, 1, 4, 4)) -> Any:
    dims = " ".join(f"dim: {d}" for d in shape)
    return parse_net_text(f'layer {{ name: "in" type: "Input" top: "x" input_param {{ shape {{ '
                          f"{dims} }} }} }}\n{body}\n")


@pytest.mark.parametrize("kind", ["AbsVal", "Flatten", "Reshape", "LRN"])
def test_in_place_is_refused_where_caffe_refuses_or_miscomputes(kind: str) -> None:
    body = {"Reshape": "reshape_param { shape { dim: 0 dim: -1 } }"}.get(kind, "")
    with pytest.raises(CaffeFormatError, match=f"{kind} cannot run in place"):
        build_net(_single(f'layer {{ name: "a" type: "{kind}" bottom: "x" top: "x" {body} }}'))
    # Not in place once Caffe's Split is in: an earlier layer reads the same x too.
    net = build_net(_single('layer { name: "b" type: "TanH" bottom: "x" top: "t" }\n'
                            f'layer {{ name: "a" type: "{kind}" bottom: "x" top: "x" {body} }}'))
    assert "t" in net.blob_shapes


def test_unpadded_ceil_window_outside_the_input_is_refused() -> None:
    # 4 rows, kernel 1, stride 2, ceil: windows at rows 0, 2 and 4 -- row 4 does not exist.
    net = _single('layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { '
                  "pool: MAX kernel_size: 1 stride: 2 } }")
    with pytest.raises(CaffeFormatError, match="last window outside the 4x4 input"):
        build_net(net)
    floor = _single('layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { '
                    "pool: MAX kernel_size: 1 stride: 2 round_mode: FLOOR } }")
    assert build_net(floor).blob_shapes["y"] == (1, 1, 2, 2)


def test_in_place_power_warns_that_its_gradient_is_caffes() -> None:
    with pytest.warns(UserWarning, match="ignores the gradient from above"):
        build_net(_single('layer { name: "p" type: "Power" bottom: "x" top: "x" '
                          "power_param { power: 2 } }"))


@pytest.mark.parametrize("policy", ["step", "exp", "inv", "multistep", "sigmoid"])
def test_negative_gamma_is_refused_as_caffe_does(policy: str, tmp_path: Path) -> None:
    path = tmp_path / "solver.prototxt"
    path.write_text(f'lr_policy: "{policy}" base_lr: 0.1 gamma: -0.5 stepsize: 2 '
                    "stepvalue: 3\n")
    with pytest.raises(ConfigError, match="needs gamma >= 0"):
        load_solver(path)


@pytest.mark.parametrize("fields", ['type: "AdaGrad" momentum: 0.9',
                                    'type: "RMSProp" momentum: 0.5',
                                    'type: "RMSProp" rms_decay: 1.0'])
def test_solver_settings_caffe_refuses(fields: str, tmp_path: Path) -> None:
    path = tmp_path / "solver.prototxt"
    path.write_text(f'lr_policy: "fixed" base_lr: 0.1 {fields}\n')
    with pytest.raises(ConfigError, match="takes no momentum|rms_decay"):
        load_solver(path)
