"""One hook around every command handler: its name, its outcome and how long it took, reported
to whoever listens (infra/observability/metrics.py counts them). The commands layer imports no
metrics library: observers are plain callables, registered by the composition root's side."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from commands.errors import CommandError
from domain.errors import DomainError

P = ParamSpec("P")
R = TypeVar("R")

# (command name, outcome, seconds): outcome is "ok", the refusal's code ("not_found",
# "version_conflict", "invalid_input", ...) or "error" for anything unexpected.
CommandObserver = Callable[[str, str, float], None]

_observers: list[CommandObserver] = []


def add_observer(observer: CommandObserver) -> None:
    if observer not in _observers:
        _observers.append(observer)


def outcome_of(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, CommandError | DomainError):
        return exc.code
    return "error"


def observed(handler: Callable[P, R]) -> Callable[P, R]:
    """Reports each call of `handler` (named by its function name) to the observers."""
    name = handler.__name__

    @functools.wraps(handler)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            return handler(*args, **kwargs)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            elapsed = time.perf_counter() - started
            outcome = outcome_of(failure)
            for observer in _observers:
                with contextlib.suppress(Exception):  # observing never fails a command
                    observer(name, outcome, elapsed)

    return run
