"""Lost Python workers and lost executor JVMs mid-round: training completes bit-identically.

Each run is ``sparknet train`` as its own driver process against the standalone cluster. The
tripwire network makes the first Python worker to reach its N-th forward pass stop inside a
round; the test then SIGKILLs that worker (or its whole executor JVM). Spark retries the
task and the final weights must equal those of an undisturbed run with the same seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sparknet_testing.chaos import Killer, arm_tripwire
from sparknet_testing.standalone import EXECUTOR_MAIN, StandaloneCluster

pytestmark = pytest.mark.cluster

@pytest.mark.parametrize("target", [pytest.param("python", marks=pytest.mark.slow), "executor"])
def test_kill_mid_round_gives_identical_weights(target: str, cluster: StandaloneCluster,
                                                small_run: Any, faults: Path,
                                                assert_matches_reference: Any,
                                                tmp_path: Path) -> None:
    apps_before = {app.name for work in cluster.work_dirs() for app in work.glob("app-*")}
    # Each task runs TAU forward passes: the kill lands at step 3 of a task near round 4.
    arm_tripwire(faults, after_forwards=4 * small_run.tau + 3)
    killer = Killer(faults, target).start()  # type: ignore[arg-type]

    small_run.train(tmp_path / "run")

    killer.join()
    assert killer.killed, "the tripwire never fired: nothing was killed"
    process = "sparknet.engine.quiet_daemon" if target == "python" else EXECUTOR_MAIN
    assert process in killer.killed[0]
    assert_matches_reference(tmp_path / "run")
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == small_run.rounds
    if target == "executor":
        # The worker whose executor died launched a replacement for the same application.
        apps = [app for work in cluster.work_dirs() for app in work.glob("app-*")
                if app.name not in apps_before]
        executors = sum(1 for app in apps for _ in app.iterdir())
        assert executors == 3, f"expected 2 executors + 1 replacement, found {executors}"


@pytest.mark.slow
def test_an_executor_lost_mid_round_of_overlapped_rounds_changes_no_weight(
        cluster: StandaloneCluster, small_run: Any, faults: Path, tmp_path: Path) -> None:
    """Overlapped rounds on two executors, one of them killed inside a round: its carries go
    with it, the tasks that needed them run again with the driver's copy, and the final
    weights equal an undisturbed overlapped run's."""
    import numpy as np
    from safetensors.numpy import load_file

    overlapped = ("--overlap", "eager", "--outer", "average", "--momentum-policy", "reset")
    small_run.train(tmp_path / "undisturbed", *overlapped)
    arm_tripwire(faults, after_forwards=4 * small_run.tau + 3)
    killer = Killer(faults, "executor").start()
    small_run.train(tmp_path / "killed", *overlapped)
    killer.join()
    assert killer.killed, "the tripwire never fired: nothing was killed"
    want = load_file(str(tmp_path / "undisturbed" / "final" / "model.safetensors"))
    got = load_file(str(tmp_path / "killed" / "final" / "model.safetensors"))
    assert sorted(got) == sorted(want)
    for name in want:
        assert np.array_equal(got[name], want[name]), name
