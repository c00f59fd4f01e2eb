"""The steps every handler shares: resolve an id or slug, load, check the expected version,
append, and answer retries of the same Idempotency-Key with the first result."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from commands.context import CommandContext
from commands.errors import (
    AppendConflict,
    IdempotencyKeyReused,
    IdempotencyRace,
    NotFound,
    SlugTaken,
    VersionConflict,
)
from commands.ports import Appended, CommandDeps
from domain.events import DomainEvent, EventMeta
from domain.kinds import AggregateKind
from domain.secrets import REDACTED, has_path, is_sealed, secret_paths, value_at, with_value
from domain.slug_index import SlugClaimed, slug_index_id

S = TypeVar("S")


# One aggregate type as the handlers see it: its domain module's `AGGREGATE`.
Kind = AggregateKind


@dataclass(frozen=True)
class WriteResult:
    id: UUID
    version: int
    position: int


def _candidate_ids(deps: CommandDeps, kind: Kind[Any], ref: str) -> Iterator[UUID]:
    """The ref as an id, then as a slug (slugs may look like UUIDs), looked up lazily."""
    try:
        candidate: UUID | None = UUID(ref)
    except ValueError:
        candidate = None
    if candidate is not None:
        yield candidate
    if kind.has_slug:
        claims = deps.store.load(slug_index_id(kind.name, ref))
        if claims and isinstance(claims[0], SlugClaimed):
            yield claims[0].owner_id


def resolve_id(deps: CommandDeps, kind: Kind[Any], ref: str) -> UUID:
    """The id of the aggregate of this kind that `ref` (an id or a slug) names."""
    for candidate in _candidate_ids(deps, kind, ref):
        first = deps.store.load_page(candidate, 0, 1)
        if first and isinstance(first[0].event, kind.events):
            return candidate
    raise NotFound(kind.name, ref, by_slug=kind.has_slug)


def load(deps: CommandDeps, kind: Kind[S], ref: str) -> S:
    """The current state of the aggregate `ref` names, reading its events once."""
    for candidate in _candidate_ids(deps, kind, ref):
        events = deps.store.load(candidate)
        if events and isinstance(events[0], kind.events):
            state = kind.replay(events)
            assert state is not None
            return state
    raise NotFound(kind.name, ref, by_slug=kind.has_slug)


def idempotent(
    deps: CommandDeps, ctx: CommandContext, run: Callable[[], list[Appended]]
) -> list[Appended]:
    request = ctx.idempotency
    if request is None:
        return run()
    hit = deps.idempotency.lookup(request.key)
    if hit is None:
        try:
            return run()
        except (IdempotencyRace, SlugTaken, VersionConflict):
            # A concurrent request with the same key may have won: answer with its result.
            hit = deps.idempotency.lookup(request.key)
            if hit is None:
                raise
    stored_hash, results = hit
    if stored_hash != request.request_hash:
        raise IdempotencyKeyReused(request.key)
    return results


def append(deps: CommandDeps, ctx: CommandContext, events: Sequence[DomainEvent]) -> list[Appended]:
    try:
        return deps.store.append(events, ctx.idempotency)
    except AppendConflict:
        raise VersionConflict(ctx.expected_version, None) from None


def create(
    deps: CommandDeps,
    kind: Kind[Any],
    ctx: CommandContext,
    build: Callable[[], Sequence[DomainEvent]],
) -> WriteResult:
    """Appends a new aggregate's first events (with its slug claim, for kinds that have slugs).
    A taken slug fails on the claim's version 1 and is answered as SlugTaken."""

    def run() -> list[Appended]:
        events = build()
        try:
            return append(deps, ctx, events)
        except VersionConflict:
            if not kind.has_slug:
                raise
            raise SlugTaken(kind.name, events[0].slug) from None  # type: ignore[attr-defined]

    first = idempotent(deps, ctx, run)[0]
    return WriteResult(first.id, first.version, first.position)


def change(
    deps: CommandDeps,
    kind: Kind[S],
    ref: str,
    ctx: CommandContext,
    decide: Callable[[S, EventMeta], DomainEvent | None],
) -> WriteResult:
    """Load → check expected version → decide → append. A decision of None changes nothing."""

    def run() -> list[Appended]:
        state = load(deps, kind, ref)
        current: int = state.aggregate_version  # type: ignore[attr-defined]
        if ctx.expected_version is not None and ctx.expected_version != current:
            raise VersionConflict(ctx.expected_version, current)
        event = decide(state, ctx.meta(deps.clock))
        aggregate_id: UUID = state.id  # type: ignore[attr-defined]
        if event is None:
            position = deps.store.position_of(aggregate_id, current)
            unchanged = [Appended(aggregate_id, current, position or 0)]
            if ctx.idempotency is not None:
                # The key is used up even so: a retry must get this answer, not a later state.
                deps.idempotency.remember(ctx.idempotency, unchanged)
            return unchanged
        return append(deps, ctx, [event])

    first = idempotent(deps, ctx, run)[0]
    return WriteResult(first.id, first.version, first.position)


def _revealed(deps: CommandDeps, aggregate_id: UUID, value: Any, old: Any) -> Any:
    """`value` with the secrets it only shows as placeholders (or as their stored sealed
    values) put back in clear from `old`, so sealing it whole keeps them: a key that becomes
    sensitive may hold secrets sealed on their own before."""
    if isinstance(value, dict):
        old_map = old if isinstance(old, dict) else {}
        return {k: _revealed(deps, aggregate_id, v, old_map.get(k)) for k, v in value.items()}
    if isinstance(value, list):
        old_items = old if isinstance(old, list) and len(old) == len(value) else [None] * len(value)
        return [_revealed(deps, aggregate_id, v, o) for v, o in zip(value, old_items, strict=True)]
    if is_sealed(old) and value in (REDACTED, old):
        return deps.sealer.unseal(aggregate_id, old)
    return value


def seal_sensitive(
    deps: CommandDeps,
    aggregate_id: UUID,
    config: dict[str, Any],
    keys: Iterable[str],
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Seals every secret in the config (see domain.secrets.secret_paths). The redacted
    placeholder keeps the stored value, and so does the stored sealed value itself (it must not
    be sealed a second time)."""
    out = config
    for path in secret_paths(config, keys):
        value = value_at(config, path)
        old = value_at(previous, path) if previous and has_path(previous, path) else None
        if old is not None and (value == REDACTED or (is_sealed(value) and value == old)):
            sealed = old
        else:
            sealed = deps.sealer.seal(aggregate_id, _revealed(deps, aggregate_id, value, old))
        out = with_value(out, path, sealed)
    return out
