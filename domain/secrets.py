"""Sensitive configuration values.

A tool's `config` is free JSON; values under sensitive keys are secrets. The domain only ever holds
them sealed (`{"$sealed": "<ciphertext>"}`); sealing itself is I/O-free but needs a key, so the
command layer does it through a port before the domain sees the config.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from domain.errors import FieldError

SEALED = "$sealed"
REDACTED = "***"
# Keys that look like credentials are treated as sensitive even when not declared.
_LOOKS_SECRET = re.compile(
    r"(pass(word)?|secret|token|api[_-]?key|private[_-]?key|credential)", re.I
)


def sensitive_keys_of(config: dict[str, Any], declared: Iterable[str]) -> list[str]:
    keys = set(declared) | {k for k in config if _LOOKS_SECRET.search(k)}
    return sorted(keys)


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(SEALED), str)


def check_sealed(
    config: dict[str, Any], keys: Iterable[str], field: str = "config"
) -> list[FieldError]:
    return [
        FieldError(f"{field}.{k}", "sensitive value must be sealed before it is stored")
        for k in keys
        if k in config and not is_sealed(config[k])
    ]


def redact(config: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    hidden = set(keys)
    return {k: (REDACTED if k in hidden or is_sealed(v) else v) for k, v in config.items()}


def keep_unchanged_secrets(
    new: dict[str, Any], old: dict[str, Any], keys: Iterable[str]
) -> dict[str, Any]:
    """A client that sends back the redacted placeholder means 'keep the stored secret'."""
    out = dict(new)
    for k in keys:
        if out.get(k) == REDACTED and k in old:
            out[k] = old[k]
    return out
