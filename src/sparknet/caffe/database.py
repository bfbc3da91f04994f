"""A Caffe Data layer's database (LMDB or LevelDB of Datum records) as arrays and Parquet.

Caffe's Data layer reads the records of ``data_param.source`` in key order and turns each
Datum into a (C, H, W) image: raw ``data`` bytes (uint8, CHW), ``float_data``, or an encoded
image decoded as Caffe's DataTransformer decodes it (``DecodeDatumToCVMatNative``, or
``DecodeDatumToCVMat`` under ``force_color``/``force_gray``) with channels in BGR order. The
DataTransformer (scale, mean, crop, mirror) then runs on that image: in sparknet it runs in
the workers (``transform.transform_batch``), so the database is stored untransformed.

Everything here is a pure function of the database's bytes, with no Spark: ``read_records``
iterates (key, value) pairs, ``datum_image`` decodes one record, ``database_batches`` yields
Arrow record batches of ``features`` (float32 list, CHW order) and ``label`` (int64), and
``write_parquet`` streams them to one Parquet file. Nothing is unpickled: a Datum is a
protobuf message parsed with sparknet's own schema.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparknet.caffe import schema
from sparknet.caffe.prototxt import filter_phase, read_net
from sparknet.caffe.transform import rgb_to_gray
from sparknet.errors import DataError, require_package

BACKENDS = ("LMDB", "LEVELDB")
_BACKEND_PACKAGES = {"LMDB": "lmdb", "LEVELDB": "plyvel"}
ROWS_PER_BATCH = 1024


@dataclass(frozen=True, kw_only=True)
class DatabaseSource:
    """A Data layer's database: its folder, backend and the decoding options of the layer
    (``force_color``/``force_gray`` of its transform_param apply to encoded records only)."""

    path: Path
    backend: str = "LMDB"
    force_color: bool = False
    force_gray: bool = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise DataError(f"database backend {self.backend!r} is not one Caffe has; use LMDB "
                            "or LEVELDB")
        if self.force_color and self.force_gray:
            raise DataError(f"{self.path}: force_color and force_gray are both set; Caffe "
                            "allows only one")


def source_of_layer(layer: Any, *, folder: Path) -> DatabaseSource:
    """The database a ``Data`` layer names. A relative ``source`` is looked up beside the
    prototxt (``folder``) first, then in the working directory (where Caffe looks)."""
    if layer.type != "Data" or not layer.data_param.source:
        raise DataError(f"layer {layer.name!r} ({layer.type}) names no database; give a Data "
                        "layer with data_param.source")
    named = Path(layer.data_param.source)
    candidates = [named] if named.is_absolute() else [folder / named, named]
    found = next((p for p in candidates if p.exists()), None)
    if found is None:
        where = " or ".join(str(p) for p in dict.fromkeys(candidates))
        raise DataError(f"layer {layer.name!r}: database {named} not found (looked in {where});"
                        " fix data_param.source")
    backend = schema.enum_name("DB", layer.data_param.backend)
    transform = layer.transform_param
    return DatabaseSource(path=found, backend=backend, force_color=transform.force_color,
                          force_gray=transform.force_gray)


def detect_backend(path: Path) -> str:
    """LMDB or LEVELDB, from the files Caffe's database writers leave in the folder."""
    if (path / "data.mdb").is_file():
        return "LMDB"
    if (path / "CURRENT").is_file():
        return "LEVELDB"
    raise DataError(f"{path} is neither an LMDB (data.mdb) nor a LevelDB (CURRENT) database "
                    "folder; give the folder convert_imageset wrote")


def database_source(path: Path, *, phase: str = "TRAIN") -> DatabaseSource:
    """The database of a folder (backend told by its files), or of the first Data layer of a
    ``.prototxt`` in ``phase``."""
    path = Path(path)
    if path.is_dir():
        return DatabaseSource(path=path, backend=detect_backend(path))
    if not path.is_file():
        raise DataError(f"{path} does not exist; give a database folder or a .prototxt")
    definition = filter_phase(read_net(path), phase)
    layer = next((x for x in definition.layer if x.type == "Data"), None)
    if layer is None:
        raise DataError(f"{path} has no Data layer in the {phase} phase; give a database "
                        "folder or a net whose Data layer names one")
    return source_of_layer(layer, folder=path.parent)


def _require(backend: str) -> None:
    require_package(_BACKEND_PACKAGES[backend], extra="caffe-db",
                    needed_for=f"reading a Caffe {backend} database")


