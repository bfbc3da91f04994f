"""Elastic clusters: workers that join or leave mid-run, and a straggler Spark speculates away.

Each run is ``sparknet train`` as its own driver process with dynamic allocation (shuffle
tracking) and graceful decommissioning on, against a standalone cluster whose workers are
each a loopback host of their own (127.0.0.1, 127.0.0.2: speculation never places a task's
copy on a host already running it). Spark's event log, read after each run, says where every
task attempt ran; the final weights must equal an undisturbed run's, bit for bit.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from safetensors.numpy import load_file

from sparknet_testing.chaos import (
    Driver,
    Straggler,
    arm_tripwire,
    clear_faults,
    release_tripwire,
    tripped_pid,
    wait_for,
)
from sparknet_testing.elastic import (
    ELASTIC_SETTINGS,
    SPECULATION_SETTINGS,
    WORKER_DECOMMISSION_OPTS,
    WORKER_HOSTS,
    ElasticRun,
    EventLog,
    rounds_logged,
    submit_args,
)
from sparknet_testing.standalone import StandaloneCluster, start_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


# spark.dynamicAllocation.minExecutors is left to sparknet, which keeps the K = 2 executors a
# round needs requested: two workers have an executor each before round 0, and a worker that
# joins gets one.
# The added worker's run: rounds long enough (tau = 1000, about a second of steps per task on
# the 2-core VM) that a worker started after round 1 (its JVM, then its executor's: about
# 11 s on that VM) still finds most of the 20 rounds to run.
ADDED_RUN = {"tau": 1000, "rounds": 20}


def elastic_cluster(root: Path, workers: int) -> StandaloneCluster:
    return start_cluster(root, num_workers=workers, cores_per_worker=1,
                         worker_hosts=WORKER_HOSTS, daemon_opts=WORKER_DECOMMISSION_OPTS)


def start_driver(run: ElasticRun, run_dir: Path, settings: dict[str, str]) -> Driver:
    return Driver.start(run.command(run_dir), log=run_dir.with_suffix(".log"),
                        env=submit_args(settings, run_dir.with_suffix(".events")))


def finish(driver: Driver, run_dir: Path) -> EventLog:
    code = driver.wait(timeout=400)
    assert code == 0, driver.output()[-3000:]
    return EventLog.read(run_dir.with_suffix(".events"))


def weights(run_dir: Path) -> dict[str, np.ndarray]:
    return load_file(str(run_dir / "final" / "model.safetensors"))


def assert_same_weights(run_dir: Path, reference: dict[str, np.ndarray]) -> None:
    got = weights(run_dir)
    assert sorted(got) == sorted(reference)
    for name, want in reference.items():
        assert np.array_equal(got[name], want), f"{name} differs from the undisturbed run"


def runs_python(procs: list[psutil.Process]) -> bool:
    for proc in procs:
        with contextlib.suppress(psutil.Error):  # it may end while we look
            if "python" in proc.name():
                return True
    return False


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    """Two one-core workers on two loopback hosts."""
    cluster = elastic_cluster(tmp_path_factory.mktemp("elastic-pair"), 2)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def undisturbed(pair: StandaloneCluster, fashion_dir: Path,
                tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    run_dir = tmp_path_factory.mktemp("elastic-undisturbed") / "run"
    clear_faults(pair.fault_dir)
    log = finish(start_driver(ElasticRun(cluster=pair, fashion_dir=fashion_dir), run_dir,
                              ELASTIC_SETTINGS), run_dir)
    assert {task.host for task in log.succeeded()} == set(WORKER_HOSTS[:2])
    return weights(run_dir)


@pytest.fixture(scope="module")
def undisturbed_long(pair: StandaloneCluster, fashion_dir: Path,
                     tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """The added worker's run on two workers throughout."""
    run_dir = tmp_path_factory.mktemp("elastic-undisturbed-long") / "run"
    clear_faults(pair.fault_dir)
    finish(start_driver(ElasticRun(cluster=pair, fashion_dir=fashion_dir, **ADDED_RUN),
                        run_dir, ELASTIC_SETTINGS), run_dir)
    return weights(run_dir)


