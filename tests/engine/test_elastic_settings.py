"""What sparknet adds to a session with dynamic allocation: the executors a round needs stay
requested, unless the user said how many (``engine.spark_session.elastic_settings``).

End to end on a standalone cluster: ``tests/engine/test_elastic.py``."""

from __future__ import annotations

import pytest

from sparknet.engine.spark_session import elastic_settings

ON = {"spark.dynamicAllocation.enabled": "true"}
MIN = "spark.dynamicAllocation.minExecutors"


def test_dynamic_allocation_off_adds_nothing() -> None:
    assert elastic_settings({}, tasks=4) == {}
    assert elastic_settings({"spark.dynamicAllocation.enabled": "false"}, tasks=4) == {}


def test_a_user_floor_is_kept() -> None:
    assert elastic_settings({**ON, MIN: "1"}, tasks=4) == {}
    assert elastic_settings({**ON, MIN: "0"}, tasks=4) == {}


@pytest.mark.parametrize(("conf", "tasks", "executors"), [
    ({}, 2, 2),  # one core per executor, Spark's default for the allocation manager
    ({"spark.executor.cores": "4"}, 8, 2),
    ({"spark.executor.cores": "4"}, 9, 3),
    ({"spark.executor.cores": "4", "spark.task.cpus": "2"}, 8, 4),
    ({"spark.dynamicAllocation.executorAllocationRatio": "0.5"}, 8, 4),
    ({"spark.dynamicAllocation.maxExecutors": "3"}, 8, 3),  # min may not exceed max
    ({"spark.dynamicAllocation.enabled": " TRUE "}, 1, 1),
])
def test_the_floor_is_what_a_round_asks_for(conf: dict[str, str], tasks: int,
                                            executors: int) -> None:
    assert elastic_settings({**ON, **conf}, tasks=tasks) == {MIN: str(executors)}
