"""Caffe Data-layer databases (LMDB, LevelDB of Datum records) written with the lmdb and
plyvel bindings, read back as Caffe's Data layer reads them, converted to Parquet, and
refused in one line when broken. Databases made by real Caffe's convert_imageset are
compared with Caffe's own Data layer in tests/caffe_oracle/test_database_oracle.py."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet.caffe import schema
from sparknet.caffe.database import (
    DatabaseSource,
    database_batches,
    database_shape,
    database_source,
    datum_image,
    detect_backend,
    first_batch,
    parse_datum,
    read_records,
    write_parquet,
)
from sparknet.caffe.transform import rgb_to_gray
from sparknet.cli.main import main
from sparknet.errors import DataError

lmdb = pytest.importorskip("lmdb")
plyvel = pytest.importorskip("plyvel")
Datum = schema.message_class("Datum")


def raw_datum(image: np.ndarray, label: int) -> bytes:
    c, h, w = image.shape
    return Datum(channels=c, height=h, width=w, data=image.astype(np.uint8).tobytes(),
                 label=label).SerializeToString()


def png_datum(rgb_or_gray: np.ndarray, label: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb_or_gray).save(buffer, format="PNG")
    return Datum(data=buffer.getvalue(), encoded=True, label=label).SerializeToString()


def write_lmdb(path: Path, records: dict[bytes, bytes]) -> Path:
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for key, value in records.items():
            txn.put(key, value)
    env.close()
    return path


def write_leveldb(path: Path, records: dict[bytes, bytes]) -> Path:
    db = plyvel.DB(str(path), create_if_missing=True)
    for key, value in records.items():
        db.put(key, value)
    db.close()
    return path


def images_and_labels(n: int, shape: tuple[int, ...] = (3, 4, 5), seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, *shape), dtype=np.uint8),
            rng.integers(0, 10, n).astype(np.int64))


# Keys as convert_imageset writes them (zero-padded index + file name), inserted shuffled:
# the database orders them, and Caffe reads them in that order.
def caffe_keys(n: int) -> list[bytes]:
    return [f"{i:08d}_img{i}.png".encode() for i in range(n)]


@pytest.mark.parametrize("backend", ["LMDB", "LEVELDB"])
def test_raw_datums_read_in_key_order(backend: str, tmp_path: Path) -> None:
    images, labels = images_and_labels(7)
    keys = caffe_keys(7)
    order = [3, 0, 6, 1, 5, 2, 4]
    records = {keys[i]: raw_datum(images[i], int(labels[i])) for i in order}
    writer = write_lmdb if backend == "LMDB" else write_leveldb
    path = writer(tmp_path / "db", records)
    assert detect_backend(path) == backend
    source = DatabaseSource(path=path, backend=backend)
    assert [key for key, _ in read_records(source)] == keys
    batch, batch_labels = first_batch(source, 5)
    np.testing.assert_array_equal(batch, images[:5])
    np.testing.assert_array_equal(batch_labels, labels[:5])
    assert database_shape(source) == (3, 4, 5)


def test_first_batch_cycles_like_caffe_when_the_database_is_smaller(tmp_path: Path) -> None:
    images, labels = images_and_labels(3)
    path = write_lmdb(tmp_path / "db", {k: raw_datum(images[i], int(labels[i]))
                                        for i, k in enumerate(caffe_keys(3))})
    batch, batch_labels = first_batch(DatabaseSource(path=path), 7)
    np.testing.assert_array_equal(batch, images[[0, 1, 2, 0, 1, 2, 0]])
    np.testing.assert_array_equal(batch_labels, labels[[0, 1, 2, 0, 1, 2, 0]])


def test_float_data_datums(tmp_path: Path) -> None:
    values = np.random.default_rng(1).normal(size=(2, 3, 3)).astype(np.float32)
    record = Datum(channels=2, height=3, width=3, float_data=values.ravel().tolist(),
                   label=4).SerializeToString()
    image = datum_image(parse_datum(record))
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image, values)


def test_encoded_datums_decode_as_opencv_does(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    colour, grey = parse_datum(png_datum(rgb, 1)), parse_datum(png_datum(gray, 2))
    # IMREAD_UNCHANGED: colour as BGR, gray stays one channel.
    np.testing.assert_array_equal(datum_image(colour), rgb[..., ::-1].transpose(2, 0, 1))
    np.testing.assert_array_equal(datum_image(grey), gray[None])
    # force_color: gray repeated in 3 channels; force_gray: libpng's conversion.
    np.testing.assert_array_equal(datum_image(grey, force_color=True),
                                  np.repeat(gray[None], 3, axis=0))
    np.testing.assert_array_equal(datum_image(colour, force_gray=True), rgb_to_gray(rgb)[None])


def test_parquet_holds_every_record_untransformed(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    images, labels = images_and_labels(2500, shape=(1, 6, 6))
    path = write_lmdb(tmp_path / "db", {k: raw_datum(images[i], int(labels[i]))
                                        for i, k in enumerate(caffe_keys(2500))})
    rows = write_parquet(DatabaseSource(path=path), tmp_path / "out.parquet")
    table = pq.read_table(tmp_path / "out.parquet")
    assert rows == table.num_rows == 2500
    features = np.asarray(table["features"].to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(features, images.reshape(2500, -1))
    np.testing.assert_array_equal(table["label"].to_numpy(), labels)
    assert not list(tmp_path.glob(".*partial"))


def test_bad_databases_are_one_line(tmp_path: Path) -> None:
    images, labels = images_and_labels(2)
    mixed = write_lmdb(tmp_path / "mixed", {
        b"0": raw_datum(images[0], 0), b"1": raw_datum(np.zeros((3, 2, 2)), 1)})
    with pytest.raises(DataError, match=r"has shape \(3, 2, 2\), the first \(3, 4, 5\)"):
        list(database_batches(DatabaseSource(path=mixed)))
    assert not (tmp_path / "mixed.parquet").exists()
    with pytest.raises(DataError, match="has shape"):
        write_parquet(DatabaseSource(path=mixed), tmp_path / "mixed.parquet")
    assert not list(tmp_path.glob("*.parquet")) and not list(tmp_path.glob(".*partial"))

    garbage = write_lmdb(tmp_path / "garbage", {b"0": b"\xff\xff\xff\xff"})
    with pytest.raises(DataError, match="is not a Caffe Datum"):
        first_batch(DatabaseSource(path=garbage), 1)
    short = write_lmdb(tmp_path / "short", {b"0": Datum(channels=1, height=2, width=2,
                                                        data=b"\1").SerializeToString()})
    with pytest.raises(DataError, match="holds 1 values, not 4"):
        first_batch(DatabaseSource(path=short), 1)
    empty = write_lmdb(tmp_path / "empty", {})
    with pytest.raises(DataError, match="has no records"):
        database_shape(DatabaseSource(path=empty))
    with pytest.raises(DataError, match="is not a LevelDB database"):
        first_batch(DatabaseSource(path=mixed, backend="LEVELDB"), 1)
    with pytest.raises(DataError, match="neither an LMDB"):
        detect_backend(tmp_path)


def _net(folder: Path, source: str, backend: str = "LMDB") -> Path:
    path = folder / "net.prototxt"
    path.write_text(
        'layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }\n'
        f'  data_param {{ source: "{source}" batch_size: 4 backend: {backend} }}\n'
        '  transform_param { scale: 0.5 } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
        'inner_product_param { num_output: 10 } }\n'
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" '
        'top: "loss" }\n')
    return path


def test_source_is_found_beside_the_prototxt(tmp_path: Path, monkeypatch: Any) -> None:
    images, labels = images_and_labels(2)
    write_lmdb(tmp_path / "train_lmdb", {b"0": raw_datum(images[0], 1)})
    net = _net(tmp_path, "train_lmdb")
    monkeypatch.chdir("/")
    assert database_source(net).path == tmp_path / "train_lmdb"
    with pytest.raises(DataError, match="has no Data layer in the TEST phase"):
        database_source(net, phase="TEST")
    missing = _net(tmp_path / "train_lmdb", "nowhere_lmdb")
    with pytest.raises(DataError, match="database nowhere_lmdb not found"):
        database_source(missing)


def test_cli_to_parquet_from_prototxt_and_folder(tmp_path: Path, capsys: Any) -> None:
    import pyarrow.parquet as pq

    images, labels = images_and_labels(5, shape=(1, 3, 3))
    write_lmdb(tmp_path / "train_lmdb", {k: raw_datum(images[i], int(labels[i]))
                                         for i, k in enumerate(caffe_keys(5))})
    net = _net(tmp_path, "train_lmdb")
    assert main(["caffe", "to-parquet", str(net), str(tmp_path / "a.parquet")]) == 0
    assert "--input-shape 1,3,3" in capsys.readouterr().out
    assert main(["caffe", "to-parquet", str(tmp_path / "train_lmdb"), str(tmp_path / "b.parquet"),
                 "--limit", "2"]) == 0
    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    assert a.num_rows == 5 and b.num_rows == 2
    assert a.slice(0, 2).equals(b)
    capsys.readouterr()
    assert main(["caffe", "to-parquet", str(net), str(tmp_path / "a.parquet")]) == 2
    err = capsys.readouterr().err.strip()
    assert "exists" in err and "\n" not in err


def test_a_missing_data_layer_database_is_said_before_falling_back(
        lenet_files: tuple[Path, Path], capsys: Any) -> None:
    from sparknet.cli import caffe_db_input

    _, net = lenet_files  # its Data layer names examples/mnist/mnist_train_lmdb, absent here
    assert caffe_db_input.data_source(f"caffe:{net}") is None
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("caffe: not training on the Data layer's")
    assert "mnist_train_lmdb" in out[0] and "--parquet or --images" in out[0]
