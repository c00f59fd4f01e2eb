"""Search against the real pipeline: Postgres, the current-state projection, the vector indexer
with the real MiniLM model and an embedded Qdrant (the session app owns it), and the API.

The session client reads its own writes: each GET waits (bounded) for the read models and the
vector index to reach the store's last position, so every search here sees every prior write;
a vector index that did not catch up shows as a warning, which the tests assert is absent."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import tool_body

pytestmark = pytest.mark.backends("server", "embedded")

SEARCH = "/api/v1/search"


def search(client: Any, q: str, **params: Any) -> dict[str, Any]:
    response = client.get(SEARCH, params={"q": q, **params})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["warnings"] == [], body["warnings"]
    return body


def slugs(body: dict[str, Any]) -> list[str | None]:
    return [item["slug"] for item in body["items"]]


def register(client: Any, tag: str, **overrides: Any) -> dict[str, Any]:
    body = tool_body(tags=[tag], status="active", **overrides)
    created = client.post("/api/v1/tools", json=body)
    assert created.status_code == 201, created.text
    return {**created.json(), "slug": body["slug"]}


def tag() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


WEATHER = {
    "name": "Forecast reader",
    "description": "Tomorrow's temperature, rain and wind for any city",
    "category": "weather",
}
CURRENCY = {
    "name": "Money converter",
    "description": "Converts an amount from one currency to another at the latest exchange rate",
    "category": "finance",
}


def test_a_registered_tool_is_found_by_meaning(client) -> None:
    t = tag()
    tool = register(client, t, **WEATHER)
    register(client, t, **CURRENCY)
    body = search(client, "will it be sunny in Lisbon tomorrow", tag=t)
    assert body["mode"] == "hybrid"
    assert slugs(body)[0] == tool["slug"]
    hit = body["items"][0]
    assert (hit["kind"], hit["id"], hit["version"]) == ("tool", tool["id"], 1)
    assert hit["name"] == WEATHER["name"]
    vector = search(client, "will it be sunny in Lisbon tomorrow", tag=t, mode="vector")
    assert vector["mode"] == "vector"
    assert slugs(vector)[0] == tool["slug"]


def test_parameters_and_long_description_are_searchable(client) -> None:
    t = tag()
    tool = register(
        client,
        t,
        long_description="Backed by the quarzwerk telemetry archive.",
        input_schema={
            "type": "object",
            "properties": {"vessel_imo": {"type": "string", "description": "ship identifier"}},
        },
    )
    assert slugs(search(client, "quarzwerk", tag=t, mode="lexical")) == [tool["slug"]]
    assert slugs(search(client, "vessel_imo", tag=t, mode="lexical")) == [tool["slug"]]


def test_a_revision_replaces_the_indexed_text(client) -> None:
    t = tag()
    tool = register(client, t, **{**WEATHER, "description": WEATHER["description"] + " (zorblax)"})
    assert slugs(search(client, "zorblax", tag=t, mode="lexical")) == [tool["slug"]]
    assert slugs(search(client, "weather forecast", tag=t, mode="vector", min_score=0.3)) == [
        tool["slug"]
    ]
    patched = client.patch(f"/api/v1/tools/{tool['id']}", json=CURRENCY)
    assert patched.status_code == 200, patched.text
    assert slugs(search(client, "zorblax", tag=t, mode="lexical")) == []
    assert slugs(search(client, "weather forecast", tag=t, mode="vector", min_score=0.3)) == []
    now = search(client, "convert euros to dollars", tag=t, mode="vector", min_score=0.3)
    assert slugs(now) == [tool["slug"]]
    assert now["items"][0]["version"] == 2


def test_delete_removes_the_points_and_restore_brings_them_back(client, container) -> None:
    t = tag()
    tool = register(client, t, **WEATHER)
    parts = container.search_parts()
    collection = parts.indexer.generation.collection("tool")
    assert client.delete(f"/api/v1/tools/{tool['id']}").status_code == 200
    for mode in ("hybrid", "vector", "lexical"):
        assert search(client, "rain and wind in a city", tag=t, mode=mode)["items"] == []
    assert parts.store.points_of(collection, [tool["id"]]) == []
    deleted = search(client, "rain and wind", tag=t, include_deleted=True, mode="lexical")
    assert slugs(deleted) == [tool["slug"]]
    assert client.post(f"/api/v1/tools/{tool['id']}/restore").status_code == 200
    assert slugs(search(client, "rain and wind in a city", tag=t, mode="vector")) == [tool["slug"]]
    assert len(parts.store.points_of(collection, [tool["id"]])) == 1


def test_filters_are_applied_in_both_rankings(client) -> None:
    t = tag()
    weather = register(client, t, **WEATHER, author="team-a")
    money = register(client, t, **CURRENCY, author="team-b")
    retired = register(client, t, **{**WEATHER, "name": "Old forecast reader"})
    assert client.post(f"/api/v1/tools/{retired['id']}/deprecate").status_code == 200
    q = "forecast for a city"
    for mode in ("hybrid", "vector", "lexical"):
        assert retired["slug"] not in slugs(search(client, q, tag=t, mode=mode))
        assert set(slugs(search(client, q, tag=t, mode=mode, include_deprecated=True))) >= {
            retired["slug"]
        }
        assert slugs(search(client, q, tag=t, mode=mode, status="deprecated")) == [retired["slug"]]
        assert set(slugs(search(client, "money", tag=t, mode=mode, category="finance"))) <= {
            money["slug"]
        }
        assert set(slugs(search(client, q, tag=t, mode=mode, owner="team-a"))) <= {weather["slug"]}
    assert search(client, q, tag=[t, "no-such-tag"])["items"] == []


DOC = """Intro to the payments runbook.

