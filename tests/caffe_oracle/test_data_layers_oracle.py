"""Caffe's data layers that read files or fill blobs, against real Caffe's forward passes.

- HDF5Data: files written here with h5py (float32/float64/integer datasets, one to three
  files, two or three tops, rows of 1 to 4 axes, a label of one value or a vector); Caffe's
  first passes (batches spanning files, cycling from the first file again) equal sparknet's
  rows read from the same list (``hdf5_data.first_batch``), exactly. With ``shuffle: true``
  (Caffe's std::random_shuffle is not reproduced) every row of Caffe's batches is a row of
  the files, with its own label.
- DummyData: constant fillers (and none: zeros) equal Caffe's exactly, in every pass and
  in both shape spellings; random fillers by their distribution (as in
  test_fillers_oracle), drawn anew in each pass by both.
- ImageData: an image list with PNG and JPEG images (colour and gray, resized, cropped,
  mean values, scale, an enlarging resize); Caffe's first batches equal
  ``image_data_batch`` exactly.
- WindowData: a window file over two noise images (foreground and background windows, some
  at the borders); Caffe draws its windows (and mirrorings) with its own random numbers, so
  each item of Caffe's batches must equal ``window_crop`` of one window of its kind
  (background first, then foreground), with that window's label: warp and square crops,
  context padding clipped at the image border, mirroring, mean values, a mean file, scale;
  a 4x4 window enlarged to 6x6 checks OpenCV's bilinear rows past the edges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet.caffe import build_net, parse_net_text
from sparknet.caffe.hdf5_data import first_batch, hdf5_source
from sparknet.caffe.prototxt import read_net
from sparknet.caffe.transform import TransformConfig, image_data_batch, load_mean, read_image
from sparknet.caffe.window_data import window_crop, window_file_of_layer
from tests.caffe.conftest import assert_matches_caffe

from .oracle import run_request
from .test_fillers_oracle import FILLERS, _check

pytestmark = pytest.mark.caffe_oracle
h5py = pytest.importorskip("h5py")
PASSES = 3

# name: (rows per file, data shape per row, data dtype, label shape per row, label dtype,
#        extra top?, batch size, shuffle)
HDF5_CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...], Any, tuple[int, ...], Any,
                            bool, int, bool]] = {
    "h5_two_files_span": ((3, 4), (2, 3, 2), np.float32, (), np.float32, False, 5, False),
    "h5_double_int_label": ((5,), (4,), np.float64, (1,), np.int32, False, 4, False),
    "h5_three_files_three_tops": ((2, 2, 3), (3, 2), np.float32, (), np.float32, True, 3,
                                  False),
    "h5_uint8_images": ((4, 3), (1, 4, 4), np.uint8, (), np.uint8, False, 2, False),
    "h5_one_axis_rows": ((6,), (), np.float32, (), np.float32, False, 4, False),
    "h5_vector_label": ((3, 5), (2, 2, 2, 2), np.float32, (3,), np.float64, False, 6, False),
    "h5_shuffle": ((6, 6), (3,), np.float32, (), np.float32, False, 4, True),
}

# name: (dummy_data_param, [(filler kind of test_fillers_oracle, ...) per top])
DUMMY_CASES: dict[str, tuple[str, list[str]]] = {
    "dummy_zeros_shape": ("shape { dim: 2 dim: 3 dim: 4 }", ["constant0"]),
    "dummy_constant_legacy_per_top": (
        "num: 2 channels: 3 height: 4 height: 1 width: 5 "
        "data_filler { type: 'constant' value: 0.75 } "
        "data_filler { type: 'constant' value: -2 }", ["constant", "constant"]),
    "dummy_one_constant_for_two_tops": (
        "shape { dim: 3 dim: 2 } shape { dim: 5 } data_filler { type: 'constant' value: 3 }",
        ["constant", "constant"]),
    **{f"dummy_{kind}": (f"shape {{ dim: 40 dim: 30 dim: 2 }} data_filler {{ {spec} }}",
                         [kind])
       for kind, spec in FILLERS.items() if kind not in ("constant", "sparse_gaussian")},
    "dummy_mixed_legacy": (
        "num: 50 channels: 4 height: 3 width: 5 data_filler { type: 'constant' value: 0.75 } "
        f"data_filler {{ {FILLERS['gaussian']} }}", ["constant", "gaussian"]),
}

# name: (image format, is_color, new_height, new_width, transform_param, batch size)
IMAGE_CASES = {
    "image_png_colour": ("png", True, 0, 0, "", 3),
    "image_jpeg_mean_scale": ("jpg", True, 0, 0, "scale: 0.5 mean_value: 10 mean_value: 20 "
                              "mean_value: 30", 4),
    "image_png_gray_resized": ("png", False, 7, 5, "", 3),
    "image_jpeg_resized_crop": ("jpg", True, 9, 11, "crop_size: 5", 3),
    "image_png_enlarged": ("png", True, 17, 15, "", 2),  # rows past the edges (resize)
}

# name: (window_data_param extras, transform_param, batch size)
WINDOW_CASES = {
    "window_warp": ("fg_fraction: 0.5", "crop_size: 6", 4),
    "window_context_pad_mean_values": ("context_pad: 2 scale: 0.5 fg_fraction: 0.25",
                                       "crop_size: 8 mean_value: 10 mean_value: 20 "
                                       "mean_value: 30", 5),
    "window_square_mirror": ("crop_mode: 'square' context_pad: 3 fg_fraction: 0.75 "
                             "bg_threshold: 0.25",
                             "crop_size: 9 mirror: true", 6),
    "window_mean_file": ("context_pad: 1", "crop_size: 8 mean_file: 'window_mean.binaryproto'",
                         4),
}
WINDOWS = [  # (image, label, overlap, x1, y1, x2, y2)
    (0, 1, 0.9, 2, 3, 12, 15), (0, 2, 0.7, 0, 0, 8, 6), (0, 0, 0.1, 10, 5, 19, 23),
    (0, 3, 0.3, 1, 1, 4, 4),  # background, or dropped under bg_threshold 0.25
    (1, 3, 0.5, 5, 4, 17, 15), (1, 0, 0.0, 0, 0, 17, 15), (1, 1, 0.2, 12, 9, 17, 15),
]


def _write_window_files(folder: Path, rng: np.random.Generator) -> None:
    from PIL import Image

    from sparknet.caffe.weights import array_to_blob

    lines = []
    for index, (height, width) in enumerate(((24, 20), (16, 18))):
        pixels = rng.integers(0, 256, size=(height, width, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"window{index}.png")
        mine = [w for w in WINDOWS if w[0] == index]
        lines += [f"# {index}", f"window{index}.png", "3", str(height), str(width),
                  str(len(mine)), *(" ".join(map(str, w[1:])) for w in mine)]
    (folder / "windows.txt").write_text("\n".join(lines) + "\n")
    mean = rng.uniform(0, 100, size=(1, 3, 12, 12)).astype(np.float32)
    (folder / "window_mean.binaryproto").write_bytes(array_to_blob(mean).SerializeToString())


def _window_prototxt(name: str) -> str:
    extra, transform, batch = WINDOW_CASES[name]
    return (f'layer {{ name: "d" type: "WindowData" top: "data" top: "label" '
            f'window_data_param {{ source: "windows.txt" batch_size: {batch} {extra} }} '
            f'transform_param {{ {transform} }} }}\n')


def _write_hdf5_case(folder: Path, name: str, rng: np.random.Generator) -> str:
    rows, shape, dtype, label_shape, label_dtype, extra, batch, shuffle = HDF5_CASES[name]
    names = []
    for i, n in enumerate(rows):
        data = rng.normal(size=(n, *shape)) * 10 if np.dtype(dtype).kind == "f" else \
            rng.integers(0, 200, size=(n, *shape))
        with h5py.File(folder / f"{name}_{i}.h5", "w") as file:
            file.create_dataset("data", data=np.asarray(data).astype(dtype))
            # Labels unique across files: a shuffled batch shows which row each one is.
            label = (np.arange(n)[:, None] + 100 * i + np.zeros((1, *label_shape))).reshape(
                (n, *label_shape))
            file.create_dataset("label", data=label.astype(label_dtype))
            if extra:
                file.create_dataset("extra", data=rng.normal(size=(n, 2)).astype(np.float32))
        names.append(f"{name}_{i}.h5")
    (folder / f"{name}.txt").write_text("\n".join(names) + "\n")
    tops = 'top: "data" top: "label"' + (' top: "extra"' if extra else "")
    return (f'layer {{ name: "d" type: "HDF5Data" {tops} hdf5_data_param {{ source: '
            f'"{name}.txt" batch_size: {batch} shuffle: {str(shuffle).lower()} }} }}\n')


def _dummy_prototxt(name: str) -> str:
    param, kinds = DUMMY_CASES[name]
    tops = " ".join(f'top: "t{i}"' for i in range(len(kinds)))
    return f'layer {{ name: "d" type: "DummyData" {tops} dummy_data_param {{ {param} }} }}\n'


def _write_image_case(folder: Path, name: str, rng: np.random.Generator) -> str:
    from PIL import Image

    fmt, is_color, height, width, transform, batch = IMAGE_CASES[name]
    (folder / name).mkdir()
    lines = []
    for i in range(batch + 2):  # the second batch cycles to the start of the list
        y, x = np.mgrid[0:12, 0:10]
        base = np.stack([(x * 20 + i * 7) % 256, (y * 15 + i * 11) % 256,
                         (x * y + i * 3) % 256], axis=-1)
        pixels = np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        if fmt == "jpg":
            image.save(folder / name / f"{i}.jpg", quality=90)
        else:
            image.save(folder / name / f"{i}.png")
        lines.append(f"{i}.{fmt} {i % 3}")
    (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return (f'layer {{ name: "d" type: "ImageData" top: "data" top: "label" image_data_param '
            f'{{ source: "{name}.txt" root_folder: "{name}/" batch_size: {batch} '
            f'is_color: {str(is_color).lower()} new_height: {height} new_width: {width} }} '
            f'transform_param {{ {transform} }} }}\n')


@pytest.fixture(scope="module")
def caffe_data(oracle_ready: None, tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("data_layers")
    rng = np.random.default_rng(5)
    np.savez(folder / "empty.npz")
    entries: list[dict[str, object]] = []
    _write_window_files(folder, rng)
    for name in (*HDF5_CASES, *DUMMY_CASES, *IMAGE_CASES, *WINDOW_CASES):
        if name in HDF5_CASES:
            text = _write_hdf5_case(folder, name, rng)
        elif name in DUMMY_CASES:
            text = _dummy_prototxt(name)
        elif name in WINDOW_CASES:
            text = _window_prototxt(name)
        else:
            text = _write_image_case(folder, name, rng)
        (folder / f"{name}.prototxt").write_text(text)
        entries.append({"name": name, "kind": "net", "prototxt": f"{name}.prototxt",
                        "phase": "TEST", "arrays": "empty.npz", "backward": False,
                        "passes": PASSES})
    return folder, run_request(folder, entries)


def _caffe(caffe_data: tuple[Path, dict[str, Any]], name: str) -> dict[str, np.ndarray]:
    result = caffe_data[1][name]
    assert not isinstance(result, str), f"{name}: {result}"
    return result


@pytest.mark.parametrize("case", list(HDF5_CASES))
def test_hdf5_data_matches_caffe(case: str, caffe_data: tuple[Path, Any]) -> None:
    folder = caffe_data[0]
    caffe = _caffe(caffe_data, case)
    source = hdf5_source(folder / f"{case}.prototxt", phase="TEST")
    batch, shuffle = HDF5_CASES[case][6], HDF5_CASES[case][7]
    if shuffle:  # every row Caffe gives is a row of the files, with its own label
        everything = first_batch(source, sum(HDF5_CASES[case][0]))
        for k in range(1, PASSES + 1):
            data, label = caffe[f"pass{k}:blob:data"], caffe[f"pass{k}:blob:label"]
            for row, tag in zip(data, label, strict=True):
                index = np.flatnonzero(everything[1] == tag)
                assert len(index) == 1, f"{case} pass {k}: label {tag} is not a row's"
                np.testing.assert_array_equal(everything[0][index[0]], row)
        return
    ours = first_batch(source, batch * PASSES)
    for k in range(PASSES):
        for top, values in zip(source.datasets, ours, strict=True):
            expected = caffe[f"pass{k + 1}:blob:{top}"]
            np.testing.assert_array_equal(values[k * batch:(k + 1) * batch], expected,
                                          err_msg=f"{case} pass {k + 1} top {top}")


@pytest.mark.parametrize("case", list(DUMMY_CASES))
def test_dummy_data_matches_caffe(case: str, caffe_data: tuple[Path, Any]) -> None:
    caffe = _caffe(caffe_data, case)
    net = build_net(parse_net_text(_dummy_prototxt(case)), phase="TEST")
    passes = [net.forward() for _ in range(PASSES)]
    problems = []
    for i, kind in enumerate(DUMMY_CASES[case][1]):
        top = f"t{i}"
        for k in range(PASSES):
            theirs = caffe[f"pass{k + 1}:blob:{top}"]
            mine = passes[k][top].numpy()
            if kind.startswith("constant"):
                np.testing.assert_array_equal(mine, theirs, err_msg=f"{case} {top} pass {k}")
            else:
                problems += _check(kind, f"{top} pass {k + 1}", mine, theirs)
        if not kind.startswith("constant"):  # both draw anew in every forward pass
            assert not np.array_equal(caffe[f"pass1:blob:{top}"], caffe[f"pass2:blob:{top}"])
            assert not np.array_equal(passes[0][top].numpy(), passes[1][top].numpy())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_image_data_matches_caffe(case: str, caffe_data: tuple[Path, Any]) -> None:
    folder = caffe_data[0]
    caffe = _caffe(caffe_data, case)
    layer = read_net(folder / f"{case}.prototxt").layer[0]
    batch = IMAGE_CASES[case][5]
    for k in range(PASSES):
        data, labels = image_data_batch(layer, folder=folder, start=k * batch)
        assert_matches_caffe(data, caffe[f"pass{k + 1}:blob:data"], f"{case} pass {k + 1}")
        np.testing.assert_array_equal(labels, caffe[f"pass{k + 1}:blob:label"])


@pytest.mark.parametrize("case", list(WINDOW_CASES))
def test_window_data_matches_caffe(case: str, caffe_data: tuple[Path, Any]) -> None:
    folder = caffe_data[0]
    caffe = _caffe(caffe_data, case)
    layer = read_net(folder / f"{case}.prototxt").layer[0]
    p = layer.window_data_param
    config = TransformConfig.from_proto(layer.transform_param, folder=folder)
    windows = window_file_of_layer(layer, folder=folder)
    assert len(windows.foreground) == 3
    assert len(windows.background) == (3 if p.bg_threshold < 0.3 else 4)
    images = [read_image(path, is_color=True) for path, _ in windows.images]
    mean = load_mean(config)
    num_fg = int(np.float32(p.batch_size) * np.float32(p.fg_fraction))
    crops = {}  # (foreground?, label) -> every crop of that kind
    for fg, pool in ((False, windows.background), (True, windows.foreground)):
        for window in pool:
            for mirror in (False, True) if config.mirror else (False,):
                crop = window_crop(images[window.image], window, crop_size=config.crop_size,
                                   context_pad=p.context_pad, square=p.crop_mode == "square",
                                   mirror=mirror, scale=p.scale, mean=mean,
                                   mean_values=config.mean_value)
                crops.setdefault(fg, []).append((window, mirror, crop))
    for k in range(1, PASSES + 1):
        data, labels = caffe[f"pass{k}:blob:data"], caffe[f"pass{k}:blob:label"]
        assert data.shape == (p.batch_size, 3, config.crop_size, config.crop_size)
        for item in range(p.batch_size):
            fg = item >= p.batch_size - num_fg
            bound = 1e-5 * max(1.0, float(np.abs(data[item]).max()))
            found = [(w, m) for w, m, crop in crops[fg]
                     if np.abs(crop - data[item]).max() <= bound and w.label == labels[item]]
            assert found, (f"{case} pass {k} item {item}: no {'fg' if fg else 'bg'} window "
                           f"gives Caffe's crop (label {labels[item]})")
