"""The time model: rounds * (tau * C + S), and speedups read off accuracy curves."""

import pytest

from sparknet.simulate import first_reaching, modelled_seconds, speedup, time_to_target

CURVE = [
    {"round": 2, "steps_per_worker": 100, "test_accuracy": 0.80},
    {"round": 4, "steps_per_worker": 200, "test_accuracy": 0.86},
    {"round": 6, "steps_per_worker": 300, "test_accuracy": 0.89},
]


def test_first_reaching_and_never_reaching():
    assert first_reaching(CURVE, 0.85)["round"] == 4
    assert first_reaching(CURVE, 0.95) is None
    assert time_to_target(CURVE, 0.95, step_seconds=0.03, overhead_seconds=1.0) is None


def test_modelled_time_is_rounds_times_tau_c_plus_s():
    record = CURVE[1]  # 4 rounds of tau = 50
    assert modelled_seconds(record, step_seconds=0.03, overhead_seconds=0.5) == pytest.approx(
        4 * (50 * 0.03 + 0.5))


def test_speedup_against_a_serial_loop():
    # Serial: 400 steps to 85%; parallel reaches it after 200 steps per worker.
    assert speedup(400, CURVE, 0.85, step_seconds=0.03, overhead_seconds=0.0) == pytest.approx(2)
    slower = speedup(400, CURVE, 0.85, step_seconds=0.03, overhead_seconds=1.0)
    assert slower == pytest.approx(12 / (6 + 4))
