"""``sparknet train --images DIR [--val-images DIR]``: train on a folder of PNG/JPEG files.

The folder is laid out like ImageNet, ``DIR/<class>/<file>.jpg``; class names come from the
sub-folders (sorted), and the index-to-class map is saved as ``classes.json`` in the run
directory. Images are streamed: each worker's shard is a file of still-encoded images on its
executor, decoded a batch at a time (``sparknet.data.placements.streamed``). ``--stream``
streams the other inputs (Fashion-MNIST, ``--parquet``) the same way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparknet.cli.run_settings import check_rows
from sparknet.errors import ConfigError, DataError
from sparknet.weights_dir import atomic_write_text

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from sparknet.cli.run_settings import DataSource
    from sparknet.config import TrainConfig
    from sparknet.data.placement import SparkData
    from sparknet.models.kinds import ModelKind

CLASSES_FILE = "classes.json"


def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("image folder input (instead of Fashion-MNIST)")
    group.add_argument("--images", type=Path, default=None, metavar="DIR",
                       help="train on DIR/<class>/<file>.jpg|png (shape: --input-shape)")
    group.add_argument("--val-images", type=Path, default=None, metavar="DIR",
                       help="evaluate on DIR/<class>/<file>.jpg|png (same class folders)")
    group.add_argument("--invalid-images", choices=("error", "skip"), default=None,
                       help="a corrupt image stops the run naming the file (error, default) "
                            "or is skipped and counted (skip)")
    group.add_argument("--stream", action="store_true",
                       help="stream Fashion-MNIST or --parquet data from files on the "
                            "executors instead of holding it in memory (--images always "
                            "streams)")


def given_columns(args: argparse.Namespace) -> dict[str, Any]:
    """The image-folder options named on the command line (a resumed run compares them)."""
    given: dict[str, Any] = {}
    if args.val_images is not None:
        given["val_images"] = str(Path(args.val_images).resolve())
    if args.invalid_images is not None:
        given["invalid_images"] = args.invalid_images
    if args.input_shape is not None:
        given["input_shape"] = list(args.input_shape)
    return given


def columns(args: argparse.Namespace) -> dict[str, Any]:
    """Every image-folder option, defaults filled in: saved with the run (plain JSON)."""
    return {"val_images": None, "invalid_images": "error", "input_shape": [1, 28, 28],
            **given_columns(args)}


def check(source: DataSource, model: ModelKind, config: TrainConfig, *,
          remote: str | None) -> tuple[list[str], int]:
    """Cheap checks before Spark starts: the folders' layout and the network's outputs."""
    from sparknet.data.images import class_names
    from sparknet.models.kinds import network_outputs
    from sparknet.models.objectives import resolve_objective

    objective = resolve_objective(config.objective)
    if not objective.index_labels:
        raise ConfigError(f"--images labels each image with its class folder's index, but "
                          f"objective {config.objective!r} does not take class-index labels: "
                          "use objective 'multiclass'")
    if remote is not None:
        raise ConfigError("--images streams shards from the executors' local folders, which "
                          "Spark Connect does not offer: use --master")
    classes = class_names(Path(source.path))
    count = _check_files(Path(source.path), classes, source.columns["invalid_images"])
    check_rows(count, num_workers=config.engine.num_workers,
               batch_size=config.engine.batch_size, what=f"--images {source.path}")
    if source.columns["val_images"] is not None:
        val = Path(source.columns["val_images"])
        _check_files(val, class_names(val, flag="--val-images"),
                     source.columns["invalid_images"])
    shape = tuple(source.columns["input_shape"])
    outputs = network_outputs(model, shape)
    objective.check_outputs(outputs, network=model.key)
    if outputs != len(classes):
        raise ConfigError(f"--images {source.path} has {len(classes)} class folders but "
                          f"network {model.key!r} has {outputs} outputs: use a network "
                          f"with {len(classes)} outputs{_sized_hint(model, len(classes))}")
    return classes, outputs


def _check_files(root: Path, classes: list[str], invalid_images: str) -> int:
    """The number of images in the class folders; an empty file is an invalid image (Spark's
    file source would drop it silently): refused naming it, or skipped and said so."""
    from sparknet.data.images import IMAGE_SUFFIXES

    count, empty = 0, []
    for name in classes:
        for path in (root / name).iterdir():
            if path.name.startswith((".", "_")) or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                size = path.stat().st_size
            except OSError as exc:
                raise DataError(f"image {path} cannot be read ({exc.strerror or exc}): fix "
                                "its permissions or remove it") from None
            if size == 0:
                empty.append(path)
            else:
                count += 1
    if empty and invalid_images != "skip":
        raise DataError(f"{len(empty)} image files are empty (0 bytes), e.g. {empty[0]}: remove "
                        "them, or pass --invalid-images skip to skip and count them")
    if empty:
        print(f"images: skipping {len(empty)} empty files (0 bytes) in {root}, e.g. {empty[0]}")
    return count


def _sized_hint(model: ModelKind, classes: int) -> str:
    from sparknet.models.kinds import BuiltinModel

    if not isinstance(model, BuiltinModel):
        return ""
    return f" (built-ins take NAME#N: --model {model.key.partition('#')[0]}#{classes})"


def load(spark: SparkSession, source: DataSource, config: TrainConfig, num_classes: int,
         classes: list[str]) -> SparkData:
    """Checks every image (before training) and writes the streamed shards."""
    from sparknet.data.shards import InputSpec
    from sparknet.data.sources import image_folder_data

    spec = InputSpec(shape=tuple(source.columns["input_shape"]), num_classes=num_classes,
                     scale=1 / 255, class_names=tuple(classes))
    val = source.columns["val_images"]
    data, _, summary = image_folder_data(
        spark, Path(source.path), val=Path(val) if val is not None else None, spec=spec,
        num_workers=config.engine.num_workers, batch_size=config.engine.batch_size,
        invalid_images=source.columns["invalid_images"],
        decode_threads=config.engine.decode_threads)
    skipped = (f"; skipped {summary.skipped_images} undecodable (e.g. "
               f"{summary.skipped_example})" if summary.skipped_images else "")
    print(f"images: {sum(summary.shard_sizes):,} files in {len(summary.shard_sizes)} streamed "
          f"shards from {source.path}{skipped}")
    return data


def save_classes(run_dir: Path, classes: list[str]) -> None:
    """The index-to-class map of a run: ``classes.json`` = ``["name of class 0", ...]``."""
    atomic_write_text(run_dir / CLASSES_FILE, json.dumps(classes, indent=1) + "\n")
