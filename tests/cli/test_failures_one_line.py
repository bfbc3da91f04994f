"""The campaign's failures that escaped the one-line contract, each now one line and exit 2,
found before the JVM starts where no job is needed (no ``spark.log`` appears)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sparknet.cli.main import main

FASHION = Path("/usr/share/datasets/fashion-mnist")


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    code = main(["train", "--no-progress", *args])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("sparknet: error: "), lines
    return lines[0]


@pytest.fixture()
def output(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture()
def fashion_dir() -> Path:
    if not (FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST not installed in {FASHION}")
    return FASHION


def test_seed_out_of_range(capsys, output: Path) -> None:
    line = refused(capsys, "--seed", str(2**64), "--output", str(output))
    assert "seed=18446744073709551616 is invalid: use an integer seed in [0, 2**63)" in line


@pytest.mark.parametrize(("flag", "value", "expected"), [
    ("--num-workers", "100000", "each of the 100,000 workers would get 0, fewer than one batch"),
    ("--batch-size", str(10**8), "fewer than one batch of 100,000,000"),
])
def test_absurd_workers_or_batch_before_spark(capsys, output: Path, fashion_dir: Path,
                                              flag: str, value: str, expected: str) -> None:
    line = refused(capsys, flag, value, "--data-dir", str(fashion_dir), "--output", str(output))
    assert "Fashion-MNIST in" in line and expected in line
    assert "lower --num-workers or --batch-size" in line
    assert not (output / "spark.log").exists()


def test_corrupt_gz_before_spark(capsys, output: Path, fashion_dir: Path,
                                 tmp_path: Path) -> None:
    data = tmp_path / "fashion"
    shutil.copytree(fashion_dir, data)
    victim = data / "train-images-idx3-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    line = refused(capsys, "--data-dir", str(data), "--output", str(output))
    assert f"{victim} is not a readable gzip file" in line
    assert not (output / "spark.log").exists()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_replay_tau_of_a_malformed_file(capsys, output: Path, fashion_dir: Path,
                                        tmp_path: Path, text: str) -> None:
    earlier = tmp_path / "earlier"
    (earlier / "final").mkdir(parents=True)
    (earlier / "final" / "state.json").write_text(text)
    line = refused(capsys, "--replay-tau", str(earlier), "--data-dir", str(fashion_dir),
                   "--output", str(output))
    assert f"--replay-tau: {earlier / 'final' / 'state.json'}" in line


def _parquet(path: Path, rows: int, *, extra: bool = False) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    columns = {"features": pa.array(list(rng.random((rows, 4)).astype(np.float32)),
                                    pa.list_(pa.float32())),
               "label": pa.array(rng.integers(0, 2, rows).astype(np.float64))}
    if extra:
        columns["weight"] = pa.array(np.ones(rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


@pytest.mark.parametrize("damage", ["truncated", "garbage", "mixed schema"])
def test_a_bad_parquet_file_is_named_before_spark(capsys, output: Path, tmp_path: Path,
                                                  damage: str) -> None:
    folder = tmp_path / "table"
    _parquet(folder / "part-0.parquet", 200)
    victim = folder / "part-1.parquet"
    if damage == "mixed schema":
        _parquet(victim, 200, extra=True)
    else:
        good = _parquet(tmp_path / "good.parquet", 200).read_bytes()
        victim.write_bytes(good[: len(good) // 2] if damage == "truncated" else b"x" * 999)
    line = refused(capsys, "--parquet", str(folder), "--output", str(output))
    assert str(victim) in line, line
    expected = "other columns than" if damage == "mixed schema" else \
        "is not a readable Parquet file"
    assert expected in line
    assert not (output / "spark.log").exists()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that only declares its size (no pixels): opening it is enough to see a bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + \
            struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + \
        chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_an_undecodable_image() -> None:
    from sparknet.data.images import UndecodableImage, decode_image

    with pytest.raises(UndecodableImage, match="decompression bomb"):
        decode_image(_png_header(20000, 20000), (1, 28, 28))


def _image_folder(root: Path) -> Path:
    from PIL import Image

    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(40):
            Image.fromarray(np.full((28, 28), 6 * i, np.uint8)).save(root / label / f"{i}.png")
    return root


def test_an_empty_image_file_is_named_or_skipped(capsys, output: Path,
                                                  tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "images")
    (root / "b" / "empty.png").write_bytes(b"")
    line = refused(capsys, "--images", str(root), "--model", "lenet#2", "--batch-size", "8",
                   "--output", str(output))
    assert f"1 image files are empty (0 bytes), e.g. {root / 'b' / 'empty.png'}" in line
    assert "--invalid-images skip" in line and not (output / "spark.log").exists()


@pytest.mark.spark
def test_a_hidden_folder_in_an_image_root_is_not_read(spark, tmp_path: Path) -> None:
    """A hidden folder beside the class folders became rows with null labels."""
    from sparknet.data.images import image_folder_frame

    root = _image_folder(tmp_path / "images")
    (root / ".cache").mkdir()
    shutil.copy(root / "a" / "0.png", root / ".cache" / "thumb.png")
    frame, classes = image_folder_frame(spark, root)
    assert classes == ["a", "b"]
    assert frame.count() == 80 and frame.filter("label IS NULL").count() == 0


@pytest.mark.spark
@pytest.mark.slow
def test_a_decompression_bomb_in_an_image_folder_is_named_or_skipped(spark,
                                                                     tmp_path: Path) -> None:
    """A 20000x20000 PNG escaped as DecompressionBombError, also under skip."""
    from sparknet.data.shards import InputSpec
    from sparknet.data.sources import image_folder_data
    from sparknet.errors import DataError

    root = _image_folder(tmp_path / "images")
    (root / "b" / "bomb.png").write_bytes(_png_header(20000, 20000))
    spec = InputSpec(shape=(1, 28, 28), num_classes=2, scale=1 / 255, class_names=("a", "b"))
    with pytest.raises(DataError, match="not decodable PNG/JPEG images .*bomb.png"):
        image_folder_data(spark, root, val=None, spec=spec, num_workers=2, batch_size=8)
    data, _, summary = image_folder_data(spark, root, val=None, spec=spec, num_workers=2,
                                         batch_size=8, invalid_images="skip")
    data.release()
    assert summary.skipped_images == 1 and "bomb.png" in str(summary.skipped_example)


def test_disk_full_while_checkpointing_is_one_line_and_leaves_no_temp_folder(
        tmp_path: Path) -> None:
    """A file size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes writes fail as a full disk
    does: the checkpoint write is refused in one line, its temporary folder removed, and
    LATEST still names the previous checkpoint."""
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import resource, signal
        from pathlib import Path
        import numpy as np
        from sparknet import weights_dir
        from sparknet.errors import DataError

        run = Path({str(tmp_path)!r})
        small = weights_dir.WeightsDir({{"w": np.zeros(10, np.float32)}}, {{}}, {{"round": 1}})
        weights_dir.save_checkpoint(run, small, round_index=1)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))
        big = weights_dir.WeightsDir({{"w": np.zeros(1 << 20, np.float32)}}, {{}}, {{"round": 2}})
        try:
            weights_dir.save_checkpoint(run, big, round_index=2)
        except DataError as exc:
            print("refused:", exc)
    """)], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    line = child.stdout.strip()
    assert line.startswith("refused: cannot write ") and "round-000002" in line, line
    assert "File too large" in line and "\n" not in line
    leftovers = [p.name for p in (tmp_path / "checkpoints").iterdir()]
    assert sorted(leftovers) == ["LATEST", "round-000001"], leftovers
    assert (tmp_path / "checkpoints" / "LATEST").read_text().strip() == "round-000001"


