"""The pipeline stage through a real Spark Connect server, against a classic session.

The client (a child process) fits, transforms, saves and loads a model and a Pipeline with
``StringIndexer``; the same code on the classic session must give the same weights bit for
bit and the same probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet_testing.connect_client import run_client, run_task, write_parquet

pytestmark = pytest.mark.connect


@pytest.mark.slow
def test_fit_transform_save_load_and_pipeline_on_connect(spark: Any, connect_server: Any,
                                                         tmp_path: Path) -> None:
    data = write_parquet(tmp_path / "fashion.parquet")
    run_client("ml", connect_server.url, tmp_path / "connect", str(data))
    run_task("ml", spark, tmp_path / "classic", data)
    remote = np.load(tmp_path / "connect" / "ml.npz")
    local = np.load(tmp_path / "classic" / "ml.npz")
    np.testing.assert_array_equal(remote["weights"], local["weights"])
    np.testing.assert_array_equal(remote["pipeline"], local["pipeline"])
    np.testing.assert_array_equal(remote["weights"], remote["pipeline"])  # same labels, seed
    for name in ("scored", "reloaded", "piped"):
        np.testing.assert_allclose(remote[name], local[name], rtol=0, atol=1e-7, err_msg=name)
    np.testing.assert_array_equal(remote["scored"], remote["reloaded"])
    assert (tmp_path / "connect" / "model" / "weights" / "model.safetensors").is_file()