def test_a_worker_added_mid_run_is_used_and_changes_no_weight(
        fashion_dir: Path, undisturbed_long: dict[str, np.ndarray], tmp_path: Path) -> None:
    """One worker, so its executor runs both tasks of a round in turn; once round 1 is logged
    a second worker joins. Nothing is held: sparknet keeps the two executors a round needs
    requested, so the master gives the new worker an executor and the following rounds run
    tasks there, in an ordinary 20-round run. (With minExecutors=1 no executor was ever asked
    for: a round's waiting task waits less than Spark's 1 s backlog timeout.)"""
    with elastic_cluster(tmp_path / "cluster", 1) as cluster:
        run = ElasticRun(cluster=cluster, fashion_dir=fashion_dir, **ADDED_RUN)
        driver = start_driver(run, tmp_path / "run", ELASTIC_SETTINGS)
        try:
            wait_for(lambda: rounds_logged(tmp_path / "run") >= 1, timeout=300,
                     what="the first round")
            added_at = time.time()
            cluster.add_worker(host=WORKER_HOSTS[1], daemon_opts=WORKER_DECOMMISSION_OPTS)
            log = finish(driver, tmp_path / "run")
        finally:
            driver.kill()
    assert log.spark_properties.get("spark.dynamicAllocation.minExecutors") == "2"
    on_added = [task for task in log.succeeded() if task.host == WORKER_HOSTS[1]]
    assert on_added, "no task succeeded on the added worker"
    jobs = {task.stage for task in on_added}
    print(f"added worker: first task {min(t.launched_ms for t in on_added) / 1000 - added_at:.1f}"
          f" s after it started; tasks in {len(jobs)} jobs")
    assert len(jobs) >= 2, "the added worker ran only one job"
    assert rounds_logged(tmp_path / "run") == run.rounds
    assert_same_weights(tmp_path / "run", undisturbed_long)


def test_a_worker_decommissioned_mid_run_costs_no_weight(
        fashion_dir: Path, undisturbed: dict[str, np.ndarray], tmp_path: Path) -> None:
    """A task is held inside a round; its worker is decommissioned (SIGPWR) meanwhile, the
    task is let go and ends there, and once the driver hears of it the other worker runs
    every later job."""
    with elastic_cluster(tmp_path / "cluster", 2) as cluster:
        run = ElasticRun(cluster=cluster, fashion_dir=fashion_dir)
        arm_tripwire(cluster.fault_dir, after_forwards=2 * run.tau + 3, hold=True)
        driver = start_driver(run, tmp_path / "run", ELASTIC_SETTINGS)
        try:
            leaving = cluster.worker_index_of(psutil.Process(tripped_pid(cluster.fault_dir)))
            cluster.decommission_worker(leaving)
            wait_for(lambda: cluster.worker_state(leaving) == "DECOMMISSIONED", timeout=60,
                     what=f"the master to list worker {leaving} as decommissioned")
            release_tripwire(cluster.fault_dir)
            log = finish(driver, tmp_path / "run")
        finally:
            driver.kill()
        # The executor was told to leave: it tried to migrate its cached blocks (there are
        # none: the shards are broadcasts, fetched again from the driver by whoever needs them).
        told = [path.read_text() for path in
                (cluster.root / f"worker-{leaving}" / "work").glob("app-*/*/stderr")]
    assert any("BlockManagerDecommissioner" in text for text in told), told
    done = log.succeeded()
    last_there = max(task.stage for task in done if task.host == WORKER_HOSTS[leaving])
    later = [task for task in done if task.stage > last_there]
    assert later, "no job ran after the decommissioned worker's last task"
    assert {task.host for task in later} == {WORKER_HOSTS[1 - leaving]}
    assert rounds_logged(tmp_path / "run") == run.rounds
    assert_same_weights(tmp_path / "run", undisturbed)


def test_speculation_replaces_a_straggler_and_changes_no_weight(
        pair: StandaloneCluster, fashion_dir: Path, undisturbed: dict[str, np.ndarray],
        tmp_path: Path) -> None:
    """Worker 1's executor and Python workers get a tenth of a core (SIGSTOP/SIGCONT duty
    cycle) from round 1 on; Spark runs copies of its tasks on worker 0 and keeps whichever
    attempt ends first: the weights are those of the undisturbed run."""
    clear_faults(pair.fault_dir)
    run = ElasticRun(cluster=pair, fashion_dir=fashion_dir)
    driver = start_driver(run, tmp_path / "run", {**ELASTIC_SETTINGS, **SPECULATION_SETTINGS})
    straggler = Straggler(lambda: pair.launched_by_worker(1), share=0.1)
    try:
        wait_for(lambda: rounds_logged(tmp_path / "run") >= 1 and
                 runs_python(pair.launched_by_worker(1)), timeout=240,
                 what="the first round, with a task on worker 1")
        straggler.start()
        log = finish(driver, tmp_path / "run")
    finally:
        straggler.stop()
        driver.kill()
    copies = [task for task in log.succeeded()
              if task.speculative and task.host == WORKER_HOSTS[0]]
    assert copies, "no copy of the straggler's task succeeded on the other worker"
    assert_same_weights(tmp_path / "run", undisturbed)