@pytest.mark.parametrize("text", ["root:x:0:0:root:/root:/bin/bash\n",
                                  "secret_token_42: 1\n", "layer { name: 'secret_token_42' "])
def test_a_caffe_reference_to_another_file_echoes_none_of_it(capsys, output: Path,
                                                             tmp_path: Path, text: str) -> None:
    """``caffe:`` may name any file; its error says where and what kind, never what is there."""
    victim = tmp_path / "private.txt"
    victim.write_text(text)
    line = refused(capsys, "--model", f"caffe:{victim}", "--output", str(output))
    assert f"{victim}:1:" in line and "cannot parse Caffe text format" in line, line
    assert "secret_token" not in line and "root" not in line.replace(str(tmp_path), "")


def test_disk_full_while_logging_metrics_is_one_line(tmp_path: Path) -> None:
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import resource, signal
        from pathlib import Path
        from sparknet.errors import DataError
        from sparknet.metrics import MetricsLog

        log = MetricsLog(Path({str(tmp_path / "metrics.jsonl")!r}))
        log.append({{"round": 1}})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20, 20))
        try:
            log.append({{"round": 2, "pad": "x" * 100}})
        except DataError as exc:
            print("refused:", exc)
    """)], capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith("refused: cannot append round 2 to "), child.stdout
    assert "File too large" in child.stdout and "--resume" in child.stdout


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs root, as in CI), unmounted after the test."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.spark
def test_a_full_spark_local_dir_is_one_line(fashion_dir: Path, tiny_disk: Path,
                                            tmp_path: Path) -> None:
    """Spark's local directory on a 2 MiB file system: the driver's broadcast of 4,000 images
    (3 MiB) fails there; PySpark's own traceback of the failed write stays off the terminal."""
    done = subprocess.run(
        [sys.executable, "-m", "sparknet.cli.main", "train", "--master", "local[2,4]",
         "--num-workers", "2", "--tau", "5", "--rounds", "2", "--train-limit", "4000",
         "--test-limit", "200", "--data-dir", str(fashion_dir), "--no-progress",
         "--output", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "SPARK_LOCAL_DIRS": str(tiny_disk)})
    lines = [line for line in done.stderr.splitlines()
             if line.strip() and not line.startswith("WARNING: Using incubator modules")]
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert lines[0] == (f"sparknet: error: Spark's local directory {tiny_disk} is full (No space "
                        "left on device) while writing a broadcast of the data or the weights: "
                        "free space there, or point spark.local.dir (SPARK_LOCAL_DIRS) at a "
                        "larger disk"), lines[0]
