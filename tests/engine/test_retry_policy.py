"""Failure lines say how Spark really retried: local[K] never does, local[K,F] F times."""

import pytest

from sparknet.engine.tasks import retry_policy


@pytest.mark.parametrize(("master", "max_failures", "expected"), [
    ("local[2]", "4", "on its first attempt, with no retry (master local[2] does not retry "
                      "tasks; local[K,4] does)"),
    ("local", None, "with no retry (master local does not retry"),
    ("local[*]", "8", "with no retry"),
    ("local[2,4]", "1", "in all 4 attempts of a task"),
    ("local[*, 3]", None, "in all 3 attempts of a task"),
    ("spark://h:7077", "4", "in all 4 attempts of a task"),
    ("spark://h:7077", None, "in all 4 attempts of a task"),
    ("yarn", "1", "on its first attempt, with no retry (spark.task.maxFailures=1)"),
    (None, None, "after Spark's retries (spark.task.maxFailures)"),
])
def test_retry_policy_names_what_spark_did(master, max_failures, expected):
    assert expected in retry_policy(master, max_failures)
