"""The one way the REST API and the MCP server read: a bounded wait until the read models (or the
event store) reach a position the caller asks for, then the query and the applied position in
one consistent snapshot, so the position reported is the one the answer reflects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from anyio import to_thread
from psycopg import Connection

from infra.postgres.read_side import ReadSide
from projections import queries
from projections.vector_index import vectors_caught_up, wait_until

R = TypeVar("R")
POLL_SECONDS = 0.02  # how often a waiting read looks again; no connection is held meanwhile


class NotReached(Exception):
    """The read models (or the store) did not reach the asked position within the read wait."""

    def __init__(self, what: str, reached: int, wanted: int, waited: float) -> None:
        self.what, self.reached, self.wanted, self.waited = what, reached, wanted, waited
        if what == "store":
            text = (
                f"the event store's last position is {reached}, not yet the asked "
                f"min_position {wanted} (waited {waited:g} s)"
            )
        else:
            text = (
                f"the read models have applied position {reached}, not yet the asked "
                f"min_position {wanted} (waited {waited:g} s); retry shortly"
            )
        super().__init__(text)
        self.message = text


@dataclass(frozen=True)
class Reads:
    read_side: ReadSide
    wait_seconds: float  # MCP_LEDGER_READ_WAIT_SECONDS

    def applied(self) -> int:
        with self.read_side.connection() as conn:
            return self.read_side.applied_position(conn)

    def head(self) -> int:
        return self.read_side.store.head()

    def wait(self, wanted: int | None) -> int | None:
        """Blocks (a worker thread) until the read models apply `wanted`; raises NotReached."""
        if wanted is None:
            return None
        return self._settle("read models", self._poll(self.applied, wanted), wanted)

    async def wait_async(self, wanted: int | None, *, store: bool = False) -> int | None:
        """The same without blocking the event loop; `store`: wait for the store's head."""
        if wanted is None:
            return None
        reached_now = self.head if store else self.applied
        deadline = time.monotonic() + self.wait_seconds
        while True:
            reached = await to_thread.run_sync(reached_now)
            if reached >= wanted or time.monotonic() >= deadline:
                return self._settle("store" if store else "read models", reached, wanted)
            await asyncio.sleep(POLL_SECONDS)

    def vectors_current(self, wanted: int | None) -> bool:
        """Waits (bounded) until the vector index has taken every change up to `wanted`; False
        if it has not in time (search then ranks with Postgres full text, which is current)."""
        if wanted is None:
            return True

        def caught_up() -> bool:
            with self.read_side.connection() as conn:
                return vectors_caught_up(conn, wanted)

        return wait_until(caught_up, self.wait_seconds)

    def snapshot(self, query: Callable[[Connection[Any], int], R]) -> tuple[R, int]:
        """`query(conn, applied_position)` and that position, read in one REPEATABLE READ
        snapshot."""
        with self.read_side.connection() as conn, queries.snapshot(conn):
            position = self.read_side.applied_position(conn)
            return query(conn, position), position

    def _poll(self, reached_now: Callable[[], int], wanted: int) -> int:
        deadline = time.monotonic() + self.wait_seconds
        while True:
            reached = reached_now()
            if reached >= wanted or time.monotonic() >= deadline:
                return reached
            time.sleep(POLL_SECONDS)

    def _settle(self, what: str, reached: int, wanted: int) -> int:
        if reached < wanted:
            raise NotReached(what, reached, wanted, self.wait_seconds)
        return reached
