"""The document command API against a real Postgres."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import tool_body
from tests.integration.test_datasets_api import assert_error, dataset_body

pytestmark = pytest.mark.backends("server", "embedded")

API = "/api/v1/documents"


def doc_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "How orders are counted",
        "content": "# Orders\nOne row per order.",
        "content_type": "text/markdown",
        "metadata": {"author": "jane", "language": "en"},
        "tags": ["sales"],
    }
    body.update(overrides)
    return body


def add(client, **overrides: Any) -> str:
    created = client.post(API, json=doc_body(**overrides))
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def get(client, ref: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"{API}/{ref}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def event_types(client, ref: str) -> list[str]:
    return [e["type"] for e in client.get(f"{API}/{ref}/events").json()["items"]]


def new_tool(client) -> str:
    return str(client.post("/api/v1/tools", json=tool_body()).json()["id"])


def new_dataset(client) -> str:
    return str(client.post("/api/v1/datasets", json=dataset_body()).json()["id"])


def test_add_then_read_back(client) -> None:
    created = client.post(API, json=doc_body(), headers={"X-Request-ID": "req-doc-1"})
    assert created.status_code == 201, created.text
    assert (created.json()["version"], created.headers["etag"]) == (1, '"1"')
    got = get(client, created.json()["id"])
    assert got["document"] == {**doc_body(), "link": None, "deleted": False}
    events = client.get(f"{API}/{got['id']}/events").json()["items"]
    assert [e["type"] for e in events] == ["DocumentAdded"]
    assert events[0]["correlation_id"] == "req-doc-1"


def test_defaults_are_plain_text_with_no_metadata(client) -> None:
    body = {"title": "How orders are counted", "content": "# Orders\nOne row per order."}
    created = client.post(API, json=body)
    assert created.status_code == 201, created.text
    document_id = created.json()["id"]
    assert get(client, document_id)["document"] == {
        "title": "How orders are counted",
        "content": "# Orders\nOne row per order.",
        "content_type": "text/plain",
        "metadata": {},
        "tags": [],
        "link": None,
        "deleted": False,
    }


def test_links_to_existing_tools_and_datasets_are_kept(client) -> None:
    tool_id, dataset_id = new_tool(client), new_dataset(client)
    to_tool = add(client, link={"kind": "tool", "id": tool_id.upper()})
    assert get(client, to_tool)["document"]["link"] == {"kind": "tool", "id": tool_id}
    to_dataset = add(client, link={"kind": "dataset", "id": dataset_id})
    assert get(client, to_dataset)["document"]["link"] == {"kind": "dataset", "id": dataset_id}


def test_link_validation_names_link_id(client) -> None:
    tool_id, dataset_id = new_tool(client), new_dataset(client)
    client.delete(f"/api/v1/datasets/{dataset_id}")
    cases = [
        {"kind": "tool", "id": str(uuid.uuid4())},  # no such aggregate
        {"kind": "dataset", "id": tool_id},  # exists, but is a tool
        {"kind": "tool", "id": dataset_id},  # exists, but is a dataset
        {"kind": "dataset", "id": dataset_id},  # deleted
        {"kind": "tool", "id": "weather-lookup"},  # a slug, not an id
    ]
    for link in cases:
        assert_error(client.post(API, json=doc_body(link=link)), 422, "invalid_input", "link.id")


def test_a_slug_that_looks_like_a_uuid_does_not_satisfy_a_link(client) -> None:
    fake = str(uuid.uuid4())
    assert client.post("/api/v1/tools", json=tool_body(fake)).status_code == 201
    response = client.post(API, json=doc_body(link={"kind": "tool", "id": fake}))
    assert_error(response, 422, "invalid_input", "link.id")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"title": "   "}, "title"),
        ({"content": ""}, "content"),
        ({"content": "x" * 1_000_001}, "content"),
        ({"content_type": "text/html"}, "content_type"),
        ({"metadata": {"licence": "MIT"}}, "metadata.licence"),
        ({"metadata": {"language": "not a language"}}, "metadata.language"),
        ({"link": {"kind": "document", "id": str(uuid.uuid4())}}, "link.kind"),
        ({"tags": ["Bad Tag"]}, "tags[0]"),
        ({"slug": "documents-have-none"}, "slug"),
    ],
)
def test_invalid_documents_are_422_naming_the_field(
    client, overrides: dict[str, Any], field: str
) -> None:
    assert_error(client.post(API, json=doc_body(**overrides)), 422, "invalid_input", field)


def test_content_up_to_a_million_characters_is_stored(client) -> None:
    document_id = add(client, content="é" * 1_000_000)
    assert len(get(client, document_id)["document"]["content"]) == 1_000_000


def test_revise_changes_fields_and_no_op_keeps_the_version(client) -> None:
    document_id = add(client)
    dataset_id = new_dataset(client)
    revision = {
        "content": "Orders are counted once.",
        "metadata": {"source": "https://wiki/orders"},
        "link": {"kind": "dataset", "id": dataset_id},
    }
    revised = client.patch(f"{API}/{document_id}", json=revision)
    assert revised.status_code == 200, revised.text
    assert revised.json()["version"] == 2
    document = get(client, document_id)["document"]
    assert (document["content"], document["metadata"], document["link"]) == (
        revision["content"],
        {"source": "https://wiki/orders"},
        revision["link"],
    )
    same = client.patch(f"{API}/{document_id}", json={"title": document["title"]})
    assert same.json()["version"] == 2
    unlinked = client.patch(f"{API}/{document_id}", json={"link": None})
    assert unlinked.json()["version"] == 3
    assert get(client, document_id)["document"]["link"] is None
    assert event_types(client, document_id) == [
        "DocumentAdded",
        "DocumentRevised",
        "DocumentRevised",
    ]


def test_revise_checks_a_new_link(client) -> None:
    document_id = add(client)
    response = client.patch(
        f"{API}/{document_id}", json={"link": {"kind": "tool", "id": str(uuid.uuid4())}}
    )
    assert_error(response, 422, "invalid_input", "link.id")
    assert_error(
        client.patch(f"{API}/{document_id}", json={"tags": ["x"]}), 422, "invalid_input", "tags"
    )
    assert event_types(client, document_id) == ["DocumentAdded"]


def test_retag_replaces_tags(client) -> None:
    document_id = add(client)
    retagged = client.put(f"{API}/{document_id}/tags", json={"tags": ["ops", "how-to"]})
    assert retagged.json()["version"] == 2
    assert get(client, document_id)["document"]["tags"] == ["how-to", "ops"]
    again = client.put(f"{API}/{document_id}/tags", json={"tags": ["how-to", "ops"]})
    assert again.json()["version"] == 2
    bad = client.put(f"{API}/{document_id}/tags", json={"tags": ["ok", "NOT OK"]})
    assert_error(bad, 422, "invalid_input", "tags[1]")


def test_stale_if_match_is_412_and_expected_version_mismatch_is_409(client) -> None:
    document_id = add(client)
    fresh = client.patch(f"{API}/{document_id}", json={"title": "A"}, headers={"If-Match": '"1"'})
    assert (fresh.status_code, fresh.headers["etag"]) == (200, '"2"')
    stale = client.patch(f"{API}/{document_id}", json={"title": "B"}, headers={"If-Match": '"1"'})
    assert_error(stale, 412, "precondition_failed")
    conflict = client.delete(f"{API}/{document_id}", params={"expected_version": 1})
    assert_error(conflict, 409, "version_conflict")
    assert get(client, document_id)["document"]["title"] == "A"


def test_a_removed_document_refuses_commands_until_restored(client) -> None:
    document_id = add(client)
    assert client.delete(f"{API}/{document_id}").json()["version"] == 2
    assert get(client, document_id)["document"]["deleted"] is True
    refused = [
        client.patch(f"{API}/{document_id}", json={"title": "x"}),
        client.put(f"{API}/{document_id}/tags", json={"tags": []}),
        client.delete(f"{API}/{document_id}"),
    ]
    for response in refused:
        assert_error(response, 409, "illegal_transition")
    assert client.post(f"{API}/{document_id}/restore").json()["version"] == 3
    assert get(client, document_id)["document"]["deleted"] is False
    assert_error(client.post(f"{API}/{document_id}/restore"), 409, "illegal_transition")


def test_unknown_refs_are_404(client) -> None:
    tool_id = new_tool(client)
    for ref in ("not-a-uuid", str(uuid.uuid4()), tool_id):
        assert_error(client.get(f"{API}/{ref}"), 404, "not_found")
        assert_error(client.get(f"{API}/{ref}/events"), 404, "not_found")
        assert_error(client.patch(f"{API}/{ref}", json={"title": "x"}), 404, "not_found")
        assert_error(client.delete(f"{API}/{ref}"), 404, "not_found")


def test_reads_as_of_a_time_and_at_a_version(client) -> None:
    document_id = add(client)
    first = get(client, document_id)
    client.patch(f"{API}/{document_id}", json={"content": "second"})
    client.put(f"{API}/{document_id}/tags", json={"tags": ["later"]})
    at_one = get(client, document_id, at_version=1)["document"]
    assert (at_one["content"], at_one["tags"]) == (doc_body()["content"], ["sales"])
    at_two = get(client, document_id, at_version=2)["document"]
    assert (at_two["content"], at_two["tags"]) == ("second", ["sales"])
    then = get(client, document_id, as_of=first["updated_at"])
    assert (then["version"], then["document"]["content"]) == (1, doc_body()["content"])
    assert get(client, document_id)["document"]["tags"] == ["later"]
    assert_error(client.get(f"{API}/{document_id}", params={"at_version": 4}), 404, "not_found")


def test_audit_trail_records_who_and_why(client) -> None:
    document_id = add(client)
    client.delete(f"{API}/{document_id}", headers={"X-Actor": "carol", "X-Reason": "duplicate"})
    client.post(f"{API}/{document_id}/restore", headers={"X-Actor": "dave"})
    items = client.get(f"{API}/{document_id}/events").json()["items"]
    assert [(e["type"], e["actor"], e["reason"]) for e in items] == [
        ("DocumentAdded", "anonymous", None),
        ("DocumentRemoved", "carol", "duplicate"),
        ("DocumentRestored", "dave", None),
    ]
    assert items[0]["data"]["title"] == doc_body()["title"]
    assert items[0]["position"] < items[1]["position"] < items[2]["position"]
