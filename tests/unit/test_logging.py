"""Log output: readable lines for a person at a terminal, JSON for machines, never a secret."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog

from infra.observability.logging import configure_logging


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.handlers, root.level = handlers, level


def emit(stream: io.StringIO, monkeypatch: pytest.MonkeyPatch, fmt: str) -> str:
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("info", fmt)
    structlog.get_logger("test").info("tool_registered", slug="weather", api_token="s3cr3t")
    return stream.getvalue()


def test_auto_is_json_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    line = emit(io.StringIO(), monkeypatch, "auto").strip()
    record = json.loads(line)
    assert record["event"] == "tool_registered"
    assert record["api_token"] == "***"


def test_auto_is_readable_at_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    text = emit(Terminal(), monkeypatch, "auto")
    assert "tool_registered" in text
    assert "s3cr3t" not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.strip())


def test_an_explicit_format_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    assert json.loads(emit(Terminal(), monkeypatch, "json").strip())["slug"] == "weather"
