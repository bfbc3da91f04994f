"""Spark jobs started from driver threads, in the order the round loop asks for them.

Overlapped rounds keep the next round's job queued behind the running one. Each job runs on a
thread of its own (a Spark action blocks its thread), under a tag of its own (a job group on a
classic session, an operation tag on Spark Connect) so that ``cancel`` can stop it. A job's
thread waits until the job before it has reached Spark, so that Spark's FIFO scheduler runs
them in the loop's order; the order decides only when a job runs, never what it computes.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# How long a job waits for the one before it to reach Spark before it goes anyway.
ORDER_TIMEOUT_SECONDS = 5.0


def timed_evaluation(evaluate: Callable[[], tuple[float, float]], *,
                     release: Callable[[], object]) -> tuple[float, float, float]:
    """An evaluation job's (loss, accuracy, seconds it took); ``release`` frees its state."""
    started = time.perf_counter()
    try:
        loss, accuracy = evaluate()
    finally:
        release()
    return loss, accuracy, time.perf_counter() - started


class OrderedJobs:
    """Runs ``job(tag)`` callables on threads, each submitted after the one before.

    ``submitted(tag)`` says whether the job under ``tag`` has reached Spark (None: assume it
    has a moment after its thread began); ``interrupt(tag)`` cancels it.
    """

    def __init__(self, *, interrupt: Callable[[str], object],
                 submitted: Callable[[str], bool] | None = None) -> None:
        self._interrupt = interrupt
        self._submitted = submitted
        self._pool: ThreadPoolExecutor | None = None
        self._previous: tuple[str, threading.Event, Future[Any]] | None = None
        self._running: set[str] = set()
        self._futures: list[Future[Any]] = []
        self._cancelled = False

    def submit(self, job: Callable[[str], T]) -> Future[T]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sparknet-round")
        self._cancelled = False
        tag = f"sparknet-{uuid.uuid4().hex[:12]}"
        began = threading.Event()
        previous = self._previous

        def in_order() -> T:
            if previous is not None:
                self._wait(*previous)
            if self._cancelled:
                began.set()
                raise CancelledError(tag)
            self._running.add(tag)
            began.set()
            try:
                return job(tag)
            finally:
                self._running.discard(tag)

        future = self._pool.submit(in_order)
        self._previous = (tag, began, future)
        self._futures = [f for f in self._futures if not f.done()] + [future]
        return future

    def _wait(self, tag: str, began: threading.Event, future: Future[Any]) -> None:
        deadline = time.monotonic() + ORDER_TIMEOUT_SECONDS
        began.wait(ORDER_TIMEOUT_SECONDS)
        if self._submitted is None:
            time.sleep(0.02)  # no way to ask: give the call a moment to reach the server
            return
        while not future.done() and not self._submitted(tag) and time.monotonic() < deadline:
            time.sleep(0.001)

    def cancel(self) -> None:
        """Cancels the jobs still running or queued and waits for every thread to end."""
        self._cancelled = True
        for tag in list(self._running):
            with contextlib.suppress(Exception):
                self._interrupt(tag)
        for future in self._futures:
            with contextlib.suppress(BaseException):
                future.result()
        self._futures = []

    def shutdown(self) -> None:
        self.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
