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


def is_secret_key(key: str) -> bool:
    """Whether a key's name marks its value as a credential."""
    return bool(_LOOKS_SECRET.search(key))


def sensitive_keys_of(config: dict[str, Any], declared: Iterable[str]) -> list[str]:
    keys = set(declared) | {k for k in config if _LOOKS_SECRET.search(k)}
    return sorted(keys)


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(SEALED), str)


Path = tuple[str | int, ...]


def secret_paths(config: dict[str, Any], keys: Iterable[str]) -> list[Path]:
    """Where secrets sit in a config: the sensitive top-level keys, and any nested key (inside
    objects or lists) that looks like a credential, e.g. {"auth": {"token": ...}}."""
    paths: list[Path] = [(k,) for k in keys if k in config]
    top = {p[0] for p in paths}
    for key, value in config.items():
        if key not in top:
            paths += _nested(value, (key,))
    return paths


def _nested(value: Any, at: Path) -> list[Path]:
    if is_sealed(value):
        return []
    if isinstance(value, dict):
        found: list[Path] = []
        for key, inner in value.items():
            here = (*at, key)
            found += [here] if _LOOKS_SECRET.search(key) else _nested(inner, here)
        return found
    if isinstance(value, list):
        return [p for i, inner in enumerate(value) for p in _nested(inner, (*at, i))]
    return []


def value_at(doc: Any, path: Path) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def has_path(doc: Any, path: Path) -> bool:
    try:
        value_at(doc, path)
    except (KeyError, IndexError, TypeError):
        return False
    return True


def with_value(doc: Any, path: Path, value: Any) -> Any:
    """A copy of `doc` with `value` at `path` (containers along the path are copied)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy: Any = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[head] = with_value(doc[head], rest, value)
    return copy


def dotted(path: Path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def check_sealed(
    config: dict[str, Any], keys: Iterable[str], field: str = "config"
) -> list[FieldError]:
    return [
        FieldError(f"{field}.{dotted(p)}", "sensitive value must be sealed before it is stored")
        for p in secret_paths(config, keys)
        if not is_sealed(value_at(config, p))
    ]


def redact_sealed(value: Any) -> Any:
    """The value with every sealed secret shown as the placeholder (what readers see)."""
    if is_sealed(value):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact_sealed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_sealed(v) for v in value]
    return value
