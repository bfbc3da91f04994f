"""Network faults beyond process kills: workers as separate hosts on virtual links.

Each worker of a standalone cluster runs in its own network namespace, joined to a bridge on
this host by a link this process pumps (``sparknet_testing.netns``). Cutting a worker's link
mid-round must end, once Spark has noticed the lost executor and rerun its task elsewhere, in
the same weights as an undisturbed run; added latency must not change the weights at all and
must cost what SparkNet's model says: rounds x (compute + S), with S grown by the delay.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from sparknet_testing.chaos import Driver, arm_tripwire, clear_faults, train_command, wait_for
from sparknet_testing.faults import TRIPPED
from sparknet_testing.netns import VirtualHosts, unavailable
from sparknet_testing.standalone import StandaloneCluster, start_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TAU, ROUNDS = 10, 6
# Spark notices a silent executor after spark.network.timeout; short here so the test is too.
DRIVER_CONF = ("--conf spark.network.timeout=12s --conf spark.network.timeoutInterval=4s "
               "--conf spark.executor.heartbeatInterval=2s "
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
                            hosts=hosts, daemon_opts="-Dspark.worker.timeout=20")
    try:
        yield cluster
    finally:
        cluster.stop()


def _train(cluster: StandaloneCluster, hosts: VirtualHosts, fashion_dir: Path,
           run_dir: Path) -> Driver:
    command = train_command(
        cluster.master_url, "--model", "sparknet_testing.faults:tripwire_net",
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


def _round_seconds(run_dir: Path) -> tuple[float, float]:
    """Mean (round, compute) seconds per round after the first (which fetches the shards)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return (float(np.mean([r["round_seconds"] for r in records[1:]])),
            float(np.mean([r["compute_seconds"] for r in records[1:]])))


@pytest.fixture(scope="module")
def reference(net_cluster: StandaloneCluster, hosts: VirtualHosts, fashion_dir: Path,
              tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[dict[str, np.ndarray], tuple[float, float]]:
    """Final weights and mean round seconds of an undisturbed run on the same links."""
    clear_faults(net_cluster.fault_dir)
    run_dir = tmp_path_factory.mktemp("netns-reference") / "run"
    _finish(_train(net_cluster, hosts, fashion_dir, run_dir))
    return _weights(run_dir), _round_seconds(run_dir)


@pytest.mark.parametrize("delay_ms", [50, 500])
def test_added_latency_changes_no_weights_and_costs_rounds_times_s(
        net_cluster: StandaloneCluster, hosts: VirtualHosts, fashion_dir: Path,
        reference: tuple[dict[str, np.ndarray], tuple[float, float]], tmp_path: Path,
        delay_ms: int) -> None:
    want, (base_round, base_compute) = reference
    hosts.delay(delay_ms)
    try:
        _finish(_train(net_cluster, hosts, fashion_dir, tmp_path / "run"))
    finally:
        hosts.delay(0)
    got = _weights(tmp_path / "run")
    assert all(np.array_equal(got[name], w) for name, w in want.items())
    # SparkNet's model: a round costs tau x C + S. Latency lands in S (at least one round
    # trip per round: launch and result), never in the tau local steps, which talk to nobody.
    round_seconds, compute = _round_seconds(tmp_path / "run")
    grown, delay = round_seconds - base_round, delay_ms / 1000
    print(f"delay {delay_ms} ms: mean round {base_round:.3f} s -> {round_seconds:.3f} s, "
          f"S grew by {grown:.3f} s = {grown / delay:.1f} x the delay; tau x C "
          f"{base_compute:.3f} s -> {compute:.3f} s")
    assert grown >= 0.9 * delay
    assert 0.5 <= compute / base_compute <= 2.0


def test_a_worker_cut_off_mid_round_is_replaced_bit_identically(
        net_cluster: StandaloneCluster, hosts: VirtualHosts, fashion_dir: Path,
        reference: tuple[dict[str, np.ndarray], tuple[float, float]], tmp_path: Path) -> None:
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
    assert all(np.array_equal(got[name], want) for name, want in reference[0].items())
    print(f"finished {recovered_in:.1f} s after the cut")
    # Detection (spark.network.timeout = 12 s) plus the rest of the run, on 2 busy cores.
    assert recovered_in < 180, f"took {recovered_in:.0f} s after the cut"
