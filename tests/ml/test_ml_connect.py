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


@pytest.mark.slow
def test_a_saved_model_of_a_user_network_scores_in_a_fresh_connect_client(
        connect_server: Any, tmp_path: Path) -> None:
    from sparknet_testing.connect_client import USER_FACTORY, USER_MODULE, USER_MODULE_SOURCE

    data = write_parquet(tmp_path / "fashion.parquet")
    user_code = tmp_path / "user_code"
    user_code.mkdir()
    (user_code / f"{USER_MODULE}.py").write_text(USER_MODULE_SOURCE)
    out = tmp_path / "connect"
    run_client("fit-user", connect_server.url, out, str(data), str(user_code))
    run_client("score-user", connect_server.url, out, str(data), str(user_code))
    fitted, scored = np.load(out / "fit-user.npz"), np.load(out / "score-user.npz")
    for name in ("scored", "piped"):
        np.testing.assert_array_equal(scored[name], fitted[name], err_msg=name)
    refusal = (out / "refusal.txt").read_text()
    assert "\n" not in refusal and f"trust=['{USER_FACTORY}']" in refusal
