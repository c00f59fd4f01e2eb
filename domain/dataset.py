"""The Dataset aggregate: where a dataset lives, its columns, its latest profile and lifecycle.

Decisions (`register_dataset`, `describe_dataset`, ...) check invariants against the current
state and return the event to append; `evolve` folds an event into the state. Both are pure.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from domain.errors import FieldError, IllegalTransition, InvalidInput
from domain.events import DomainEvent, EventMeta, stamp
from domain.kinds import AggregateKind
from domain.validation import (
    check_slug,
    check_string,
    check_tag_list,
    normalise_tags,
)

KIND = "dataset"
STATUSES = ("active", "archived")
SOURCE_KINDS = ("postgres_table", "csv", "parquet", "url", "json", "api", "other")
# Fields a DatasetDescribed may change. Columns and profile have their own commands.
DESCRIBABLE = ("name", "description", "tags", "owner", "source")
MAX_COLUMNS = 2000
TEXT_LIMITS = {"name": 200, "description": 2000, "owner": 200}
COLUMN_LIMITS = {"name": 200, "type": 100, "description": 2000}
URI_MAX = 2000
_SOURCE_KEYS = {"kind", "uri"}
_COLUMN_KEYS = {"name", "type", "nullable", "description"}
_PROFILE_KEYS = {"row_count", "columns"}
_STAT_KEYS = ("null_count", "distinct_count", "min", "max")


@dataclass(frozen=True)
class Dataset:
    id: UUID
    aggregate_version: int
    slug: str
    name: str
    description: str
    source: dict[str, str]
    owner: str
    columns: list[dict[str, Any]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    status: str = "active"
    deleted: bool = False

    def fields(self) -> dict[str, Any]:
        """The dataset's data as plain JSON-able values."""
        return {
            "slug": self.slug,
            "name": self.name,
            "description": self.description,
            "source": dict(self.source),
            "columns": [dict(c) for c in self.columns],
            "tags": list(self.tags),
            "owner": self.owner,
            "profile": self.profile,
            "status": self.status,
            "deleted": self.deleted,
        }


@dataclass(frozen=True, kw_only=True)
class DatasetRegistered(DomainEvent):
    slug: str
    name: str
    description: str
    source: dict[str, str]
    columns: list[dict[str, Any]]
    tags: list[str]
    owner: str


