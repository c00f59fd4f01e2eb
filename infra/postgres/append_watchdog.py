"""Bounds how long one append may hold the event store's table lock.

Every append takes the events table in EXCLUSIVE mode, so one writer that never finishes
freezes every other writer behind it. Server-side limits do not cover every way a writer can
stall: a backend waiting for the rest of a half-sent message is *active* in `ClientRead`, so
neither `statement_timeout` nor `idle_in_transaction_session_timeout` fires (and
`transaction_timeout` only exists from PostgreSQL 17). The watchdog is the bound that always
holds: past its deadline, the append's server session is terminated from a second connection,
which rolls the transaction back and releases the lock; the writer then fails with a clear
error."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger("event_store")


@dataclass(order=True)
class Ticket:
    deadline: float
    seq: int
    backend_pid: int = field(compare=False)
    timeout: float = field(compare=False)
    done: bool = field(default=False, compare=False)
    fired: bool = field(default=False, compare=False)
    # Set once the watchdog is finished with this ticket (terminated or skipped it).
    settled: threading.Event = field(default_factory=threading.Event, compare=False)


class AppendWatchdog:
    """One thread per store, woken only for the earliest deadline."""

    def __init__(self, terminate: Callable[[int], Any]) -> None:
        self._terminate = terminate
        self._heap: list[Ticket] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextmanager
    def guard(self, backend_pid: int, timeout: float) -> Iterator[Ticket]:
        ticket = Ticket(time.monotonic() + timeout, next(self._seq), backend_pid, timeout)
        with self._cond:
            self._start()
            heapq.heappush(self._heap, ticket)
            if self._heap[0] is ticket:
                self._cond.notify()
        try:
            yield ticket
        finally:
            with self._cond:
                ticket.done = True
                claimed = ticket.fired
            if claimed:
                # The session is being terminated: wait until it is, so the connection is
                # never handed to another request while the kill is on its way.
                ticket.settled.wait()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="append-watchdog", daemon=True)
            self._thread.start()

    def _next_expired(self) -> Ticket | None:
        with self._cond:
            while not self._closed:
                while self._heap and self._heap[0].done:
                    heapq.heappop(self._heap).settled.set()
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0].deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                ticket = heapq.heappop(self._heap)
                ticket.fired = True
                return ticket
            return None

    def _run(self) -> None:
        while (ticket := self._next_expired()) is not None:
            try:
                log.error(
                    "append_timed_out",
                    backend_pid=ticket.backend_pid,
                    timeout_seconds=ticket.timeout,
                    action="terminating the append's session to release the events table lock",
                )
                self._terminate(ticket.backend_pid)
            except Exception as exc:  # the next deadline must still be watched
                log.error("append_watchdog_failed", error=str(exc), error_type=type(exc).__name__)
            finally:
                ticket.settled.set()