def read_records(source: DatabaseSource) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of every record, in key order (the order Caffe's Data layer reads)."""
    _require(source.backend)
    if not source.path.is_dir():
        raise DataError(f"{source.path} is not a database folder; give the folder Caffe's "
                        "convert_imageset wrote")
    if source.backend == "LMDB":
        yield from _lmdb_records(source.path)
    else:
        yield from _leveldb_records(source.path)


def _lmdb_records(path: Path) -> Iterator[tuple[bytes, bytes]]:
    import lmdb

    try:
        # lock=False: a read-only reader needs no lock file (the folder may be read-only).
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=True,
                        max_readers=1)
    except lmdb.Error as err:
        raise DataError(f"{path} is not an LMDB database ({err}); check data_param.backend "
                        "(LEVELDB?) and source") from None
    try:
        with env.begin(buffers=False) as txn:
            yield from txn.cursor()
    finally:
        env.close()


def _leveldb_records(path: Path) -> Iterator[tuple[bytes, bytes]]:
    import plyvel

    try:
        db = plyvel.DB(str(path), create_if_missing=False)
    except (plyvel.Error, OSError) as err:
        raise DataError(f"{path} is not a LevelDB database ({err}); check data_param.backend "
                        "(LMDB?) and source") from None
    try:
        yield from db.iterator()
    finally:
        db.close()


def count_records(source: DatabaseSource) -> int:
    """The number of records (LMDB: from its statistics, without reading them)."""
    if source.backend == "LMDB":
        _require("LMDB")
        import lmdb

        try:
            env = lmdb.open(str(source.path), readonly=True, lock=False, subdir=True,
                            max_readers=1)
        except lmdb.Error as err:
            raise DataError(f"{source.path} is not an LMDB database ({err}); check "
                            "data_param.backend and source") from None
        try:
            return int(env.stat()["entries"])
        finally:
            env.close()
    return sum(1 for _ in read_records(source))


def parse_datum(value: bytes, *, key: bytes = b"") -> Any:
    """A Datum message from one record's bytes (one DataError line when it is not one)."""
    datum = schema.message_class("Datum")()
    try:
        datum.ParseFromString(value)
    except Exception as err:  # protobuf's DecodeError and friends: any malformed record
        raise DataError(f"record {key!r} is not a Caffe Datum ({type(err).__name__}); is "
                        "this a Caffe Data layer database?") from None
    return datum


def datum_image(datum: Any, *, force_color: bool = False, force_gray: bool = False,
                key: bytes = b"") -> np.ndarray:
    """The (C, H, W) image of a Datum as Caffe's Data layer sees it before its transform:
    uint8 for ``data`` and encoded images (BGR order), float32 for ``float_data``."""
    if datum.encoded:
        return _decode(datum.data, force_color=force_color, force_gray=force_gray, key=key)
    shape = (int(datum.channels), int(datum.height), int(datum.width))
    size = shape[0] * shape[1] * shape[2]
    if min(shape) < 1:
        raise DataError(f"record {key!r}: Datum shape {shape} is empty")
    if datum.data:
        pixels = np.frombuffer(datum.data, dtype=np.uint8)
    else:
        pixels = np.asarray(datum.float_data, dtype=np.float32)
    if pixels.size != size:
        raise DataError(f"record {key!r}: Datum of shape {shape} holds {pixels.size} values, "
                        f"not {size}; the database is corrupt")
    return pixels.reshape(shape)


def _decode(data: bytes, *, force_color: bool, force_gray: bool, key: bytes) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            is_jpeg = img.format == "JPEG"
            if force_gray and is_jpeg:
                img.draft("L", img.size)  # libjpeg's own grayscale output (luma), as OpenCV
            img.load()
            pixels = _as_opencv(img, force_color=force_color, force_gray=force_gray)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"record {key!r}: encoded image cannot be decoded ({err})") from None
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def _as_opencv(img: Any, *, force_color: bool, force_gray: bool) -> np.ndarray:
    """(H, W, C) uint8 as OpenCV's imdecode gives it: IMREAD_COLOR (BGR) under force_color,
    IMREAD_GRAYSCALE under force_gray, else IMREAD_UNCHANGED (gray stays one channel,
    colour is BGR, an alpha channel is kept as BGRA)."""
    mode = img.mode
    if force_gray:
        if mode in ("L", "I;16", "I"):
            return np.asarray(img.convert("L"))[..., None]
        return rgb_to_gray(np.asarray(img.convert("RGB")))[..., None]
    if mode == "P":
        mode = "RGBA" if "transparency" in img.info else "RGB"
        img = img.convert(mode)
    if force_color or mode not in ("L", "RGBA", "LA"):
        return np.asarray(img.convert("RGB"))[..., ::-1]
    if mode == "L":
        return np.asarray(img)[..., None]
    rgba = np.asarray(img.convert("RGBA"))
    return rgba[..., [2, 1, 0, 3]]


