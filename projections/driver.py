"""The in-process driver: follows the event store's notification log and feeds the runner.
Used by the embedded mode (`mcp-ledger up`) and by rebuilds; Faust drives the same runner from
Kafka in the scale-out mode."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import structlog
from psycopg import Connection

from projections.positions import LOG_SOURCE, log_position
from projections.records import EventRecord
from projections.runner import Outcome, Runner

log = structlog.get_logger("projections.driver")

ReadLog = Callable[[int, int], list[EventRecord]]  # (after position, limit) -> records
Connect = Callable[[], AbstractContextManager[Connection[Any]]]
WaitForChange = Callable[[float], None]


class LogFollower:
    def __init__(
        self,
        runner: Runner,
        read_log: ReadLog,
        connect: Connect,
        wait_for_change: WaitForChange,
        batch_size: int = 500,
    ) -> None:
        self.runner = runner
        self.read_log = read_log
        self.connect = connect
        self.wait_for_change = wait_for_change
        self.batch_size = batch_size

    def position(self) -> int:
        """The lowest log position every projection has reached."""
        with self.connect() as conn:
            return log_position(conn, [p.name for p in self.runner.projections])

    def run_once(self) -> tuple[int, Outcome]:
        after = self.position()
        records = self.read_log(after, self.batch_size)
        if not records:
            return 0, Outcome()
        with self.connect() as conn:
            outcome = self.runner.apply(conn, records, (LOG_SOURCE, records[-1].position))
        return len(records), outcome

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        total = 0
        while True:
            count, _ = self.run_once()
            if count == 0:
                return total
            total += count
            if progress:
                progress(count)

    def run(self, stop: threading.Event, idle_wait: float = 1.0) -> None:
        """Follows the log until `stop` is set; woken early by the store's NOTIFY."""
        log.info("following_log", position=self.position())
        while not stop.is_set():
            try:
                count, outcome = self.run_once()
            except Exception as exc:  # keep following; the log is the truth and we retry
                log.error("follow_failed", error=f"{type(exc).__name__}: {exc}")
                stop.wait(idle_wait)
                continue
            if outcome.dead_lettered:
                log.warning("dead_letters", count=outcome.dead_lettered)
            if count == 0:
                self.wait_for_change(idle_wait)