@dataclass(frozen=True, kw_only=True)
class DatasetDescribed(DomainEvent):
    changes: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class DatasetColumnsChanged(DomainEvent):
    columns: list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class DatasetProfileRecorded(DomainEvent):
    row_count: int
    columns: dict[str, dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class DatasetArchived(DomainEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class DatasetUnarchived(DomainEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class DatasetDeleted(DomainEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class DatasetRestored(DomainEvent):
    pass


DATASET_EVENTS: tuple[type[DomainEvent], ...] = (
    DatasetRegistered,
    DatasetDescribed,
    DatasetColumnsChanged,
    DatasetProfileRecorded,
    DatasetArchived,
    DatasetUnarchived,
    DatasetDeleted,
    DatasetRestored,
)
# Events that only flip the status or the deleted flag.
_FLAG_CHANGES: dict[type[DomainEvent], dict[str, Any]] = {
    DatasetArchived: {"status": "archived"},
    DatasetUnarchived: {"status": "active"},
    DatasetDeleted: {"deleted": True},
    DatasetRestored: {"deleted": False},
}


def _unknown(data: dict[str, Any], allowed: Iterable[str], where: str) -> list[FieldError]:
    return [
        FieldError(f"{where}{k}", "is not a known field") for k in sorted(set(data) - set(allowed))
    ]


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_scalar(value: Any) -> bool:
    # Non-finite floats are not JSON and would break every later read.
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int | bool)


def _check_source(source: Any) -> list[FieldError]:
    if not isinstance(source, dict):
        return [FieldError("source", "must be an object with kind and uri")]
    errors = _unknown(source, _SOURCE_KEYS, "source.")
    if source.get("kind") not in SOURCE_KINDS:
        errors.append(FieldError("source.kind", f"must be one of {', '.join(SOURCE_KINDS)}"))
    uri_errors = check_string(source.get("uri"), "source.uri", URI_MAX)
    return errors + (uri_errors or _check_no_password(source["uri"]))


def _check_no_password(uri: str) -> list[FieldError]:
    # The registry has no sealing for datasets, so credentials must not reach the event store.
    try:
        has_password = urlsplit(uri).password is not None
    except ValueError:
        has_password = False
    if has_password:
        return [FieldError("source.uri", "must not embed a password; keep credentials elsewhere")]
    return []


def _check_column(column: Any, where: str) -> list[FieldError]:
    if not isinstance(column, dict):
        return [FieldError(where, "must be an object with name and type")]
    errors = _unknown(column, _COLUMN_KEYS, f"{where}.")
    for key in ("name", "type"):
        errors += check_string(column.get(key), f"{where}.{key}", COLUMN_LIMITS[key])
    if not isinstance(column.get("nullable", True), bool):
        errors.append(FieldError(f"{where}.nullable", "must be true or false"))
    if column.get("description") is not None:
        errors += check_string(
            column["description"],
            f"{where}.description",
            COLUMN_LIMITS["description"],
            required=False,
        )
    return errors


def _check_columns(columns: Any) -> list[FieldError]:
    if not isinstance(columns, list):
        return [FieldError("columns", "must be a list of columns")]
    if len(columns) > MAX_COLUMNS:
        return [FieldError("columns", f"at most {MAX_COLUMNS} columns")]
    errors = [e for i, c in enumerate(columns) for e in _check_column(c, f"columns[{i}]")]
    names = [c.get("name") if isinstance(c, dict) else None for c in columns]
    seen = Counter(n for n in names if isinstance(n, str))
    for i, name in enumerate(names):
        if isinstance(name, str) and seen[name] > 1 and names.index(name) != i:
            errors.append(FieldError(f"columns[{i}].name", f"repeats column '{name}'"))
    return errors


def _normalise_columns(columns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": c["name"],
            "type": c["type"],
            "nullable": c.get("nullable", True),
            "description": c.get("description"),
        }
        for c in columns
    ]


def _check_fields(data: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    for name, limit in TEXT_LIMITS.items():
        if name in data:
            errors += check_string(data[name], name, limit)
    if "tags" in data:
        errors += check_tag_list(data["tags"])
    if "source" in data:
        errors += _check_source(data["source"])
    return errors


def register_dataset(dataset_id: UUID, data: dict[str, Any], meta: EventMeta) -> DatasetRegistered:
    slug = data.get("slug")
    errors = check_slug(slug) if isinstance(slug, str) else [FieldError("slug", "is required")]
    errors += _unknown(data, {"slug", "columns", *DESCRIBABLE}, "")
    missing = [k for k in ("name", "description", "owner", "source") if k not in data]
    errors += [FieldError(k, "is required") for k in missing]
    errors += _check_fields(data)
    errors += _check_columns(data.get("columns", []))
    if errors:
        raise InvalidInput(errors)
    return DatasetRegistered(
        **stamp(meta, dataset_id, 1),
        slug=data["slug"],
        name=data["name"],
        description=data["description"],
        source={"kind": data["source"]["kind"], "uri": data["source"]["uri"]},
        columns=_normalise_columns(data.get("columns", [])),
        tags=normalise_tags(data.get("tags") or []),
        owner=data["owner"],
    )


def _require_live(dataset: Dataset) -> None:
    if dataset.deleted:
        raise IllegalTransition(f"dataset {dataset.slug} is deleted; restore it first")


def _next(dataset: Dataset, meta: EventMeta) -> dict[str, Any]:
    return stamp(meta, dataset.id, dataset.aggregate_version + 1)


def describe_dataset(
    dataset: Dataset, data: dict[str, Any], meta: EventMeta
) -> DatasetDescribed | None:
    """Changes the given metadata; returns None when nothing actually changes."""
    _require_live(dataset)
    if "slug" in data and data["slug"] != dataset.slug:
        raise InvalidInput.one("slug", "cannot be changed; register a new dataset instead")
    errors = _unknown(data, {*DESCRIBABLE, "slug"}, "") + _check_fields(data)
    if errors:
        raise InvalidInput(errors)
    given = {k: v for k, v in data.items() if k in DESCRIBABLE}
    if "tags" in given:
        given["tags"] = normalise_tags(given["tags"])
    if "source" in given:
        given["source"] = {"kind": given["source"]["kind"], "uri": given["source"]["uri"]}
    current = dataset.fields()
    changes = {k: v for k, v in given.items() if current[k] != v}
    if not changes:
        return None
    return DatasetDescribed(**_next(dataset, meta), changes=changes)


def change_dataset_columns(
    dataset: Dataset, columns: list[dict[str, Any]], meta: EventMeta
) -> DatasetColumnsChanged | None:
    """Replaces the whole column list; returns None when it is already the same."""
    _require_live(dataset)
    errors = _check_columns(columns)
    if errors:
        raise InvalidInput(errors)
    new = _normalise_columns(columns)
    if new == dataset.columns:
        return None
    return DatasetColumnsChanged(**_next(dataset, meta), columns=new)


def _check_stats(stats: Any, where: str, row_count: int | None) -> list[FieldError]:
    if not isinstance(stats, dict):
        return [FieldError(where, "must be an object of column statistics")]
    errors = _unknown(stats, _STAT_KEYS, f"{where}.")
    for key in ("null_count", "distinct_count"):
        value = stats.get(key)
        if value is not None and not _is_count(value):
            errors.append(FieldError(f"{where}.{key}", "must be an integer >= 0"))
        elif value is not None and row_count is not None and value > row_count:
            errors.append(FieldError(f"{where}.{key}", f"cannot exceed row_count ({row_count})"))
    for key in ("min", "max"):
        if not _is_scalar(stats.get(key)):
            errors.append(FieldError(f"{where}.{key}", "must be a string, number, boolean or null"))
    return errors


def _check_profile(profile: dict[str, Any], column_names: set[str]) -> list[FieldError]:
    errors = _unknown(profile, _PROFILE_KEYS, "")
    row_count = profile.get("row_count")
    if not _is_count(row_count):
        errors.append(FieldError("row_count", "must be an integer >= 0"))
        row_count = None
    stats = profile.get("columns", {})
    if not isinstance(stats, dict):
        return [*errors, FieldError("columns", "must map column names to statistics")]
    for name, column_stats in stats.items():
        if name not in column_names:
            errors.append(FieldError(f"columns.{name}", "is not a column of this dataset"))
        errors += _check_stats(column_stats, f"columns.{name}", row_count)
    return errors


def record_dataset_profile(
    dataset: Dataset, profile: dict[str, Any], meta: EventMeta
) -> DatasetProfileRecorded:
    """Records a new profile. Always an event: profiling again is itself an observation."""
    _require_live(dataset)
    errors = _check_profile(profile, {c["name"] for c in dataset.columns})
    if errors:
        raise InvalidInput(errors)
    stats = {
        name: {k: s.get(k) for k in _STAT_KEYS} for name, s in profile.get("columns", {}).items()
    }
    return DatasetProfileRecorded(
        **_next(dataset, meta), row_count=profile["row_count"], columns=stats
    )


def archive_dataset(dataset: Dataset, meta: EventMeta) -> DatasetArchived:
    _require_live(dataset)
    if dataset.status == "archived":
        raise IllegalTransition(f"dataset {dataset.slug} is already archived")
    return DatasetArchived(**_next(dataset, meta))


def unarchive_dataset(dataset: Dataset, meta: EventMeta) -> DatasetUnarchived:
    _require_live(dataset)
    if dataset.status != "archived":
        raise IllegalTransition(f"dataset {dataset.slug} is not archived")
    return DatasetUnarchived(**_next(dataset, meta))


def delete_dataset(dataset: Dataset, meta: EventMeta) -> DatasetDeleted:
    _require_live(dataset)
    return DatasetDeleted(**_next(dataset, meta))


def restore_dataset(dataset: Dataset, meta: EventMeta) -> DatasetRestored:
    if not dataset.deleted:
        raise IllegalTransition(f"dataset {dataset.slug} is not deleted")
    return DatasetRestored(**_next(dataset, meta))


def _keep_profile_of(
    profile: dict[str, Any] | None, columns: list[dict[str, Any]]
) -> dict[str, Any] | None:
    # A profile may only name existing columns, so dropped columns lose their statistics.
    if profile is None:
        return None
    names = {c["name"] for c in columns}
    kept = {k: v for k, v in profile["columns"].items() if k in names}
    return {"row_count": profile["row_count"], "columns": kept}


def evolve(dataset: Dataset | None, event: DomainEvent) -> Dataset:
    version = event.originator_version
    if isinstance(event, DatasetRegistered):
        return Dataset(id=event.originator_id, aggregate_version=version, **event.payload())
    if dataset is None:
        raise ValueError(f"{event.type_name} before DatasetRegistered for {event.originator_id}")
    return replace(dataset, aggregate_version=version, **_changes(dataset, event))


def _changes(dataset: Dataset, event: DomainEvent) -> dict[str, Any]:
    if isinstance(event, DatasetDescribed):
        return dict(event.changes)
    if isinstance(event, DatasetColumnsChanged):
        return {
            "columns": event.columns,
            "profile": _keep_profile_of(dataset.profile, event.columns),
        }
    if isinstance(event, DatasetProfileRecorded):
        return {"profile": event.payload()}
    if type(event) in _FLAG_CHANGES:
        return _FLAG_CHANGES[type(event)]
    raise TypeError(f"not a dataset event: {event.type_name}")


def replay(events: Iterable[DomainEvent]) -> Dataset | None:
    dataset: Dataset | None = None
    for event in events:
        dataset = evolve(dataset, event)
    return dataset


AGGREGATE: AggregateKind[Dataset] = AggregateKind(KIND, Dataset, DATASET_EVENTS, evolve, replay)
