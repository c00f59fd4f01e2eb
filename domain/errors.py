"""Domain errors. Each names what was wrong so the API can say which field and why."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class DomainError(Exception):
    """Base class: a command was refused by the domain's rules."""

    code = "domain_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class InvalidInput(DomainError):
    """One or more fields break an invariant (slug format, semver, JSON Schema, ...)."""

    errors: list[FieldError] = field(default_factory=list)
    code = "invalid_input"

    def __post_init__(self) -> None:
        text = "; ".join(f"{e.field}: {e.message}" for e in self.errors)
        DomainError.__init__(self, text or "invalid input")

    @classmethod
    def one(cls, field_name: str, message: str) -> InvalidInput:
        return cls([FieldError(field_name, message)])


class NotFound(DomainError):
    """No aggregate of this kind has that id (or slug)."""

    code = "not_found"

    def __init__(self, kind: str, ref: str, *, by_slug: bool = True) -> None:
        super().__init__(f"no {kind} with id{' or slug' if by_slug else ''} '{ref}'")
        self.kind = kind
        self.ref = ref


class IllegalTransition(DomainError):
    """The aggregate's state does not allow this command (e.g. activating a deleted tool)."""

    code = "illegal_transition"
