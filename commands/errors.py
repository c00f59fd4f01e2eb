"""Why a command was not carried out, beyond the domain's own rules."""

from __future__ import annotations

from domain.errors import NotFound

__all__ = ["NotFound"]  # a domain error; named here too, as the handlers raise it


class CommandError(Exception):
    code = "command_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class VersionConflict(CommandError):
    """The aggregate is not at the version the caller expected (or another writer won)."""

    code = "version_conflict"

    def __init__(self, expected: int | None, actual: int | None) -> None:
        if expected is None or actual is None:
            text = "another change was saved first; reload and retry"
        else:
            text = f"expected version {expected}, but the current version is {actual}"
        super().__init__(text)
        self.expected = expected
        self.actual = actual


class SlugTaken(CommandError):
    code = "slug_taken"

    def __init__(self, kind: str, slug: str) -> None:
        super().__init__(f"a {kind} with slug '{slug}' already exists")
        self.kind = kind
        self.slug = slug


class IdempotencyKeyReused(CommandError):
    code = "idempotency_key_reused"

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency-Key '{key}' was already used with a different request; "
            "use a new key for a new request"
        )
        self.key = key


class AppendConflict(CommandError):
    """The store refused an append because a version (or slug index) was taken meanwhile."""

    code = "append_conflict"


class IdempotencyRace(CommandError):
    """Another request with the same Idempotency-Key committed first."""

    code = "idempotency_race"


class StoreUnavailable(CommandError):
    """The event store could not take the append now; nothing of it was stored. Safe to retry
    (with the same Idempotency-Key, a retry can never apply twice)."""

    code = "store_unavailable"
    retry_after = 1


class StoreBusy(StoreUnavailable):
    """Another append held the events table longer than the lock wait allows."""

    code = "store_busy"


class AppendTimedOut(StoreUnavailable):
    """The append could not finish within its bound; its session was ended, which rolled it
    back and released the events table for the other writers."""

    code = "append_timeout"
