"""Real Caffe's convert_imageset writes LMDB/LevelDB databases (raw and encoded, colour and
gray, resized); Caffe's Data layer reads their first batch; sparknet reads the same
databases and must give the same batch (after the same transform_param). One of them
then trains through ``sparknet train --model caffe:NET.prototxt``. Also: every field of
Caffe's own caffe_pb2 is declared in sparknet's schema with the same number and type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet.caffe import schema
from sparknet.caffe.database import database_source, first_batch
from sparknet.caffe.prototxt import filter_phase, read_net
from sparknet.caffe.transform import TransformConfig, transform_batch
from tests.caffe.conftest import assert_matches_caffe

from .oracle import run_request

pytestmark = pytest.mark.caffe_oracle
BATCH = 5

# (name, convert_imageset options, transform_param, phase, image format)
CASES = [
    ("raw_lmdb_colour", ["--backend=lmdb"], "scale: 0.5 mean_value: 10 mean_value: 20 "
     "mean_value: 30", "TEST", "png"),
    ("raw_leveldb_gray", ["--backend=leveldb", "--gray"], "crop_size: 6", "TEST", "png"),
    ("raw_lmdb_resized", ["--backend=lmdb", "--resize_height=9", "--resize_width=7"],
     "scale: 0.00390625", "TEST", "png"),
    ("encoded_png_lmdb", ["--backend=lmdb", "--encoded"], "", "TEST", "png"),
    ("encoded_png_force_gray", ["--backend=lmdb", "--encoded"], "force_gray: true", "TEST",
     "png"),
    ("encoded_jpeg_lmdb", ["--backend=lmdb", "--encoded"], "", "TEST", "jpg"),
    ("raw_jpeg_lmdb", ["--backend=lmdb"], "", "TEST", "jpg"),
]


def _images(folder: Path, fmt: str, rng: np.random.Generator) -> None:
    from PIL import Image

    folder.mkdir(exist_ok=True)
    lines = []
    for i in range(BATCH + 2):
        # Smooth content with noise: JPEG's rounding paths are exercised, not just flat areas.
        y, x = np.mgrid[0:12, 0:10]
        base = np.stack([(x * 20 + i * 7) % 256, (y * 15 + i * 11) % 256,
                         (x * y + i * 3) % 256], axis=-1)
        noisy = np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
        name = f"img{i}.{fmt}"
        Image.fromarray(noisy).save(folder / name, quality=90) if fmt == "jpg" else \
            Image.fromarray(noisy).save(folder / name)
        lines.append(f"{name} {i % 4}")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")


def _prototxt(db: str, backend: str, transform: str) -> str:
    return ('layer { name: "data" type: "Data" top: "data" top: "label"\n'
            f'  data_param {{ source: "{db}" batch_size: {BATCH} backend: {backend} }}\n'
            f'  transform_param {{ {transform} }} }}\n')


@pytest.fixture(scope="module")
def caffe_databases(oracle_ready: None, tmp_path_factory: pytest.TempPathFactory
                    ) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("imageset")
    rng = np.random.default_rng(11)
    entries: list[dict[str, object]] = []
    for fmt in ("png", "jpg"):
        _images(folder / fmt, fmt, rng)
    for name, options, transform, phase, fmt in CASES:
        backend = "LEVELDB" if "--backend=leveldb" in options else "LMDB"
        (folder / f"{name}.prototxt").write_text(_prototxt(f"{name}_db", backend, transform))
        entries.append({"name": name, "kind": "imageset", "list": f"{fmt}/list.txt",
                        "root": f"{fmt}/", "options": options, "db": f"{name}_db",
                        "prototxt": f"{name}.prototxt", "phase": phase})
    return folder, run_request(folder, entries)


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_first_batch_equals_caffes_data_layer(case: str, caffe_databases: tuple[Path, Any]
                                              ) -> None:
    folder, results = caffe_databases
    caffe = results[case]
    assert not isinstance(caffe, str), caffe
    spec = next(c for c in CASES if c[0] == case)
    # Our reading of the database Caffe wrote, through the same prototxt.
    net = folder / "ours" / f"{case}.prototxt"
    net.parent.mkdir(exist_ok=True)
    backend = "LEVELDB" if "--backend=leveldb" in spec[1] else "LMDB"
    net.write_text(_prototxt(str(folder / "out" / f"{case}_db"), backend, spec[2]))
    source = database_source(net, phase=spec[3])
    images, labels = first_batch(source, BATCH)
    layer = filter_phase(read_net(net), spec[3]).layer[0]
    config = TransformConfig.from_proto(layer.transform_param, folder=net.parent)
    ours = transform_batch(images, config, train=spec[3] == "TRAIN")
    assert_matches_caffe(ours, caffe["blob:data"], f"{case} data")
    np.testing.assert_array_equal(labels.astype(np.float32), caffe["blob:label"])


def test_a_caffe_made_lmdb_trains_through_the_cli(caffe_databases: tuple[Path, Any],
                                                  tmp_path: Path) -> None:
    from sparknet.cli.main import main

    folder, _ = caffe_databases
    net = tmp_path / "net.prototxt"
    net.write_text(_prototxt(str(folder / "out" / "raw_lmdb_resized_db"), "LMDB",
                             "scale: 0.00390625") +
                   'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
                   'inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }\n'
                   'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" '
                   'top: "loss" }\n')
    assert main(["train", "--model", f"caffe:{net}", "--num-workers", "1", "--tau", "1",
                 "--rounds", "1", "--eval-every", "0", "--checkpoint-every", "0",
                 "--output", str(tmp_path / "run"), "--no-progress"]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"].endswith("#3,9,7") and config["engine"]["batch_size"] == BATCH
    assert (tmp_path / "run" / "caffe_db.parquet").is_file()




def test_schema_declares_every_field_of_caffes_proto(oracle_ready: None, tmp_path: Path
                                                     ) -> None:
    caffe = run_request(tmp_path, [{"name": "schema", "kind": "schema"}])["schema"]
    assert not isinstance(caffe, str), caffe
    problems = []
    for entry in caffe["fields"]:
        qualified, _, rest = str(entry).partition("=")
        message, field = qualified.split(".")
        number, kind, label = rest.split(":")
        try:
            ours = schema.message_class(message).DESCRIPTOR.fields_by_name[field]
        except KeyError:
            problems.append(f"{qualified} missing")
            continue
        repeated = label == "repeated"
        if ours.number != int(number) or ours.type != int(kind) or \
                ours.is_repeated != repeated:
            problems.append(f"{qualified}: Caffe {rest}, ours {ours.number}:{ours.type}")
    assert len(caffe["fields"]) > 400  # 423 in Caffe 1.0
    assert not problems, problems
