"""Streamed shards (the ``streamed`` placement): same weights as in memory, bounded reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet.config import TrainConfig
from sparknet.data.chunks import ChunkLayout
from sparknet.data.placements.streamed import FILE_BATCH_ROWS, StreamedShard, write_shard_file
from sparknet.data.shards import InputSpec, Shard

SPEC = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)


def _config(**engine: Any) -> TrainConfig:
    return TrainConfig.from_dict({"model": "lenet", "seed": 5, "checkpoint_every": 0,
                                  "engine": {"num_workers": 2, "tau": 5, "batch_size": 32,
                                             "rounds": 3, "eval_every": 3, **engine},
                                  "optimizer": {"lr": 0.05}})


def test_shard_file_reads_back_rows_by_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    count = 2 * FILE_BATCH_ROWS + 17  # three record batches, the last one short
    features = rng.integers(0, 256, (count, 1, 4, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, count).astype(np.int64)
    layout = ChunkLayout(stored="pixels", shape=(1, 4, 3))
    chunks = [(features[i: i + 1000].tobytes(), labels[i: i + 1000].tobytes(),
               len(labels[i: i + 1000])) for i in range(0, count, 1000)]
    assert write_shard_file(tmp_path / "s.arrow", layout, chunks)[0] == count
    shard = StreamedShard(tmp_path / "s.arrow", layout)
    index = rng.permutation(count)[:300]
    got_features, got_labels = shard.rows(index)
    assert len(shard) == count
    assert np.array_equal(got_features, features[index])
    assert np.array_equal(got_labels, labels[index])
    whole, whole_labels = shard.rows(slice(count - 50, count + 10))
    assert np.array_equal(whole, features[-50:]) and np.array_equal(whole_labels, labels[-50:])
    assert np.array_equal(Shard(features, labels).rows(index)[0], got_features)
    shard.close()


@pytest.mark.spark
def test_streamed_arrays_give_the_in_memory_weights(spark: Any, fashion: Any) -> None:
    from sparknet.data.sources import from_arrays
    from sparknet.engine.trainer import train

    split, test = fashion["train"], fashion["test"]
    arrays = {"train": (split.images[:3000], split.labels[:3000]),
              "test": (test.images[:500], test.labels[:500])}
    results = {}
    for streamed in (False, True):
        data = from_arrays(spark, spec=SPEC, num_workers=2, seed=5, streamed=streamed,
                           **arrays)  # type: ignore[arg-type]
        try:
            results[streamed] = train(data, config=_config(), progress=False)
        finally:
            data.release()
    assert np.array_equal(results[True].floats, results[False].floats)
    assert results[True].metrics[-1]["test_accuracy"] == \
        results[False].metrics[-1]["test_accuracy"]


@pytest.mark.spark
def test_streamed_image_folder_gives_the_in_memory_weights(spark: Any, jpeg_folder: Path
                                                           ) -> None:
    from sparknet.data.sources import image_folder_data
    from sparknet.engine.trainer import train

    spec = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)
    results = {}
    for streamed in (False, True):
        data, classes, summary = image_folder_data(
            spark, jpeg_folder / "train", val=jpeg_folder / "val", spec=spec, num_workers=2,
            batch_size=32, streamed=streamed)
        assert sum(summary.shard_sizes) == 1200 and data.test_size == 300
        try:
            results[streamed] = train(data, config=_config(rounds=2, eval_every=1),
                                      progress=False)
        finally:
            data.release()
    assert classes[0] == "0-T_shirt_top" and len(classes) == 10
    assert np.array_equal(results[True].floats, results[False].floats)
    assert results[True].metrics[-1]["test_accuracy"] == \
        results[False].metrics[-1]["test_accuracy"]


def test_encoded_rows_across_byte_limited_batches_decode_to_the_images(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from PIL import Image

    from sparknet.data.placements import streamed

    monkeypatch.setattr(streamed, "FILE_BATCH_BYTES", 3000)  # record batches of a few rows
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (50, 3, 8, 6), dtype=np.uint8)
    blobs = []
    for image in pixels:
        out = io.BytesIO()
        Image.fromarray(image.transpose(1, 2, 0)).save(out, format="PNG")  # lossless
        blobs.append(out.getvalue())
    labels = np.arange(50, dtype=np.int64) % 7
    layout = ChunkLayout(stored="encoded", shape=(3, 8, 6))
    chunk = (np.array([len(b) for b in blobs], np.int64).tobytes() + b"".join(blobs),
             labels.tobytes(), 50)
    write_shard_file(tmp_path / "e.arrow", layout, [chunk])
    shard = StreamedShard(tmp_path / "e.arrow", layout, decode_threads=3)
    assert len(shard._blocks) > 2  # the byte limit cut it into several record batches
    index = rng.permutation(50)[:20]
    features, got_labels = shard.rows(index)
    assert np.array_equal(features, pixels[index]) and np.array_equal(got_labels, labels[index])
    features, got_labels = shard.rows(slice(3, 47))  # evaluation reads runs
    assert np.array_equal(features, pixels[3:47]) and np.array_equal(got_labels, labels[3:47])
    shard.close()


def _shard_files(data: Any) -> list[Path]:
    from pyspark import SparkFiles

    folder = Path(SparkFiles.getRootDirectory()) / "sparknet-stream"
    return sorted(folder.glob(f"{data.train.token}-*.arrow"))


@pytest.mark.spark
@pytest.mark.parametrize("damage", ["zeroed", pytest.param("deleted", marks=pytest.mark.slow)])
def test_a_damaged_or_deleted_shard_file_stops_the_run_naming_it(
        spark: Any, fashion: Any, damage: str) -> None:
    """The campaign zeroed a third of each shard file in place: the run trained on zeros and
    exited 0. Now the round stops with one line naming the file (never 'ran away')."""
    from sparknet.data.sources import from_arrays
    from sparknet.engine.trainer import train
    from sparknet.errors import TrainingError

    split = fashion["train"]
    data = from_arrays(spark, spec=SPEC, num_workers=2, seed=5, streamed=True,
                       train=(split.images[:1000], split.labels[:1000]), test=None)

    def harm(record: dict[str, Any]) -> None:
        if record["round"] != 1:
            return
        for path in _shard_files(data):
            if damage == "deleted":
                path.unlink()
                continue
            size = path.stat().st_size
            with open(path, "r+b") as handle:
                handle.seek(size // 3)
                handle.write(bytes(size // 3))

    try:
        with pytest.raises(TrainingError) as caught:
            train(data, config=_config(eval_every=0), progress=False, on_record=harm)
    finally:
        data.release()
    message = str(caught.value)
    assert "\n" not in message and "round 1 failed in all 4 attempts" in message
    named = Path(message.split("streamed shard file ")[1].split()[0])
    assert named.parent.name == "sparknet-stream" and named.name.startswith(data.train.token)
    expected = "was deleted from its executor" if damage == "deleted" else \
        "does not match the SHA-256 digest"
    assert expected in message and "ran away" not in message


@pytest.mark.parametrize("settings, named", [
    ({"spark.speculation": "true"}, "spark.speculation=true"),
    ({"spark.decommission.enabled": "true", "spark.storage.decommission.enabled": "true",
      "spark.storage.decommission.rddBlocks.enabled": "true"},
     "spark.storage.decommission.rddBlocks.enabled=true"),
])
def test_settings_that_move_tasks_off_their_shard_files_are_one_line(
        settings: dict[str, str], named: str) -> None:
    from sparknet.engine.spark_runner import check_tasks_stay_with_files
    from sparknet.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        check_tasks_stay_with_files(settings)
    assert str(refused.value).startswith(named) and "\n" not in str(refused.value)
    # Decommissioning that recomputes shards instead of moving them is fine, as is the rest.
    check_tasks_stay_with_files({**settings, "spark.speculation": "false",
                                 "spark.storage.decommission.rddBlocks.enabled": "false"})
