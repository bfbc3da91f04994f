"""``sparknet train --model caffe:NET.prototxt`` trains on the LMDB its Data layer names: the
same weights, bit for bit, as training on a Parquet file of the same records written
independently with pyarrow (the --parquet path), with the shape and batch size taken from
the database and the Data layer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet.caffe import schema
from sparknet.cli.main import main
from sparknet.engine.run_dir import load_result

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # two Spark runs: about a minute
lmdb = pytest.importorskip("lmdb")
ROWS = 160


def test_cli_trains_on_the_lmdb_its_prototxt_names(spark: Any, fashion: Any, tmp_path: Path,
                                                    lenet_files: tuple[Path, Path]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = fashion["train"].images[:ROWS].reshape(ROWS, 1, 28, 28)
    labels = fashion["train"].labels[:ROWS]
    env = lmdb.open(str(tmp_path / "train_lmdb"), map_size=1 << 26)
    datum = schema.message_class("Datum")
    with env.begin(write=True) as txn:
        for i in range(ROWS):
            txn.put(f"{i:08d}".encode(), datum(channels=1, height=28, width=28,
                                              data=images[i].tobytes(),
                                              label=int(labels[i])).SerializeToString())
    env.close()
    text = lenet_files[1].read_text()
    assert 'source: "examples/mnist/mnist_train_lmdb"' in text
    net = tmp_path / "lenet.prototxt"
    # Relative to the prototxt's folder; the batch size 64 becomes 16 (ROWS is small).
    net.write_text(text.replace('source: "examples/mnist/mnist_train_lmdb"',
                                'source: "train_lmdb"').replace("batch_size: 64",
                                                                "batch_size: 16"))
    common = ["--seed", "4", "--num-workers", "1", "--tau", "3", "--rounds", "1",
              "--eval-every", "0", "--lr", "0.01", "--momentum", "0", "--checkpoint-every",
              "0", "--no-progress"]
    assert main(["train", "--model", f"caffe:{net}", "--output", str(tmp_path / "db"),
                 *common]) == 0
    run = json.loads((tmp_path / "db" / "run.json").read_text())["data"]
    assert run["kind"] == "caffe-db" and run["columns"]["input_shape"] == [1, 28, 28]
    config = json.loads((tmp_path / "db" / "config.json").read_text())
    assert config["model"] == f"caffe:{net}#1,28,28"
    assert config["engine"]["batch_size"] == 16

    flat = images.reshape(ROWS, -1).astype(np.float32)
    table = pa.table({"features": pa.array(list(flat), type=pa.list_(pa.float32())),
                      "label": pa.array(labels, type=pa.int64())})
    pq.write_table(table, tmp_path / "same.parquet")
    assert main(["train", "--model", f"caffe:{net}#1,28,28", "--parquet",
                 str(tmp_path / "same.parquet"), "--input-shape", "1,28,28", "--batch-size",
                 "16", "--output", str(tmp_path / "parquet"), *common]) == 0
    np.testing.assert_array_equal(load_result(tmp_path / "db").floats,
                                  load_result(tmp_path / "parquet").floats)
