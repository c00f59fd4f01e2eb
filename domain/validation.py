"""Pure checks shared by the aggregates: slugs, semver, JSON Schema, tags."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import jsonschema
import semver

from domain.errors import FieldError

SLUG_MAX = 63
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")
MAX_TAGS = 32


def check_slug(value: str, field: str = "slug") -> list[FieldError]:
    if not SLUG_RE.fullmatch(value):
        return [
            FieldError(
                field,
                "must match ^[a-z0-9][a-z0-9-]{0,62}$ (lowercase letters, digits and '-', "
                "1-63 characters, not starting with '-')",
            )
        ]
    return []


def check_text(value: str, field: str, *, max_len: int, required: bool = True) -> list[FieldError]:
    if required and not value.strip():
        return [FieldError(field, "must not be empty")]
    if len(value) > max_len:
        return [FieldError(field, f"must be at most {max_len} characters")]
    return []


def check_string(
    value: Any, field: str, max_len: int, *, required: bool = True
) -> list[FieldError]:
    """`check_text` for input whose type is not known yet."""
    if not isinstance(value, str):
        return [FieldError(field, "must be a string")]
    return check_text(value, field, max_len=max_len, required=required)


def check_tag_list(tags: Any) -> list[FieldError]:
    """`check_tags` for input whose type is not known yet."""
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return [FieldError("tags", "must be a list of strings")]
    return check_tags(tags)


def check_tags(tags: Iterable[str], field: str = "tags") -> list[FieldError]:
    items = list(tags)
    errors = []
    if len(items) > MAX_TAGS:
        errors.append(FieldError(field, f"at most {MAX_TAGS} tags"))
    for i, tag in enumerate(items):
        if not TAG_RE.fullmatch(tag):
            errors.append(FieldError(f"{field}[{i}]", "must match ^[a-z0-9][a-z0-9_.:-]{0,63}$"))
    if len(set(items)) != len(items):
        errors.append(FieldError(field, "must not repeat a tag"))
    return errors


def normalise_tags(tags: Iterable[str]) -> list[str]:
    return sorted(set(tags))


def parse_semver(value: str, field: str = "version") -> semver.Version | FieldError:
    try:
        return semver.Version.parse(value)
    except (ValueError, TypeError):
        return FieldError(field, "must be a semantic version such as 1.2.3")


def check_version_forward(old: str, new: str, field: str = "version") -> list[FieldError]:
    parsed = parse_semver(new, field)
    if isinstance(parsed, FieldError):
        return [parsed]
    if parsed <= semver.Version.parse(old):
        return [FieldError(field, f"must move forward from {old} (got {new})")]
    return []


def check_json_schema(value: Any, field: str) -> list[FieldError]:
    if not isinstance(value, dict):
        return [FieldError(field, "must be a JSON Schema object")]
    try:
        canonical = json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return [FieldError(field, "must be plain JSON")]
    problem = _schema_problem(canonical)
    return [] if problem is None else [FieldError(field, problem)]


@lru_cache(maxsize=8192)
def _schema_problem(canonical: str) -> str | None:
    # Checking a schema against its metaschema costs ~0.4 ms even for tiny schemas, and bulk
    # imports repeat the same schemas many times: the verdict is cached by canonical JSON.
    value = json.loads(canonical)
    if not isinstance(value.get("$schema", ""), str):
        # jsonschema's dialect lookup crashes on a non-string "$schema".
        return "is not a valid JSON Schema: $schema must be a URI string"
    try:
        validator = jsonschema.validators.validator_for(
            value, default=jsonschema.Draft202012Validator
        )
        validator.check_schema(value)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        detail = f" at /{where}" if where else ""
        return f"is not a valid JSON Schema{detail}: {exc.message}"
    return None
