"""Automatic tau: probe rounds, then the smallest tau that keeps overhead within 5%."""

import pytest

from sparknet.config import EngineConfig, TrainConfig
from sparknet.engine.auto_tau import AutoTau, measure, tau_for_overhead
from sparknet.engine.loop import tau_policy
from sparknet.engine.tau import RoundTiming, TauSchedule
from sparknet.errors import ConfigError


def test_auto_builds_an_auto_tau_policy():
    config = TrainConfig(engine=EngineConfig(tau="auto"))
    assert isinstance(tau_policy(config), AutoTau)
    with pytest.raises(ConfigError, match="tau='fast'"):
        EngineConfig(tau="fast")
    with pytest.raises(ConfigError, match="tau=0"):
        EngineConfig(tau=0)


def test_chosen_tau_keeps_overhead_within_five_percent():
    for step, overhead in ((0.03, 0.2), (0.03, 1.0), (0.001, 0.05), (0.5, 0.01)):
        tau = tau_for_overhead(step_seconds=step, overhead_seconds=overhead, max_overhead=0.05,
                               max_tau=10**9)
        assert overhead / (tau * step + overhead) <= 0.05 + 1e-12
        if tau > 1:  # and it is the smallest such tau
            assert overhead / ((tau - 1) * step + overhead) > 0.05
    assert tau_for_overhead(step_seconds=0.03, overhead_seconds=0.0, max_overhead=0.05) == 1
    assert tau_for_overhead(step_seconds=1e-6, overhead_seconds=10, max_overhead=0.05,
                            max_tau=500) == 500


def test_probe_rounds_then_a_fixed_decision_from_the_measured_rounds():
    policy = AutoTau(probe_tau=10, probe_rounds=3)
    schedule = TauSchedule(policy)
    # Round 0 is a warm-up with a huge overhead; it must not be measured.
    timings = [RoundTiming(10, 30.0, 0.5), RoundTiming(10, 0.5, 0.3),
               RoundTiming(10, 0.52, 0.3)]
    for index, timing in enumerate(timings):
        assert schedule.tau_for(index) == 10
        schedule.observe(timing)
    step, overhead = measure(timings[1:])
    assert step == pytest.approx(0.03) and overhead == pytest.approx(0.21)
    expected = tau_for_overhead(step_seconds=0.03, overhead_seconds=0.21, max_overhead=0.05)
    assert schedule.tau_for(3) == expected == 133
    schedule.observe(RoundTiming(expected, 100.0, 1.0))  # later timings do not move it
    assert schedule.tau_for(4) == expected


def test_recorded_decisions_are_replayed_not_remeasured():
    schedule = TauSchedule(AutoTau(), decisions=[10, 10, 10, 77])
    assert [schedule.tau_for(i) for i in range(4)] == [10, 10, 10, 77]


def test_policy_settings_are_validated():
    with pytest.raises(ValueError, match="probe_rounds"):
        AutoTau(probe_rounds=1)
    with pytest.raises(ValueError, match="max_overhead"):
        AutoTau(max_overhead=1.5)


def test_a_run_resumed_after_the_decision_keeps_it():
    # A resumed run replays rounds 0..4 from the checkpoint and has measured nothing yet.
    schedule = TauSchedule(AutoTau(probe_tau=10, probe_rounds=3), decisions=[10, 10, 10, 77, 77])
    assert schedule.tau_for(5) == 77 and schedule.tau_for(6) == 77


def test_a_run_resumed_during_the_probes_probes_again():
    schedule = TauSchedule(AutoTau(probe_tau=10, probe_rounds=3), decisions=[10, 10])
    for index in (2, 3, 4):
        assert schedule.tau_for(index) == 10
        schedule.observe(RoundTiming(10, 0.51, 0.3))
    assert schedule.tau_for(5) == tau_for_overhead(step_seconds=0.03, overhead_seconds=0.21,
                                                   max_overhead=0.05)
