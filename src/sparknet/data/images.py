"""Encoded images (PNG/JPEG bytes) -> uint8 pixels, and folders laid out like ImageNet.

Resize policy (one rule everywhere images are decoded per batch): an image is converted to
the channel count of the input shape (Pillow's ``L``, ``RGB`` or ``RGBA``); if its height and
width differ from the input shape's, it is resized to exactly that size with bilinear
filtering (the aspect ratio is not kept; crop or pad the files first if it matters).

A folder of images is ``ROOT/<class>/<file>.{jpg,jpeg,png}``; class names are the sub-folder
names in sorted order, class index i is the i-th name. The folder is checked on the driver
before Spark starts: no class sub-folders, or a class folder without images, is one error line.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sparknet.errors import DataError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


class UndecodableImage(ValueError):
    """The bytes are not a complete PNG/JPEG image."""


def decode_image(raw: bytes | memoryview, shape: tuple[int, ...]) -> np.ndarray:
    """One encoded image -> uint8 ``[channels, height, width]`` under the resize policy."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = shape
    try:
        with Image.open(io.BytesIO(raw)) as image:
            decoded = image.convert(_MODES[channels])
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError) as exc:
        raise UndecodableImage(str(exc)) from None
    if decoded.size != (width, height):
        decoded = decoded.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(decoded, np.uint8).reshape(height, width, channels)
    return pixels.transpose(2, 0, 1)


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def decode_pool(threads: int) -> ThreadPoolExecutor:
    """One pool per size per Python worker, kept across tasks (threads start once)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = ThreadPoolExecutor(threads,
                                                        thread_name_prefix="sparknet-decode")
        return pool


class ImageDecoder:
    """Decodes a batch of encoded images in a thread pool (Pillow releases the GIL)."""

    def __init__(self, shape: tuple[int, ...], *, threads: int) -> None:
        self.shape, self.threads = shape, threads

    def decode(self, blobs: Sequence[bytes | memoryview]) -> np.ndarray:
        out = np.empty((len(blobs), *self.shape), np.uint8)

        def one(row: int) -> None:
            out[row] = decode_image(blobs[row], self.shape)

        if self.threads == 1 or len(blobs) < 2:
            for row in range(len(blobs)):
                one(row)
        else:
            list(decode_pool(self.threads).map(one, range(len(blobs))))
        return out


def class_names(root: str | Path, *, flag: str = "--images") -> list[str]:
    """The class sub-folders of ``root`` (sorted); a DataError when the layout is wrong."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{flag} {root} is not a folder: give a folder laid out as "
                        f"{root}/<class>/<file>.jpg")
    names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not names:
        raise DataError(f"{flag} {root} has no class sub-folders: lay the images out as "
                        f"{root}/<class>/<file>.jpg, one folder per class")
    for name in names:
        if not any(f.suffix.lower() in IMAGE_SUFFIXES for f in (root / name).iterdir()):
            raise DataError(f"class folder {root / name} holds no .jpg/.jpeg/.png image: add "
                            "its images or remove the folder")
    if len(names) < 2:
        raise DataError(f"{flag} {root} has one class folder ({names[0]!r}): a classifier "
                        "needs at least two")
    return names


def image_folder_frame(spark: SparkSession, root: str | Path, *,
                       classes: Sequence[str] | None = None, flag: str = "--images"
                       ) -> tuple[DataFrame, list[str]]:
    """``root`` through Spark's ``binaryFile`` source: (DataFrame, class names).

    Columns: ``image`` (the file's bytes), ``label`` (class index, double, carrying the class
    names as a nominal attribute, as StringIndexer's output does: a model fitted on it names
    its predictions) and ``origin`` (the file's path, for error messages). ``classes`` fixes
    the class order (a validation folder uses the training folder's classes); folders it does
    not name are an error.
    """
    from pyspark.sql import functions as F

    found = class_names(root, flag=flag)
    names = list(classes) if classes is not None else found
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise DataError(f"{flag} {root} has class folders the training data lacks "
                        f"({unknown[:3]}): use the same class folders as the training images")
    index = F.create_map(*[F.lit(x) for i, name in enumerate(names)
                           for x in (name, float(i))])
    glob = "*.{" + ",".join(s[1:] for s in IMAGE_SUFFIXES) + "," + \
        ",".join(s[1:].upper() for s in IMAGE_SUFFIXES) + "}"
    # The class folders only: a hidden folder beside them (.git, .cache) is not a class.
    df = (spark.read.format("binaryFile").option("pathGlobFilter", glob)
          .load([str(Path(root).resolve() / name) for name in found]))
    folder = F.element_at(F.split(F.col("path"), "/"), -2)
    attribute = {"ml_attr": {"type": "nominal", "name": "label", "vals": names}}
    frame = df.select(F.col("content").alias("image"),
                      index[folder].alias("label", metadata=attribute),
                      F.col("path").alias("origin"))
    # The source makes a partition per ~32 small files; a few tasks per core read them with
    # far less per-task overhead (no shuffle, and the row order stays the same every time).
    tasks = 4 * spark.sparkContext.defaultParallelism
    return frame.coalesce(tasks), names
