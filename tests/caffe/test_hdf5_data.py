"""Caffe HDF5Data layers on files written with h5py: the file list and datasets read as Caffe's
HDF5DataLayer reads them (rows through the files in list order, a batch spanning files,
from the first file again after the last), converted to Parquet, trained on through
``sparknet train --model caffe:NET``, and refused in one line when broken. Caffe's own
HDF5Data forward on such files is compared in tests/caffe_oracle/test_data_layers_oracle.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet.caffe.hdf5_data import (
    count_rows,
    first_batch,
    hdf5_batches,
    hdf5_shape,
    hdf5_source,
    write_parquet,
)
from sparknet.caffe.model_kind import training_database, with_database_shape
from sparknet.cli.main import main
from sparknet.errors import DataError

h5py = pytest.importorskip("h5py")


def write_h5(path: Path, **datasets: np.ndarray) -> Path:
    with h5py.File(path, "w") as file:
        for name, values in datasets.items():
            file.create_dataset(name, data=values)
    return path


def files(tmp_path: Path, rows: tuple[int, ...] = (3, 4), *, label_dtype: Any = np.float32
          ) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(3)
    datas, labels = [], []
    (tmp_path / "h5").mkdir()
    names = []
    for i, n in enumerate(rows):
        datas.append(rng.normal(size=(n, 2, 3, 2)).astype(np.float32))
        labels.append(rng.integers(0, 5, size=n).astype(label_dtype))
        write_h5(tmp_path / "h5" / f"part{i}.h5", data=datas[-1], label=labels[-1])
        names.append(f"h5/part{i}.h5")
    # Caffe reads the list with `>>`: blank lines and spaces between names are fine.
    (tmp_path / "list.txt").write_text("\n".join(names) + "\n\n")
    return tmp_path / "list.txt", datas, labels


def net(tmp_path: Path, *, batch: int = 5, tops: str = 'top: "data" top: "label"',
        extra: str = "") -> Path:
    path = tmp_path / "net.prototxt"
    path.write_text(f'layer {{ name: "d" type: "HDF5Data" {tops}\n'
                    f'  hdf5_data_param {{ source: "list.txt" batch_size: {batch} {extra} }} }}\n'
                    'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"\n'
                    '  inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }\n'
                    'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label"'
                    ' top: "loss" }\n')
    return path


def test_first_batch_spans_the_files_in_list_order_and_cycles(tmp_path: Path) -> None:
    _, datas, labels = files(tmp_path)
    source = hdf5_source(net(tmp_path))
    assert [p.name for p in source.files] == ["part0.h5", "part1.h5"]
    assert source.datasets == ("data", "label")
    data, label = first_batch(source, 5)  # 3 rows of part0, 2 of part1
    np.testing.assert_array_equal(data, np.concatenate(datas)[:5])
    np.testing.assert_array_equal(label, np.concatenate(labels)[:5])
    data, label = first_batch(source, 9)  # 7 rows, then from part0 again
    np.testing.assert_array_equal(data, np.concatenate([*datas, datas[0][:2]]))
    assert hdf5_shape(source) == (2, 3, 2) and count_rows(source) == 7


def test_integer_datasets_are_read_as_float_and_labels_as_doubles(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    _, datas, labels = files(tmp_path, label_dtype=np.int32)
    source = hdf5_source(net(tmp_path))
    assert first_batch(source, 2)[1].dtype == np.float32
    rows = write_parquet(source, tmp_path / "out.parquet")
    table = pq.read_table(tmp_path / "out.parquet")
    assert rows == 7 and table.column_names == ["features", "label"]
    np.testing.assert_array_equal(np.array(table["features"].to_pylist(), dtype=np.float32),
                                  np.concatenate(datas).reshape(7, -1))
    np.testing.assert_array_equal(table["label"].to_numpy(), np.concatenate(labels))
    assert [b.num_rows for b in hdf5_batches(source, rows_per_batch=2, limit=5)] == [2, 1, 2]


def test_a_label_of_several_values_a_row_is_a_vector(tmp_path: Path) -> None:
    write_h5(tmp_path / "a.h5", data=np.ones((3, 4), np.float64),
             label=np.arange(6, dtype=np.float64).reshape(3, 2))
    (tmp_path / "list.txt").write_text("a.h5\n")
    batch = next(hdf5_batches(hdf5_source(net(tmp_path))))
    assert batch.column("label").to_pylist() == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]


@pytest.mark.parametrize(("setup", "message"), [
    (lambda p: (p / "list.txt").write_text("missing.h5\n"), "missing.h5, which is not found"),
    (lambda p: (p / "list.txt").write_text("\n"), "names no HDF5 file"),
    (lambda p: ((p / "x.h5").write_bytes(b"not hdf5"), (p / "list.txt").write_text("x.h5")),
     "is not an HDF5 file"),
    (lambda p: (write_h5(p / "x.h5", data=np.ones((2, 3))),
                (p / "list.txt").write_text("x.h5")), "has no dataset 'label'"),
    (lambda p: (write_h5(p / "x.h5", data=np.ones((2, 3)), label=np.ones(3)),
                (p / "list.txt").write_text("x.h5")), "the same number in each"),
    (lambda p: (write_h5(p / "x.h5", data=np.ones((2, 3)), label=np.ones(2)),
                write_h5(p / "y.h5", data=np.ones((2, 4)), label=np.ones(2)),
                (p / "list.txt").write_text("x.h5 y.h5")), "the first file's"),
])
def test_broken_lists_and_files_are_one_line(tmp_path: Path, setup: Any, message: str) -> None:
    setup(tmp_path)
    with pytest.raises(DataError, match=message):
        source = hdf5_source(net(tmp_path))
        first_batch(source, 4)


def test_the_model_reference_takes_the_shape_of_the_first_row(tmp_path: Path) -> None:
    files(tmp_path)
    model = f"caffe:{net(tmp_path)}"
    assert training_database(model) is not None
    assert with_database_shape(model) == f"{model}#2,3,2"
    (tmp_path / "list.txt").unlink()
    assert training_database(model) is None


def test_to_parquet_converts_the_hdf5_layer_of_a_prototxt(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    files(tmp_path)
    assert main(["caffe", "to-parquet", str(net(tmp_path)), str(tmp_path / "o.parquet"),
                 "--limit", "4"]) == 0
    assert "4 records of shape 2,3,2 from 2 HDF5 files" in capsys.readouterr().out


@pytest.mark.spark
@pytest.mark.slow
def test_cli_trains_on_the_files_the_hdf5_layer_names(spark: Any, tmp_path: Path) -> None:
    files(tmp_path, rows=(6, 10))
    assert main(["train", "--model", f"caffe:{net(tmp_path, batch=4)}", "--num-workers", "1",
                 "--tau", "2", "--rounds", "1", "--eval-every", "0", "--checkpoint-every", "0",
                 "--output", str(tmp_path / "run"), "--no-progress"]) == 0
    run = json.loads((tmp_path / "run" / "run.json").read_text())["data"]
    assert run["kind"] == "caffe-db" and run["columns"]["backend"] == "HDF5"
    assert run["columns"]["input_shape"] == [2, 3, 2]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"].endswith("#2,3,2") and config["engine"]["batch_size"] == 4