# Refunds

A refund returns money to the customer's card. Refunds over 500 EUR need a second approver.

# Chargebacks

A chargeback is a dispute opened by the card issuer. Upload evidence within seven days.
"""


def test_documents_are_chunked_and_the_matching_chunk_is_returned(client, container) -> None:
    t = tag()
    created = client.post(
        "/api/v1/documents",
        json={"title": "Payments runbook", "content": DOC, "content_type": "text/markdown",
              "tags": [t]},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    doc_id = created.json()["id"]
    body = search(client, "the bank disputes a card payment", kind="document", tag=t)
    hit = body["items"][0]
    assert (hit["kind"], hit["id"], hit["slug"]) == ("document", doc_id, None)
    assert hit["chunk"]["heading"] == "Chargebacks"
    assert "evidence" in hit["chunk"]["text"]
    parts = container.search_parts()
    collection = parts.indexer.generation.collection("document")
    assert len(parts.store.points_of(collection, [doc_id])) == 3
    revised = client.patch(f"/api/v1/documents/{doc_id}", json={"content": "Nothing left."})
    assert revised.status_code == 200, revised.text
    search(client, "anything", kind="document", tag=t)  # waits for the index
    points = parts.store.points_of(collection, [doc_id])
    assert [p.payload["chunk"] for p in points] == [0]
    assert points[0].payload["version"] == 2


def test_datasets_are_found_by_their_columns(client) -> None:
    t = tag()
    created = client.post(
        "/api/v1/datasets",
        json={
            "slug": f"ds-{uuid.uuid4().hex[:8]}", "name": "Orders", "description": "Sales",
            "source": {"kind": "postgres_table", "uri": "postgresql://wh/sales?table=orders"},
            "columns": [{"name": "shipped_at", "type": "timestamptz",
                         "description": "when the parcel left the warehouse"}],
            "tags": [t], "owner": "data",
        },
    )  # fmt: skip
    assert created.status_code == 201, created.text
    body = search(client, "when did the package leave the depot", kind="dataset", tag=t)
    assert [i["id"] for i in body["items"]] == [created.json()["id"]]
    assert body["items"][0]["kind"] == "dataset"


def test_rebuild_gives_the_same_top_results(client, container) -> None:
    t = tag()
    for spec in (WEATHER, CURRENCY, {**WEATHER, "name": "Storm alerts"}):
        register(client, t, **spec)
    queries = ["rain tomorrow", "exchange rate", "severe weather warning", "city wind"]
    before = [slugs(search(client, q, tag=t)) for q in queries]
    indexer = container.search_parts().indexer
    old = indexer.generation
    generation, count = indexer.rebuild()
    assert generation != old
    with container.read_side.connection() as conn:
        from projections.vector_index import live_units

        assert count == live_units(conn)
    assert [slugs(search(client, q, tag=t)) for q in queries] == before


@pytest.mark.parametrize(
    ("params", "field"),
    [({}, "q"), ({"q": ""}, "q"), ({"q": "x", "limit": 0}, "limit"),
     ({"q": "x", "kind": "widget"}, "kind"), ({"q": "x", "min_score": 2}, "min_score")],
)  # fmt: skip
def test_bad_search_parameters_are_named(client, params, field) -> None:
    response = client.get(SEARCH, params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert any(field in d["field"] for d in error["details"]), error


def test_search_degrades_to_lexical_when_the_model_is_unreachable(client, container) -> None:
    from infra.search.embeddings import HttpEmbedder
    from projections.search import Searcher
    from projections.search_types import SearchRequest

    t = tag()
    tool = register(client, t, **CURRENCY)
    search(client, "currency", tag=t)  # the read models have it
    broken = HttpEmbedder("http://127.0.0.1:9", "m", dimension=384, retries=0, timeout=1)
    store = container.search_parts().store
    with container.read_side.connection() as conn:
        result = Searcher(broken, store).search(conn, SearchRequest(q="currency", tags=(t,)))
    assert result.mode == "lexical"
    assert [h.slug for h in result.items] == [tool["slug"]]
    assert "vector search unavailable" in result.warnings[0]


def test_similar_tools_are_the_nearest_by_the_tools_own_vector(client) -> None:
    t = tag()
    forecast = register(client, t, **WEATHER)
    rain = register(
        client, t, name="Rain radar", description="Where it is raining now and in the next hour",
        category="weather",
    )  # fmt: skip
    register(client, t, name="Card refund", description="Refund a card payment", category="money")
    url = f"/api/v1/tools/{forecast['slug']}/similar"
    answer = client.get(url, params={"tag": t, "min_position": rain["position"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["mode"] == "vector"
    found = slugs(body)
    assert forecast["slug"] not in found  # never itself
    assert found[0] == rain["slug"]
    only = client.get(url, params={"tag": t, "category": "money", "min_position": rain["position"]})
    assert [i["category"] for i in only.json()["items"]] == ["money"]
    missing = client.get("/api/v1/tools/no-such-tool/similar")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
