"""Network faults beyond process kills: workers as separate hosts on virtual links.

Each worker of a standalone cluster runs in its own network namespace, joined to this host by a
veth link (``sparknet.testing.netns``). Cutting a worker's link mid-round must end, once Spark
has noticed the lost executor and rerun its task elsewhere, in the same weights as an
undisturbed run; added latency (netem) must not change the weights at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from sparknet.testing.chaos import Driver, arm_tripwire, clear_faults, train_command, wait_for
from sparknet.testing.faults import TRIPPED
from sparknet.testing.netns import VirtualHosts, netem_unavailable, unavailable
from sparknet.testing.standalone import StandaloneCluster, start_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TAU, ROUNDS = 10, 6
# Spark notices a silent executor after spark.network.timeout; short here so the test is too.
DRIVER_CONF = ("--conf spark.network.timeout=12s --conf spark.executor.heartbeatInterval=2s "
               "pyspark-shell")


@pytest.fixture(scope="module")
def hosts() -> Iterator[VirtualHosts]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(f"workers as separate hosts need network namespaces: {reason}")
    made = VirtualHosts(count=3).create()
    try:
        yield made
    finally:
        made.destroy()


@pytest.fixture(scope="module")
def net_cluster(hosts: VirtualHosts,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("netns-cluster"), num_workers=3,
                            hosts=hosts, master_opts="-Dspark.worker.timeout=10")
    try:
        yield cluster
    finally:
        cluster.stop()


def _train(cluster: StandaloneCluster, hosts: VirtualHosts, fashion_dir: Path,
           run_dir: Path) -> Driver:
    command = train_command(
        cluster.master_url, "--model", "sparknet.testing.faults:tripwire_net",
        "--num-workers", "2", "--tau", str(TAU), "--batch-size", "32", "--rounds", str(ROUNDS),
        "--lr", "0.05", "--eval-every", "0", "--checkpoint-every", "2", "--seed", "3",
        "--train-limit", "4000", "--test-limit", "1000", "--data-dir", str(fashion_dir),
        "--output", str(run_dir))
    return Driver.start(command, log=run_dir.with_suffix(".log"),
                        env={"SPARK_LOCAL_IP": hosts.host_ip, "PYSPARK_SUBMIT_ARGS": DRIVER_CONF})


def _finish(driver: Driver, timeout: float = 400) -> str:
    try:
        code = driver.wait(timeout)
    finally:
        driver.kill()
    assert code == 0, driver.output()[-3000:]
    return driver.output()


def _weights(run_dir: Path) -> dict[str, np.ndarray]:
    return load_file(str(run_dir / "final" / "model.safetensors"))


@pytest.fixture(scope="module")
def reference(net_cluster: StandaloneCluster, hosts: VirtualHosts, fashion_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    clear_faults(net_cluster.fault_dir)
    run_dir = tmp_path_factory.mktemp("netns-reference") / "run"
    _finish(_train(net_cluster, hosts, fashion_dir, run_dir))
    return _weights(run_dir)


def test_a_worker_cut_off_mid_round_is_replaced_bit_identically(
        net_cluster: StandaloneCluster, hosts: VirtualHosts, fashion_dir: Path,
        reference: dict[str, np.ndarray], tmp_path: Path) -> None:
    faults = net_cluster.fault_dir
    clear_faults(faults)
    arm_tripwire(faults, after_forwards=3 * TAU + 4)  # a task of round 3 stops mid-way
    driver = _train(net_cluster, hosts, fashion_dir, tmp_path / "run")
    try:
        wait_for(lambda: (faults / TRIPPED).is_file() and (faults / TRIPPED).read_text(),
                 timeout=240, what="the tripwire")
        victim = hosts.namespace_of(int((faults / TRIPPED).read_text()))
        assert victim is not None, "the tripped worker runs in no worker namespace"
        hosts.cut(victim)
        cut_at = time.monotonic()
        _finish(driver)
        recovered_in = time.monotonic() - cut_at
    finally:
        driver.kill()
        clear_faults(faults)
    got = _weights(tmp_path / "run")
    assert all(np.array_equal(got[name], want) for name, want in reference.items())
    # Detection (spark.network.timeout = 12 s) plus the rest of the run, on 2 busy cores.
    assert recovered_in < 180, f"took {recovered_in:.0f} s after the cut"


@pytest.mark.parametrize("delay_ms", [50, 500])
def test_added_latency_changes_no_weights(net_cluster: StandaloneCluster, hosts: VirtualHosts,
                                          fashion_dir: Path, reference: dict[str, np.ndarray],
                                          tmp_path: Path, delay_ms: int) -> None:
    reason = netem_unavailable(hosts)
    if reason is not None:
        pytest.skip(f"added latency needs the kernel's netem queueing discipline: {reason}")
    hosts.delay(delay_ms)
    try:
        started = time.monotonic()
        _finish(_train(net_cluster, hosts, fashion_dir, tmp_path / "run"))
        seconds = time.monotonic() - started
    finally:
        hosts.delay(0)
    got = _weights(tmp_path / "run")
    assert all(np.array_equal(got[name], want) for name, want in reference.items())
    # Each round is at least one round trip (broadcast fetch, result) per task: rounds x S.
    assert seconds >= ROUNDS * 2 * delay_ms / 1000
