"""Shared by the tool property tests: hypothesis strategies for valid (and broken) tool input, and
an independent model of what the write side must do with each command.

The model is written from the requirements (DESIGN.md §3), not from the domain code: a command is
accepted (one new event), changes nothing (no event), or is refused (no event, a named error).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import semver
from hypothesis import strategies as st

# ---------------------------------------------------------------------------------------------
# Strategies for valid input
# ---------------------------------------------------------------------------------------------

# Independent of domain.secrets on purpose: anything that might look like a secret is avoided, so
# the property tests can compare config values in clear.
_MAYBE_SECRET = re.compile(r"pass|secret|token|api[_-]?key|private[_-]?key|credential", re.I)

slug_core = st.from_regex(r"[a-z0-9][a-z0-9-]{0,40}", fullmatch=True)


def unique(slug: str) -> str:
    """A slug made unique within the session (the database is shared by every test)."""
    return f"{slug}-{uuid.uuid4().hex[:16]}"


unique_slugs = slug_core.map(unique)


# Any Unicode but NUL: Postgres text and jsonb cannot hold U+0000, so the API refuses it and the
# read models could not store it (the handlers, which these tests also drive, do not check).
CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")


def text(max_size: int) -> st.SearchStrategy[str]:
    """Non-blank text of at most `max_size` characters (any Unicode but NUL, with control chars)."""
    return st.text(CHARS, max_size=max_size - 1).map(lambda s: s if s.strip() else "x" + s)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(CHARS, max_size=20)
)
plain_keys = st.text(CHARS, max_size=12).filter(
    lambda k: not _MAYBE_SECRET.search(k) and k != "$sealed"
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(plain_keys, inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(plain_keys, json_values, max_size=4)

SCHEMA_TYPES = ["string", "integer", "number", "boolean", "array", "object", "null"]
_property_schemas = st.fixed_dictionaries(
    {"type": st.sampled_from(SCHEMA_TYPES)},
    optional={"description": st.text(CHARS, max_size=30), "title": st.text(CHARS, max_size=10)},
)


@st.composite
def json_schemas(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        return draw(st.sampled_from([{}, {"type": "object"}, {"type": "string", "minLength": 1}]))
    props = draw(
        st.dictionaries(st.text(CHARS, min_size=1, max_size=12), _property_schemas, max_size=4)
    )
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if props and draw(st.booleans()):
        schema["required"] = sorted(props)[: draw(st.integers(1, len(props)))]
    if draw(st.booleans()):
        schema["additionalProperties"] = draw(st.booleans())
    return schema


semvers = st.builds(
    lambda major, minor, patch, pre, build: (
        f"{major}.{minor}.{patch}" + (f"-{pre}" if pre else "") + (f"+{build}" if build else "")
    ),
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(0, 3),
    st.sampled_from(["", "", "", "alpha", "alpha.1", "rc.1"]),
    st.sampled_from(["", "", "", "", "build.7"]),
)
tag_lists = st.lists(
    st.from_regex(r"[a-z0-9][a-z0-9_.:-]{0,15}", fullmatch=True), max_size=5, unique=True
)


@st.composite
def tool_bodies(draw: st.DrawFn, slugs: st.SearchStrategy[str] = unique_slugs) -> dict[str, Any]:
    """A valid registration body; optional fields present or absent."""
    body: dict[str, Any] = {
        "slug": draw(slugs),
        "name": draw(text(200)),
        "description": draw(text(2000)),
        "category": draw(text(100)),
        "input_schema": draw(json_schemas()),
        "version": draw(semvers),
        "author": draw(text(200)),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "long_description": st.none() | text(500),
        "tags": tag_lists,
        "examples": st.lists(json_objects, max_size=2),
        "output_schema": st.none() | json_schemas(),
        "config": json_objects,
        "status": st.sampled_from(["draft", "active"]),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            body[name] = draw(strategy)
    return body


# Changes a PATCH may carry: valid values; versions may go backwards (the domain must refuse them).
update_changes = st.fixed_dictionaries(
    {},
    optional={
        "name": text(200),
        "description": text(2000),
        "long_description": st.none() | text(200),
        "category": text(100),
        "tags": tag_lists,
        "examples": st.lists(json_objects, max_size=2),
        "input_schema": json_schemas(),
        "output_schema": st.none() | json_schemas(),
        "version": semvers,
        "author": text(200),
        "config": json_objects,
    },
)

commands = st.one_of(
    update_changes.map(lambda c: ("update", c)),
    st.sampled_from([("activate", None), ("deprecate", None), ("delete", None), ("restore", None)]),
)

# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------

ACCEPTED, NO_CHANGE, REFUSED = "accepted", "no_change", "refused"


@dataclass(frozen=True)
class Outcome:
    kind: str  # ACCEPTED, NO_CHANGE or REFUSED
    code: str | None = None  # for REFUSED: invalid_input or illegal_transition
    field: str | None = None  # for REFUSED invalid_input: the offending field


@dataclass
class ToolModel:
    """What a tool must look like after each command, and the history of its states."""

    fields: dict[str, Any]
    version: int = 1
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def registered(cls, body: dict[str, Any]) -> ToolModel:
        fields = {
            "slug": body["slug"],
            "name": body["name"],
            "description": body["description"],
            "long_description": body.get("long_description"),
            "category": body["category"],
            "tags": sorted(set(body.get("tags") or [])),
            "examples": list(body.get("examples") or []),
            "input_schema": body["input_schema"],
            "output_schema": body.get("output_schema"),
            "version": body["version"],
            "author": body["author"],
            "config": dict(body.get("config") or {}),
            "sensitive_keys": [],
            "status": body.get("status", "draft"),
            "deleted": False,
        }
        model = cls(fields)
        model.history.append(dict(fields))
        return model

    def apply(self, name: str, arg: Any) -> Outcome:
        outcome = self._decide(name, arg)
        if outcome.kind == ACCEPTED:
            self.version += 1
            self.history.append(dict(self.fields))
        return outcome

    def _decide(self, name: str, arg: Any) -> Outcome:
        f = self.fields
        if name == "restore":
            if not f["deleted"]:
                return Outcome(REFUSED, "illegal_transition")
            f["deleted"] = False
            return Outcome(ACCEPTED)
        if f["deleted"]:
            return Outcome(REFUSED, "illegal_transition")
        if name == "delete":
            f["deleted"] = True
            return Outcome(ACCEPTED)
        if name == "activate":
            if f["status"] == "active":
                return Outcome(REFUSED, "illegal_transition")
            f["status"] = "active"
            return Outcome(ACCEPTED)
        if name == "deprecate":
            if f["status"] != "active":
                return Outcome(REFUSED, "illegal_transition")
            f["status"] = "deprecated"
            return Outcome(ACCEPTED)
        assert name == "update", name
        wanted = {k: (sorted(set(v)) if k == "tags" else v) for k, v in arg.items()}
        effective = {k: v for k, v in wanted.items() if f[k] != v}
        if "version" in effective and semver.Version.parse(effective["version"]) <= (
            semver.Version.parse(f["version"])
        ):
            return Outcome(REFUSED, "invalid_input", "version")
        if not effective:
            return Outcome(NO_CHANGE)
        f.update(effective)
        return Outcome(ACCEPTED)


# ---------------------------------------------------------------------------------------------
# Broken input: (field named in the error, how to break a valid body)
# ---------------------------------------------------------------------------------------------

BAD_SLUGS = ["", "-leading-dash", "Upper", "with space", "under_score", "a" * 64, "ünï", "a/b"]
BAD_SCHEMAS: list[Any] = [
    {"type": "no-such-type"},
    {"properties": 5},
    {"required": "city"},
    {"type": "string", "pattern": "["},
    {"minLength": -1},
    {"$schema": []},
    {"$schema": 5},
    {"$schema": {"nested": True}},
]
BLANKS = ["", " ", "\t\n", "\u3000"]


@st.composite
def broken_bodies(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A registration body with exactly one bad field, and the field the error must name."""
    body = draw(tool_bodies())
    what = draw(
        st.sampled_from(
            [
                "slug",
                "name",
                "description",
                "category",
                "author",
                "name_too_long",
                "version",
                "input_schema",
                "output_schema",
                "tag",
                "tags_repeat",
                "status",
                "missing",
                "unknown_field",
            ]
        )
    )
    if what == "slug":
        body["slug"] = draw(st.sampled_from(BAD_SLUGS))
        return "slug", body
    if what in ("name", "description", "category", "author"):
        body[what] = draw(st.sampled_from(BLANKS))
        return what, body
    if what == "name_too_long":
        body["name"] = "n" * 201
        return "name", body
    if what == "version":
        body["version"] = draw(st.sampled_from(["1", "1.0", "v1.0.0", "01.0.0", "1.0.0.0", "x"]))
        return "version", body
    if what in ("input_schema", "output_schema"):
        body[what] = draw(st.sampled_from(BAD_SCHEMAS))
        return what, body
    if what == "tag":
        tags = draw(tag_lists)
        at = draw(st.integers(0, len(tags)))
        tags.insert(at, draw(st.sampled_from(["Bad", "-x", "with space", "t" * 65, ""])))
        body["tags"] = tags
        return f"tags[{at}]", body
    if what == "tags_repeat":
        body["tags"] = ["same", "other", "same"]
        return "tags", body
    if what == "status":
        body["status"] = draw(st.sampled_from(["deprecated", "deleted", "ACTIVE"]))
        return "status", body
    if what == "missing":
        # (a missing author is not an error: it defaults to who registers the tool)
        name = draw(st.sampled_from(["slug", "name", "input_schema", "version"]))
        del body[name]
        return name, body
    body["no_such_field"] = 1
    return "no_such_field", body


def names_field(details: list[dict[str, Any]], wanted: str) -> bool:
    """True when an error detail names `wanted` (or something inside it, e.g. `input_schema.x`)."""
    return any(
        d["field"] == wanted or d["field"].startswith((wanted + ".", wanted + "[")) for d in details
    )
