"""Deadlines for sparknet's Spark Connect clients: a lost server ends a run within the timeout.

PySpark's client retries a server it cannot reach for about 10 minutes per call, and a call
that gives up is followed by others (the next job, releasing the cached data, closing the
session), each retrying anew: a server killed mid-fit kept the client 41 s with a 10 s
timeout. sparknet's clients get, before their first call:

- one retry budget for all calls (``OutageBudget``): an outage starts at the first failed
  attempt; while it lasts, every call retries only until ``timeout`` seconds have passed since
  that start (backoff 50 ms x 4 per try, at most 5 s). A call that fails after the budget is
  spent fails at once, so the run ends ``timeout`` seconds after the server went, not that much
  per call. A call that failed in silence (its deadline passed, a ping went unanswered)
  counts that silence too. An outage ends when no attempt has failed for ``timeout`` seconds;
- a deadline of ``timeout`` on every unary call (configuration, analysis, artifacts,
  interrupt, release) and a bound of ``timeout`` on PySpark's immediate re-executions of a
  lost operation;
- HTTP/2 keepalive pings every ``keepalive_seconds(timeout)``, answered within
  ``ping_answer_seconds(timeout)``, so that a server that falls silent with its connection
  open (frozen, its host gone) is noticed too, and connection attempts that give up after
  half the timeout.

A running job's result stream has no deadline: a round may take minutes while the server
says nothing on it. What tells a slow job from a dead server is the server's transport, which
answers pings while a job runs, and refuses or resets connections once it is gone.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import TYPE_CHECKING, Any

import grpc
from pyspark.sql.connect.client.core import DefaultChannelBuilder
from pyspark.sql.connect.client.retries import DefaultPolicy, RetryPolicyState

if TYPE_CHECKING:
    from pyspark.sql.connect.session import SparkSession as RemoteSession

MAX_BACKOFF_MS = 5000
# The Connect server accepts a client's keepalive pings no more often than every 10 s
# (spark.connect.grpc.keepAlive.time's documentation); more often is answered with GOAWAY.
MIN_KEEPALIVE_SECONDS = 15.0
# A job's result stream and its reattachments wait as long as the job runs.
STREAM_CALLS = ("reattachable_execute_plan", "reattach_execute")


def keepalive_seconds(timeout: float) -> float:
    """How often the client pings: half the timeout, within what the server accepts."""
    return max(MIN_KEEPALIVE_SECONDS, min(60.0, timeout / 2))


def ping_answer_seconds(timeout: float) -> float:
    """How long a ping may wait for its answer before the connection counts as dead."""
    return min(timeout, 20.0)


def channel(url: str, timeout: float) -> DefaultChannelBuilder:
    """The channel to ``url``: pings that a live server answers within ``timeout`` seconds
    (20 s at most), and connection attempts bounded by the backoff of the retries."""
    answer_ms = int(1000 * ping_answer_seconds(timeout))
    return DefaultChannelBuilder(url, channelOptions=[
        ("grpc.keepalive_time_ms", int(1000 * keepalive_seconds(timeout))),
        ("grpc.keepalive_timeout_ms", answer_ms),
        # gRPC's own pings (bandwidth probes while results arrive) wait 1 minute for their
        # answer, and no keepalive ping is sent while one is out.
        ("grpc.http2.ping_timeout_ms", answer_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        # Pings go on while a job's stream is quiet (gRPC stops after 2 by default).
        ("grpc.http2.max_pings_without_data", 0),
        # A connection attempt (TCP and HTTP/2 handshake) gives up after half the timeout
        # (gRPC's 20 s at most), and a server back up is reconnected to within 5 s, not up to
        # 2 minutes.
        ("grpc.min_reconnect_backoff_ms", int(1000 * min(20.0, max(1.0, timeout / 2)))),
        ("grpc.max_reconnect_backoff_ms", MAX_BACKOFF_MS),
    ])


def bound_client(session: RemoteSession, timeout: float) -> OutageBudget:
    """Gives ``session``'s client the budget and the deadlines; returns the budget."""
    budget = OutageBudget(timeout, ping_answer=ping_answer_seconds(timeout))
    client: Any = session.client
    client.set_retry_policies([budget])
    client._max_retry_exception_elapsed_time = timeout  # noqa: SLF001 - no public setter
    deadlines: Any = getattr(client, "_rpc_deadlines", None)  # pyspark >= 4.3
    if deadlines is not None:
        unary = [f.name for f in dataclasses.fields(deadlines) if f.name not in STREAM_CALLS]
        client._rpc_deadlines = dataclasses.replace(  # noqa: SLF001
            deadlines, **dict.fromkeys(unary, timeout))
    return budget


class OutageBudget(DefaultPolicy):
    """PySpark's default retry policy (what is retried, and the backoff), with one time budget
    shared by every call of the client instead of a count of tries per call.

    The budget counts from when the server was last known to answer: a call that failed
    because the server said nothing (its deadline, or a ping left unanswered) moves the start
    of the outage back by that silence, so the calls after it give up at once.
    """

    def __init__(self, seconds: float, *, ping_answer: float) -> None:
        super().__init__(max_retries=None, max_backoff=MAX_BACKOFF_MS)
        self.seconds = seconds
        self.ping_answer = ping_answer
        self._lock = threading.Lock()
        self._since: float | None = None  # when the current outage started
        self._last_failure = float("-inf")

    def to_state(self) -> RetryPolicyState:
        return _BudgetedState(self)

    def can_retry(self, e: BaseException) -> bool:
        silence = self._silence(e)
        if silence is not None:
            self._failed(silence)
        return bool(super().can_retry(e))

    def wait_ms(self, backoff_ms: int) -> int | None:
        """How long to wait before the next try after a failed attempt; None: give up."""
        left = self.seconds - self._failed(0.0)
        return None if left <= 0 else int(min(backoff_ms, 1000 * left))

    def _failed(self, silence: float) -> float:
        """Records a failed attempt after ``silence`` seconds without an answer; returns how
        long the outage has lasted."""
        with self._lock:
            now = time.monotonic()
            if self._since is None or now - self._last_failure > self.seconds:
                self._since = now
            self._since = min(self._since, now - silence)
            self._last_failure = now
            return now - self._since

    def _silence(self, e: BaseException) -> float | None:
        """How long the server had said nothing when ``e`` ended a call; None: not a silence."""
        code = getattr(e, "code", None)
        status = code() if callable(code) else None
        if status == grpc.StatusCode.DEADLINE_EXCEEDED:
            return self.seconds  # every unary call waits that long
        if status == grpc.StatusCode.UNAVAILABLE and "ping timeout" in str(e):
            return self.ping_answer
        return None


class _BudgetedState(RetryPolicyState):
    def __init__(self, policy: OutageBudget) -> None:
        super().__init__(policy)
        self._budget = policy

    def next_attempt(self, exception: BaseException | None = None) -> int | None:
        backoff = super().next_attempt(exception)
        return None if backoff is None else self._budget.wait_ms(backoff)