def _record_images(source: DatabaseSource) -> Iterator[tuple[bytes, np.ndarray, int]]:
    for key, value in read_records(source):
        datum = parse_datum(value, key=key)
        image = datum_image(datum, force_color=source.force_color,
                            force_gray=source.force_gray, key=key)
        yield key, image, int(datum.label)


def first_batch(source: DatabaseSource, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``batch_size`` records as (images (N, C, H, W), labels (N,)), cycling from
    the first record when the database is smaller, as Caffe's Data layer does."""
    images: list[np.ndarray] = []
    labels: list[int] = []
    while len(images) < batch_size:
        before = len(images)
        for _, image, label in _record_images(source):
            images.append(image)
            labels.append(label)
            if len(images) == batch_size:
                break
        if len(images) == before:
            raise DataError(f"database {source.path} has no records")
    return _stack(images, source), np.asarray(labels, dtype=np.int64)


def _stack(images: list[np.ndarray], source: DatabaseSource) -> np.ndarray:
    shapes = sorted({image.shape for image in images})
    if len(shapes) > 1:
        raise DataError(f"database {source.path} holds images of shapes {shapes[:3]}; Caffe "
                        "batches them only when they are equal: rebuild it with "
                        "convert_imageset --resize_height H --resize_width W")
    return np.stack(images)


def database_shape(source: DatabaseSource) -> tuple[int, ...]:
    """The (C, H, W) of the first record (what Caffe's Data layer infers its top shape from)."""
    for _, image, _ in _record_images(source):
        return tuple(int(d) for d in image.shape)
    raise DataError(f"database {source.path} has no records")


def database_batches(source: DatabaseSource, *, rows_per_batch: int = ROWS_PER_BATCH,
                     limit: int | None = None) -> Iterator[Any]:
    """Arrow record batches (``features``: float32 list in CHW order, ``label``: int64) of
    every record in key order; every image must have the first one's shape."""
    import pyarrow as pa

    first_shape: tuple[int, ...] | None = None
    images: list[np.ndarray] = []
    labels: list[int] = []
    for seen, (key, image, label) in enumerate(_record_images(source)):
        if limit is not None and seen >= limit:
            break
        if first_shape is None:
            first_shape = image.shape
        elif image.shape != first_shape:
            raise DataError(f"{source.path}: record {key!r} has shape {image.shape}, the first "
                            f"{first_shape}; Caffe batches need equal shapes: rebuild it with "
                            "convert_imageset --resize_height H --resize_width W")
        images.append(image)
        labels.append(label)
        if len(images) == rows_per_batch:
            yield _arrow_batch(images, labels, pa)
            images, labels = [], []
    if images:
        yield _arrow_batch(images, labels, pa)
    if first_shape is None:
        raise DataError(f"database {source.path} has no records")


def _arrow_batch(images: list[np.ndarray], labels: list[int], pa: Any) -> Any:
    flat = np.stack(images).astype(np.float32).reshape(len(images), -1)
    features = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
    # A plain list type (not fixed-size) is what Spark reads as array<float>.
    features = features.cast(pa.list_(pa.float32()))
    return pa.RecordBatch.from_arrays([features, pa.array(labels, type=pa.int64())],
                                      names=["features", "label"])


def write_parquet(source: DatabaseSource, target: Path, *, limit: int | None = None) -> int:
    """Streams the database into one Parquet file (columns ``features``, ``label``);
    returns the number of rows. The file is written beside ``target`` and renamed, so a
    failed conversion leaves no partial file."""
    return write_batches(database_batches(source, limit=limit), target)


def write_batches(batches: Iterator[Any], target: Path) -> int:
    """Streams Arrow record batches (at least one) into one Parquet file ``target``, written
    beside it and renamed, so a failed conversion leaves no partial file; returns the rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = Path(target)
    partial = target.with_name(f".{target.name}.partial")
    rows = 0
    writer = None
    try:
        for batch in batches:
            if writer is None:
                writer = pq.ParquetWriter(str(partial), batch.schema)
            writer.write_table(pa.Table.from_batches([batch]))
            rows += batch.num_rows
    except BaseException:
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)
        raise
    assert writer is not None  # the batch sources raise for an empty source
    writer.close()
    partial.replace(target)
    return rows
