"""What every command carries besides its own data: who, why, in which request, at which version."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import uuid4

from commands.ports import IdempotencyRequest
from domain.events import EventMeta


@dataclass(frozen=True)
class CommandContext:
    actor: str
    correlation_id: str
    reason: str | None = None
    expected_version: int | None = None
    idempotency: IdempotencyRequest | None = None
    command_id: str = field(default_factory=lambda: str(uuid4()))
    # Who is acting, as people name them (a key's name, an OIDC subject): the author of a tool
    # registered without one. None: the actor.
    author: str | None = None

    @property
    def default_author(self) -> str:
        return self.author or self.actor

    def meta(self, clock: Callable[[], datetime]) -> EventMeta:
        # The command is the cause of the events it produces.
        return EventMeta(
            actor=self.actor,
            correlation_id=self.correlation_id,
            causation_id=self.command_id,
            occurred_at=clock(),
            reason=self.reason,
        )
