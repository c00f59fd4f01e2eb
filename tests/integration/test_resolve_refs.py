"""Routes accept an id or a slug; a UUID-shaped slug is not mistaken for another kind's id."""

from __future__ import annotations

from tests.conftest import tool_body
from tests.integration.test_datasets_api import dataset_body


def test_uuid_shaped_slug_of_a_tool_resolves_even_if_a_dataset_has_that_id(client) -> None:
    dataset = client.post("/api/v1/datasets", json=dataset_body())
    assert dataset.status_code == 201, dataset.text
    dataset_id = dataset.json()["id"]
    tool = client.post("/api/v1/tools", json=tool_body(slug=dataset_id))
    assert tool.status_code == 201, tool.text
    got = client.get(f"/api/v1/tools/{dataset_id}")
    assert got.status_code == 200, got.text
    assert got.json()["id"] == tool.json()["id"]


def test_id_of_another_kind_is_not_found(client) -> None:
    dataset_id = client.post("/api/v1/datasets", json=dataset_body()).json()["id"]
    response = client.get(f"/api/v1/documents/{dataset_id}")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == f"no document with id '{dataset_id}'"
