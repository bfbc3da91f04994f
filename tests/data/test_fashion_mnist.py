import gzip
import shutil

import numpy as np
import pytest

from sparknet.data import fashion_mnist
from sparknet.errors import DataError


def test_reads_the_real_files(fashion):
    train, test = fashion["train"], fashion["test"]
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == np.uint8
    assert test.images.shape == (10000, 1, 28, 28)
    assert np.bincount(train.labels).tolist() == [6000] * 10


@pytest.fixture
def copy_dir(tmp_path, fashion):
    for names in fashion_mnist.FILES.values():
        for name in names:
            shutil.copy(fashion_mnist.DEFAULT_DIR / name, tmp_path / name)
    return tmp_path


def test_missing_file_says_how_to_get_it(copy_dir):
    (copy_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing.*apt-get install dataset-fashion-mnist"):
        fashion_mnist.load_split("test", copy_dir)
    with pytest.raises(DataError, match="t10k-labels"):
        fashion_mnist.check_available(copy_dir)


def test_truncated_file_is_reported(copy_dir):
    path = copy_dir / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match="truncated or corrupt"):
        fashion_mnist.load_split("test", copy_dir)


def test_not_gzip_and_wrong_magic_are_reported(copy_dir):
    (copy_dir / "t10k-images-idx3-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable gzip"):
        fashion_mnist.load_split("test", copy_dir)
    images = copy_dir / "train-images-idx3-ubyte.gz"
    shutil.copy(copy_dir / "train-labels-idx1-ubyte.gz", images)
    with pytest.raises(DataError, match="IDX magic 2049, expected 2051"):
        fashion_mnist.load_split("train", copy_dir)
