"""Arrow -> NumPy conversion of every feature kind, and the problem report, without Spark."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from sparknet.data.columns import FeatureLayout, Report, Where, decode_features, decode_labels
from sparknet.data.convert import check_reports
from sparknet.data.shards import InputSpec
from sparknet.errors import DataError

SHAPE = (1, 28, 28)


def _png(image: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image, mode).save(buf, "PNG")
    return buf.getvalue()


def test_numeric_rows_become_one_block(fashion: dict) -> None:
    images = fashion["test"].images[:50]
    floats = images.reshape(50, -1).astype(np.float32) / 255
    column = pa.array(list(floats), pa.list_(pa.float32()))
    report = Report()
    layout = FeatureLayout(kind="array", shape=SHAPE)
    block, valid = decode_features(column.slice(10, 30), layout, report)
    assert valid.all() and not report.counts
    np.testing.assert_array_equal(block, floats[10:40].reshape(30, *SHAPE))


def test_numeric_problems_are_counted_with_an_example() -> None:
    good = [1.0, 2.0, 3.0, 4.0]
    column = pa.array([good, None, [1.0, 2.0, 3.0], [np.nan, 1, 1, 1], [np.inf, 1, 1, 1],
                       [1.0, None, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], pa.list_(pa.float64()))
    report = Report()
    block, valid = decode_features(column, FeatureLayout(kind="array", shape=(2, 2)), report,
                                   where=Where("input partition 3, ", 100))
    assert valid.tolist() == [True, False, False, False, False, False, True]
    np.testing.assert_array_equal(block.reshape(2, 4), [good, [5, 6, 7, 8]])
    assert report.counts == {"null_features": 1, "wrong_length": 1, "non_finite": 3}
    assert report.examples["null_features"] == "input partition 3, row 101"
    assert report.examples["wrong_length"] == "input partition 3, row 102 has length 3"


def test_labels_must_be_integers_in_range() -> None:
    column = pa.array([0.0, 9.0, 3.0, 1.5, -1.0, 10.0, np.nan, None])
    report = Report()
    labels, valid = decode_labels(column, 10, report)
    assert valid.tolist() == [True, True, True, False, False, False, False, False]
    assert labels[:3].tolist() == [0, 9, 3]
    assert report.counts == {"bad_label": 4, "null_labels": 1}
    assert report.examples["bad_label"] == "row 3 has label 1.5"
    ints, ok = decode_labels(pa.array([1, 2, 7], pa.int32()), 10, Report())
    assert ints.dtype == np.int64 and ints.tolist() == [1, 2, 7] and ok.all()


def test_png_bytes_decode_to_the_original_pixels(fashion: dict) -> None:
    images = fashion["test"].images[:20]
    column = pa.array([_png(img[0]) for img in images] + [b"not an image", None], pa.binary())
    report = Report()
    block, valid = decode_features(column, FeatureLayout(kind="binary", shape=SHAPE), report)
    assert valid.tolist() == [True] * 20 + [False, False]
    assert block.dtype == np.uint8
    np.testing.assert_array_equal(block, images)
    assert report.counts == {"undecodable": 1, "null_features": 1}
    assert "row 20 starts with b'not an i'" in report.examples["undecodable"]


def test_jpeg_and_wrong_image_size() -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=95)
    column = pa.array([buf.getvalue(), _png(np.zeros((5, 5), np.uint8))], pa.binary())
    report = Report()
    block, valid = decode_features(column, FeatureLayout(kind="binary", shape=(3, 8, 8)),
                                   report)
    assert valid.tolist() == [True, False] and block.shape == (1, 3, 8, 8)
    reference = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    np.testing.assert_array_equal(block[0].transpose(1, 2, 0), reference)  # HWC -> CHW
    assert report.counts == {"wrong_image": 1}


def _image_struct(rows: list[tuple[int, int, int, bytes]]) -> pa.StructArray:
    return pa.StructArray.from_arrays(
        [pa.array([f"file:/img{i}.png" for i in range(len(rows))]),
         pa.array([r[0] for r in rows], pa.int32()), pa.array([r[1] for r in rows], pa.int32()),
         pa.array([r[2] for r in rows], pa.int32()), pa.array([16] * len(rows), pa.int32()),
         pa.array([r[3] for r in rows], pa.binary())],
        names=["origin", "height", "width", "nChannels", "mode", "data"])


def test_image_struct_is_bgr_hwc_and_becomes_rgb_chw() -> None:
    rgb = np.random.default_rng(1).integers(0, 255, (3, 4, 5, 3), dtype=np.uint8)
    bgr = rgb[..., ::-1]
    rows = [(4, 5, 3, img.tobytes()) for img in bgr]
    rows += [(-1, -1, -1, b""), (5, 4, 3, bgr[0].tobytes())]
    report = Report()
    block, valid = decode_features(_image_struct(rows).slice(0), FeatureLayout(kind="image",
                                   shape=(3, 4, 5)), report)
    assert valid.tolist() == [True, True, True, False, False]
    np.testing.assert_array_equal(block, rgb.transpose(0, 3, 1, 2))
    assert report.counts == {"undecodable": 1, "wrong_image": 1}
    assert "file:/img3.png" in report.examples["undecodable"]


def test_reports_merge_through_json() -> None:
    a, b = Report(), Report()
    a.add("non_finite", 2, "row 5")
    b.add("non_finite", 3, "row 9")
    b.add("null_labels", 1, "row 1")
    a.merge(Report.from_json(b.to_json()))
    assert a.counts == {"non_finite": 5, "null_labels": 1}
    assert a.examples["non_finite"] == "row 5"


@pytest.mark.parametrize(("kind", "words"), [
    ("null_features", ["'pix'", "dropna"]),
    ("null_labels", ["'y'", "dropna"]),
    ("wrong_length", ["784", "inputShape"]),
    ("non_finite", ["NaN", "Imputer"]),
    ("bad_label", ["[0, 10)", "StringIndexer"]),
    ("wrong_image", ["inputShape [1, 28, 28]"]),
    ("undecodable", ["PNG/JPEG", "invalidImages='skip'"]),
])
def test_each_problem_has_a_message_naming_column_and_fix(kind: str, words: list[str]) -> None:
    report = Report()
    report.add(kind, 4, "input partition 0, row 7")
    with pytest.raises(DataError) as info:
        check_reports([(10, report.to_json())], features="pix", label="y",
                       spec=InputSpec(shape=SHAPE, num_classes=10), invalid_images="error")
    message = str(info.value)
    assert message.startswith("4 ") and "row 7" in message
    for word in words:
        assert word in message


def test_skipped_images_are_counted_not_raised() -> None:
    report = Report()
    report.add("undecodable", 2, "row 3")
    summary = check_reports([(10, report.to_json()), (12, "")], features="pix", label="y",
                             spec=InputSpec(shape=SHAPE, num_classes=10), invalid_images="skip")
    assert summary.shard_sizes == (10, 12) and summary.skipped_images == 2
