"""The dataset command API against a real Postgres."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import tool_body

pytestmark = pytest.mark.backends("server", "embedded")

API = "/api/v1/datasets"


def dataset_body(slug: str | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "slug": slug or f"ds-{uuid.uuid4().hex[:12]}",
        "name": "Sales orders",
        "description": "One row per order",
        "source": {"kind": "postgres_table", "uri": "postgresql://wh/sales?table=orders"},
        "columns": [
            {"name": "order_id", "type": "bigint", "nullable": False},
            {"name": "amount", "type": "numeric", "description": "EUR"},
        ],
        "tags": ["sales"],
        "owner": "data-platform",
    }
    body.update(overrides)
    return body


def register(client, **overrides: Any) -> tuple[str, str]:
    body = dataset_body(**overrides)
    created = client.post(API, json=body)
    assert created.status_code == 201, created.text
    return created.json()["id"], body["slug"]


def get(client, ref: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"{API}/{ref}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def event_types(client, ref: str) -> list[str]:
    return [e["type"] for e in client.get(f"{API}/{ref}/events").json()["items"]]


def assert_error(response, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert "request_id" in error
    if field is not None:
        assert field in [d["field"] for d in error["details"]], error


def test_register_then_read_back_by_slug_and_id(client) -> None:
    body = dataset_body()
    created = client.post(API, json=body, headers={"X-Request-ID": "req-ds-1"})
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    assert created.headers["etag"] == '"1"'
    by_slug = get(client, body["slug"])
    by_id = get(client, created.json()["id"])
    assert by_slug == by_id
    dataset = by_slug["dataset"]
    assert dataset["source"] == body["source"]
    assert dataset["columns"] == [
        {"name": "order_id", "type": "bigint", "nullable": False, "description": None},
        {"name": "amount", "type": "numeric", "nullable": True, "description": "EUR"},
    ]
    assert (dataset["status"], dataset["deleted"], dataset["profile"]) == ("active", False, None)
    events = client.get(f"{API}/{body['slug']}/events").json()["items"]
    assert [e["type"] for e in events] == ["DatasetRegistered"]
    assert events[0]["correlation_id"] == "req-ds-1"


def test_second_registration_of_a_slug_conflicts(client) -> None:
    body = dataset_body()
    assert client.post(API, json=body).status_code == 201
    again = client.post(API, json={**body, "name": "Another"})
    assert_error(again, 409, "slug_taken")
    assert get(client, body["slug"])["dataset"]["name"] == "Sales orders"


def test_slugs_are_unique_per_kind_not_across_kinds(client) -> None:
    slug = f"shared-{uuid.uuid4().hex[:8]}"
    assert client.post("/api/v1/tools", json=tool_body(slug)).status_code == 201
    dataset_id, _ = register(client, slug=slug)
    assert get(client, slug)["id"] == dataset_id
    assert client.get(f"/api/v1/tools/{slug}").json()["id"] != dataset_id


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"slug": "Bad Slug"}, "slug"),
        ({"source": {"kind": "ftp", "uri": "ftp://x"}}, "source.kind"),
        ({"source": {"kind": "url", "uri": "https://u:secret@host/x.csv"}}, "source.uri"),
        (
            {"columns": [{"name": "a", "type": "int"}, {"name": "a", "type": "text"}]},
            "columns[1].name",
        ),
        ({"columns": [{"name": "a"}]}, "columns.0.type"),
        ({"tags": ["Bad Tag"]}, "tags[0]"),
        ({"owner": ""}, "owner"),
        ({"status": "archived"}, "status"),
    ],
)
def test_invalid_registrations_are_422_naming_the_field(
    client, overrides: dict[str, Any], field: str
) -> None:
    body = dataset_body(**overrides)
    assert_error(client.post(API, json=body), 422, "invalid_input", field)
    assert client.get(f"{API}/{body['slug']}").status_code == 404


def test_a_refused_registration_stores_nothing(client) -> None:
    body = dataset_body(owner="  ")
    assert client.post(API, json=body).status_code == 422
    assert_error(client.get(f"{API}/{body['slug']}"), 404, "not_found")


def test_describe_changes_metadata_and_no_op_keeps_the_version(client) -> None:
    _, slug = register(client)
    source = {"kind": "parquet", "uri": "s3://lake/orders/"}
    patched = client.patch(f"{API}/{slug}", json={"name": "Orders", "source": source})
    assert patched.status_code == 200, patched.text
    assert patched.json()["version"] == 2
    dataset = get(client, slug)["dataset"]
    assert (dataset["name"], dataset["source"]) == ("Orders", source)
    same = client.patch(f"{API}/{slug}", json={"name": "Orders", "tags": ["sales"]})
    assert same.status_code == 200
    assert same.json()["version"] == 2
    assert same.json()["position"] == patched.json()["position"]
    assert event_types(client, slug) == ["DatasetRegistered", "DatasetDescribed"]


def test_describe_refuses_slug_changes_and_unknown_fields(client) -> None:
    _, slug = register(client)
    assert_error(client.patch(f"{API}/{slug}", json={"slug": "x"}), 422, "invalid_input", "slug")
    assert_error(
        client.patch(f"{API}/{slug}", json={"columns": []}), 422, "invalid_input", "columns"
    )
    assert event_types(client, slug) == ["DatasetRegistered"]


def test_stale_if_match_is_412_and_expected_version_mismatch_is_409(client) -> None:
    _, slug = register(client)
    ok = client.patch(f"{API}/{slug}", json={"owner": "a"}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200
    assert ok.headers["etag"] == '"2"'
    stale = client.patch(f"{API}/{slug}", json={"owner": "b"}, headers={"If-Match": '"1"'})
    assert_error(stale, 412, "precondition_failed")
    conflict = client.post(f"{API}/{slug}/archive", params={"expected_version": 1})
    assert_error(conflict, 409, "version_conflict")
    assert get(client, slug)["dataset"]["owner"] == "a"


def test_columns_are_replaced_and_profile_keeps_only_existing_columns(client) -> None:
    _, slug = register(client)
    profile = {
        "row_count": 100,
        "columns": {
            "order_id": {"null_count": 0, "distinct_count": 100, "min": 1, "max": 100},
            "amount": {"null_count": 3, "min": 0.5, "max": 999.99},
        },
    }
    recorded = client.post(f"{API}/{slug}/profile", json=profile)
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["version"] == 2
    stored = get(client, slug)["dataset"]["profile"]
    assert stored["row_count"] == 100
    assert stored["columns"]["amount"] == {
        "null_count": 3,
        "distinct_count": None,
        "min": 0.5,
        "max": 999.99,
    }
    columns = [{"name": "order_id", "type": "uuid", "nullable": False}]
    changed = client.put(f"{API}/{slug}/columns", json={"columns": columns})
    assert changed.json()["version"] == 3
    dataset = get(client, slug)["dataset"]
    assert [c["name"] for c in dataset["columns"]] == ["order_id"]
    assert set(dataset["profile"]["columns"]) == {"order_id"}
    again = client.put(f"{API}/{slug}/columns", json={"columns": columns})
    assert again.json()["version"] == 3


@pytest.mark.parametrize(
    ("profile", "field"),
    [
        ({"row_count": 5, "columns": {"ghost": {"null_count": 0}}}, "columns.ghost"),
        ({"row_count": 5, "columns": {"amount": {"null_count": 9}}}, "columns.amount.null_count"),
        ({"row_count": -1}, "row_count"),
        ({"row_count": 5, "columns": {"amount": {"mean": 2}}}, "columns.amount.mean"),
    ],
)
def test_invalid_profiles_are_422(client, profile: dict[str, Any], field: str) -> None:
    _, slug = register(client)
    response = client.post(f"{API}/{slug}/profile", json=profile)
    assert_error(response, 422, "invalid_input", field)
    assert get(client, slug)["dataset"]["profile"] is None


def test_duplicate_column_names_on_put_are_422(client) -> None:
    _, slug = register(client)
    columns = [{"name": "a", "type": "int"}, {"name": "a", "type": "int"}]
    response = client.put(f"{API}/{slug}/columns", json={"columns": columns})
    assert_error(response, 422, "invalid_input", "columns[1].name")


def test_archive_and_unarchive(client) -> None:
    _, slug = register(client)
    assert client.post(f"{API}/{slug}/archive").json()["version"] == 2
    assert get(client, slug)["dataset"]["status"] == "archived"
    assert_error(client.post(f"{API}/{slug}/archive"), 409, "illegal_transition")
    assert client.post(f"{API}/{slug}/unarchive").json()["version"] == 3
    assert get(client, slug)["dataset"]["status"] == "active"
    assert_error(client.post(f"{API}/{slug}/unarchive"), 409, "illegal_transition")


def test_a_deleted_dataset_refuses_commands_until_restored(client) -> None:
    _, slug = register(client)
    assert client.delete(f"{API}/{slug}").json()["version"] == 2
    assert get(client, slug)["dataset"]["deleted"] is True
    refused = [
        client.patch(f"{API}/{slug}", json={"name": "x"}),
        client.put(f"{API}/{slug}/columns", json={"columns": []}),
        client.post(f"{API}/{slug}/profile", json={"row_count": 1}),
        client.post(f"{API}/{slug}/archive"),
        client.post(f"{API}/{slug}/unarchive"),
        client.delete(f"{API}/{slug}"),
    ]
    for response in refused:
        assert_error(response, 409, "illegal_transition")
    # The slug stays claimed while the dataset is deleted.
    assert_error(client.post(API, json=dataset_body(slug)), 409, "slug_taken")
    assert client.post(f"{API}/{slug}/restore").json()["version"] == 3
    assert get(client, slug)["dataset"]["deleted"] is False
    assert_error(client.post(f"{API}/{slug}/restore"), 409, "illegal_transition")


def test_unknown_refs_are_404(client) -> None:
    tool = client.post("/api/v1/tools", json=tool_body()).json()
    for ref in ("no-such-dataset", str(uuid.uuid4()), tool["id"]):
        assert_error(client.get(f"{API}/{ref}"), 404, "not_found")
        assert_error(client.get(f"{API}/{ref}/events"), 404, "not_found")
        assert_error(client.post(f"{API}/{ref}/archive"), 404, "not_found")
        assert_error(client.patch(f"{API}/{ref}", json={"name": "x"}), 404, "not_found")


def test_reads_as_of_a_time_and_at_a_version(client) -> None:
    _, slug = register(client)
    first = get(client, slug)
    client.patch(f"{API}/{slug}", json={"name": "Renamed"})
    client.post(f"{API}/{slug}/archive")
    assert get(client, slug, at_version=1)["dataset"]["name"] == "Sales orders"
    at_two = get(client, slug, at_version=2)
    assert (at_two["version"], at_two["dataset"]["name"]) == (2, "Renamed")
    assert at_two["dataset"]["status"] == "active"
    then = get(client, slug, as_of=first["updated_at"])
    assert (then["version"], then["dataset"]["name"]) == (1, "Sales orders")
    now = get(client, slug)
    assert (now["version"], now["dataset"]["status"]) == (3, "archived")
    assert_error(client.get(f"{API}/{slug}", params={"at_version": 9}), 404, "not_found")
    before = client.get(f"{API}/{slug}", params={"as_of": "2000-01-01T00:00:00Z"})
    assert_error(before, 404, "not_found")


def test_audit_trail_records_who_why_and_pages(client) -> None:
    _, slug = register(client)
    headers = {"X-Actor": "bob", "X-Reason": "retired source"}
    client.post(f"{API}/{slug}/archive", headers=headers)
    client.delete(f"{API}/{slug}", headers=headers)
    client.post(f"{API}/{slug}/restore")
    assert event_types(client, slug) == [
        "DatasetRegistered",
        "DatasetArchived",
        "DatasetDeleted",
        "DatasetRestored",
    ]
    page = client.get(f"{API}/{slug}/events", params={"after_version": 1, "limit": 2}).json()
    assert [(e["version"], e["actor"], e["reason"]) for e in page["items"]] == [
        (2, "bob", "retired source"),
        (3, "bob", "retired source"),
    ]
    assert page["next_after_version"] == 3
    rest = client.get(f"{API}/{slug}/events", params={"after_version": 3}).json()
    assert [e["type"] for e in rest["items"]] == ["DatasetRestored"]
    assert rest["next_after_version"] is None


def test_idempotency_key_returns_the_first_result(client) -> None:
    body = dataset_body()
    headers = {"Idempotency-Key": f"ds-{uuid.uuid4()}"}
    first = client.post(API, json=body, headers=headers)
    retry = client.post(API, json=body, headers=headers)
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    other = client.post(API, json=dataset_body(), headers=headers)
    assert_error(other, 409, "idempotency_key_reused")
