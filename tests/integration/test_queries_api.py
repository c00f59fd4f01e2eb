"""The query API over the read models (real Postgres): lists with filters and keyset pages,
versions and diffs from the history, time travel that agrees with a replay of the store, and
read-your-writes with `min_position`."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import jsonpatch
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from commands.audit import state_of
from commands.datasets import DATASET
from commands.documents import DOCUMENT
from commands.tools import TOOL
from domain.secrets import redact_sealed
from projections.positions import applied_position
from tests.conftest import tool_body
from tests.integration.test_datasets_api import assert_error, dataset_body
from tests.integration.test_documents_api import doc_body

pytestmark = pytest.mark.backends("server", "embedded")

TOOLS, DATASETS, DOCUMENTS = "/api/v1/tools", "/api/v1/datasets", "/api/v1/documents"


def word() -> str:
    """A unique word of letters only (one token for the full-text search)."""
    return "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:12])


def post(client, path: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    answer = client.post(path, json=body, **kwargs)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def ok(client, path: str, **params: Any) -> dict[str, Any]:
    answer = client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def ids(client, path: str, **params: Any) -> list[str]:
    return [i["id"] for i in ok(client, path, **params)["items"]]


def applied_now(container) -> int:  # type: ignore[no-untyped-def]
    with container.read_side.connection() as conn:
        return applied_position(conn)


def app_with(container, **settings: Any):  # type: ignore[no-untyped-def]
    """The app over the same database with other settings (e.g. a shorter read wait)."""
    changed = container.settings.model_copy(update=settings)
    return create_app(dataclasses.replace(container, settings=changed))


# --- filters ------------------------------------------------------------------------------------


def test_tool_filters_each_narrow_the_list(client) -> None:
    tag, other, cat = word(), word(), word()
    a = post(client, TOOLS, tool_body(category=cat, tags=[tag, other], status="active"))["id"]
    b = post(client, TOOLS, tool_body(category=cat, tags=[tag]))["id"]
    c = post(client, TOOLS, tool_body(tags=[tag, other]))["id"]
    assert set(ids(client, TOOLS, tag=tag)) == {a, b, c}
    assert set(ids(client, TOOLS, tag=[tag, other])) == {a, c}
    assert set(ids(client, TOOLS, tag=tag, category=cat)) == {a, b}
    assert ids(client, TOOLS, tag=tag, status="active") == [a]
    assert set(ids(client, TOOLS, tag=tag, status="draft")) == {b, c}
    assert ids(client, TOOLS, category=cat, tag=[tag, other], status="active") == [a]
    assert ids(client, TOOLS, tag=word()) == []


def test_text_search_finds_words_of_name_and_description(client) -> None:
    in_name, in_description, tag = word(), word(), word()
    named = post(client, TOOLS, tool_body(name=f"Lookup {in_name}", tags=[tag]))["id"]
    described = post(
        client, TOOLS, tool_body(description=f"Finds {in_description} quickly", tags=[tag])
    )["id"]
    assert ids(client, TOOLS, text=in_name) == [named]
    assert ids(client, TOOLS, text=in_name.upper()) == [named]
    assert ids(client, TOOLS, text=f"{in_description} quickly") == [described]
    assert ids(client, TOOLS, text=f"{in_description} {word()}") == []  # every word must match
    assert ids(client, TOOLS, text=in_name, tag=word()) == []


def test_deleted_items_are_listed_only_when_asked(client) -> None:
    tag = word()
    kept = post(client, TOOLS, tool_body(tags=[tag]))["id"]
    gone = post(client, TOOLS, tool_body(tags=[tag]))["id"]
    assert client.delete(f"{TOOLS}/{gone}").status_code == 200
    assert ids(client, TOOLS, tag=tag) == [kept]
    listed = {i["id"]: i for i in ok(client, TOOLS, tag=tag, include_deleted="true")["items"]}
    assert set(listed) == {kept, gone}
    assert listed[kept]["deleted_at"] is None
    assert listed[gone]["deleted_at"] is not None
    assert listed[gone]["tool"]["deleted"] is True
    assert client.post(f"{TOOLS}/{gone}/restore").status_code == 200
    assert set(ids(client, TOOLS, tag=tag)) == {kept, gone}


def test_dataset_filters_and_columns_from_the_read_model(client) -> None:
    tag, owner, term = word(), word(), word()
    a = post(client, DATASETS, dataset_body(tags=[tag], owner=owner))["id"]
    b = post(client, DATASETS, dataset_body(tags=[tag], description=f"All {term} rows"))["id"]
    assert client.post(f"{DATASETS}/{b}/archive").status_code == 200
    columns = [{"name": "id", "type": "uuid", "nullable": False, "description": "key"}]
    assert client.put(f"{DATASETS}/{a}/columns", json={"columns": columns}).status_code == 200
    assert ids(client, DATASETS, tag=tag, owner=owner) == [a]
    assert ids(client, DATASETS, tag=tag, status="archived") == [b]
    assert ids(client, DATASETS, tag=tag, status="active") == [a]
    assert ids(client, DATASETS, text=term) == [b]
    items = {i["id"]: i for i in ok(client, DATASETS, tag=tag)["items"]}
    assert items[a]["dataset"]["columns"] == columns
    assert items[b]["dataset"]["columns"] == [
        {"name": "order_id", "type": "bigint", "nullable": False, "description": None},
        {"name": "amount", "type": "numeric", "nullable": True, "description": "EUR"},
    ]
    assert ok(client, f"{DATASETS}/{a}")["dataset"]["columns"] == columns


def test_document_filters_tag_link_and_text(client) -> None:
    tag, term = word(), word()
    tool_id = post(client, TOOLS, tool_body())["id"]
    dataset_id = post(client, DATASETS, dataset_body())["id"]
    on_tool = post(client, DOCUMENTS, doc_body(tags=[tag], link={"kind": "tool", "id": tool_id}))
    on_dataset = post(
        client,
        DOCUMENTS,
        doc_body(tags=[tag], content=f"About {term}.", link={"kind": "dataset", "id": dataset_id}),
    )
    loose = post(client, DOCUMENTS, doc_body(tags=[tag, "loose"]))
    assert ids(client, DOCUMENTS, linked_to=tool_id) == [on_tool["id"]]
    assert ids(client, DOCUMENTS, linked_to=dataset_id) == [on_dataset["id"]]
    assert ids(client, DOCUMENTS, text=term) == [on_dataset["id"]]
    assert ids(client, DOCUMENTS, tag=[tag, "loose"]) == [loose["id"]]
    assert len(ids(client, DOCUMENTS, tag=tag)) == 3
    assert client.delete(f"{DOCUMENTS}/{loose['id']}").status_code == 200
    assert len(ids(client, DOCUMENTS, tag=tag)) == 2


# --- pagination ---------------------------------------------------------------------------------


def walk(client, path: str, on_page: Any = None, **params: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = ok(client, path, limit=3, **params, **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= 3
        seen += [i["id"] for i in page["items"]]
        if on_page:
            on_page()
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


@pytest.mark.parametrize("sort", ["-updated_at", "updated_at", "name", "-slug", "created_at"])
def test_pages_visit_every_tool_once_in_a_stable_order_while_tools_are_added(
    client, sort: str
) -> None:
    tag = word()
    originals = [
        post(client, TOOLS, tool_body(name=f"Tool {word()}", tags=[tag]))["id"] for _ in range(8)
    ]
    order = ids(client, TOOLS, tag=tag, sort=sort)
    assert sorted(order) == sorted(originals)
    added: list[str] = []

    def add_one() -> None:
        added.append(post(client, TOOLS, tool_body(name=f"Tool {word()}", tags=[tag]))["id"])

    seen = walk(client, TOOLS, add_one, tag=tag, sort=sort)
    assert len(seen) == len(set(seen)), "an item was listed twice"
    assert [i for i in seen if i in originals] == order
    assert set(seen) <= set(originals) | set(added)
    if sort == "-updated_at":
        assert seen == order  # newer tools sort before the cursor: a walk does not meet them


def test_datasets_and_documents_page_too(client) -> None:
    tag = word()
    datasets = {post(client, DATASETS, dataset_body(tags=[tag]))["id"] for _ in range(4)}
    documents = {post(client, DOCUMENTS, doc_body(tags=[tag]))["id"] for _ in range(4)}
    assert sorted(walk(client, DATASETS, tag=tag, sort="slug")) == sorted(datasets)
    assert sorted(walk(client, DOCUMENTS, tag=tag, sort="title")) == sorted(documents)


def test_bad_list_parameters_are_refused_by_name(client) -> None:
    tag = word()
    for _ in range(3):
        post(client, TOOLS, tool_body(tags=[tag]))
    cursor = ok(client, TOOLS, tag=tag, limit=1)["next_cursor"]
    assert cursor
    cases = [
        (TOOLS, {"cursor": "not-a-cursor"}, "cursor"),
        (TOOLS, {"cursor": cursor, "sort": "name"}, "cursor"),  # from another sort
        (TOOLS, {"sort": "owner"}, "sort"),
        (TOOLS, {"sort": "--name"}, "sort"),
        (DOCUMENTS, {"sort": "slug"}, "sort"),
        (TOOLS, {"limit": 0}, "limit"),
        (TOOLS, {"limit": 201}, "limit"),
        (TOOLS, {"status": "archived"}, "status"),
        (DATASETS, {"status": "draft"}, "status"),
        (DOCUMENTS, {"linked_to": "not-a-uuid"}, "linked_to"),
        (TOOLS, {"tag": "a\x00b"}, "tag.0"),
        (TOOLS, {"text": "a\x00b"}, "text"),
        (TOOLS, {"category": "\x00"}, "category"),
        (DATASETS, {"owner": "\x00"}, "owner"),
        (TOOLS, {"min_position": -1}, "min_position"),
    ]
    for path, params, field in cases:
        assert_error(client.get(path, params=params), 422, "invalid_input", field)
    assert ok(client, TOOLS, tag=tag, limit=1, cursor=cursor)["items"]


def test_unknown_refs_and_kinds_are_not_found(client) -> None:
    for path in [
        f"{TOOLS}/no-such-tool",
        f"{TOOLS}/no-such-tool/versions",
        f"{TOOLS}/no-such-tool/diff?from=1&to=1",
        f"{TOOLS}/a%00b",
        f"{DATASETS}/{uuid.uuid4()}",
        f"{DOCUMENTS}/not-a-uuid/versions",
        "/api/v1/widgets",
        "/api/v1/widgets/x",
    ]:
        assert_error(client.get(path), 404, "not_found")


# --- versions, diffs and time travel ------------------------------------------------------------


def tool_with_history(client) -> str:
    headers = {"X-Request-ID": "hist-1", "X-Actor": "alice", "X-Reason": "first"}
    tool_id = post(client, TOOLS, tool_body(config={"api_token": "s3cr3t"}), headers=headers)["id"]
    assert client.patch(
        f"{TOOLS}/{tool_id}", json={"name": "Renamed", "tags": ["b", "a"]}
    ).is_success
    assert client.post(f"{TOOLS}/{tool_id}/activate").is_success
    assert client.delete(f"{TOOLS}/{tool_id}", headers={"X-Reason": "retired"}).is_success
    assert client.post(f"{TOOLS}/{tool_id}/restore").is_success
    return str(tool_id)


def all_versions(client, ref: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        page = ok(client, f"{TOOLS}/{ref}/versions", after_version=after, limit=2, **params)
        assert page["id"] == ref
        items += page["items"]
        if page["next_after_version"] is None:
            return items
        after = page["next_after_version"]


def test_versions_page_through_the_history_with_patches(client) -> None:
    tool_id = tool_with_history(client)
    versions = all_versions(client, tool_id, include_snapshot="true")
    assert [v["version"] for v in versions] == [1, 2, 3, 4, 5]
    assert [v["event_type"] for v in versions] == [
        "ToolRegistered", "ToolUpdated", "ToolStatusChanged", "ToolDeleted", "ToolRestored",
    ]  # fmt: skip
    first = versions[0]
    assert (first["actor"], first["reason"], first["correlation_id"]) == (
        "alice",
        "first",
        "hist-1",
    )
    assert versions[3]["reason"] == "retired"
    assert [v["position"] for v in versions] == sorted(v["position"] for v in versions)
    assert versions[0]["snapshot"]["config"] == {"api_token": "***"}
    state: dict[str, Any] = {}
    for v in versions:
        state = jsonpatch.apply_patch(state, v["patch"])
        assert state == v["snapshot"]
    events = ok(client, f"{TOOLS}/{tool_id}/events")["items"]
    assert [(e["version"], e["position"]) for e in events] == [
        (v["version"], v["position"]) for v in versions
    ]
    assert all("snapshot" not in v for v in all_versions(client, tool_id))


def test_a_diff_applied_to_from_gives_to(client) -> None:
    tool_id = tool_with_history(client)
    snapshots = {
        v["version"]: v["snapshot"] for v in all_versions(client, tool_id, include_snapshot=True)
    }
    for a, start in snapshots.items():
        for b, end in snapshots.items():
            if a > b:
                continue
            diff = ok(client, f"{TOOLS}/{tool_id}/diff", **{"from": a, "to": b})
            assert (diff["id"], diff["from"], diff["to"]) == (tool_id, a, b)
            assert jsonpatch.apply_patch(start, diff["patch"]) == end
    same = ok(client, f"{TOOLS}/{tool_id}/diff", **{"from": 2, "to": 2})
    assert same["patch"] == []
    backwards = client.get(f"{TOOLS}/{tool_id}/diff", params={"from": 3, "to": 2})
    assert_error(backwards, 422, "invalid_input", "from")
    unknown = client.get(f"{TOOLS}/{tool_id}/diff", params={"from": 1, "to": 9})
    assert_error(unknown, 404, "not_found", "to")
    assert_error(
        client.get(f"{TOOLS}/{tool_id}/diff", params={"to": 2}), 422, "invalid_input", "from"
    )


def kind_histories(client) -> list[tuple[Any, str, str]]:
    """One aggregate of each kind with a few versions: (kind, route, id)."""
    tool_id = tool_with_history(client)
    dataset_id = post(client, DATASETS, dataset_body())["id"]
    client.patch(f"{DATASETS}/{dataset_id}", json={"description": "v2"})
    client.post(f"{DATASETS}/{dataset_id}/profile", json={"row_count": 3})
    client.delete(f"{DATASETS}/{dataset_id}")
    document_id = post(client, DOCUMENTS, doc_body())["id"]
    client.put(f"{DOCUMENTS}/{document_id}/tags", json={"tags": ["x"]})
    client.patch(f"{DOCUMENTS}/{document_id}", json={"content": "new"})
    return [
        (TOOL, TOOLS, tool_id),
        (DATASET, DATASETS, dataset_id),
        (DOCUMENT, DOCUMENTS, document_id),
    ]


def replayed(deps, kind, ref: str, **at: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    snap = state_of(deps, kind, ref, **at)
    return {
        "version": snap.version,
        "position": snap.position,
        "updated_at": snap.updated_at,
        kind.name: redact_sealed(snap.state.fields()),
    }


def served(client, route: str, ref: str, kind_name: str, **at: Any) -> dict[str, Any]:
    got = ok(client, f"{route}/{ref}", **at)
    when = datetime.fromisoformat(got["updated_at"])
    return {k: got[k] for k in ("version", "position", kind_name)} | {"updated_at": when}


def test_as_of_and_at_version_match_a_replay_of_the_store(client, deps) -> None:
    for kind, route, ref in kind_histories(client):
        events = ok(client, f"{route}/{ref}/events")["items"]
        times = [datetime.fromisoformat(e["occurred_at"]) for e in events]
        for n, at in enumerate(times, start=1):
            assert served(client, route, ref, kind.name, at_version=n) == replayed(
                deps, kind, ref, at_version=n
            )
            for moment in (at, at + timedelta(microseconds=1)):
                assert served(client, route, ref, kind.name, as_of=moment.isoformat()) == replayed(
                    deps, kind, ref, as_of=moment
                )
            both = served(client, route, ref, kind.name, as_of=at.isoformat(), at_version=n)
            assert both == replayed(deps, kind, ref, as_of=at, at_version=n)
        assert served(client, route, ref, kind.name) == replayed(deps, kind, ref)
        before = (times[0] - timedelta(microseconds=1)).isoformat()
        assert_error(client.get(f"{route}/{ref}", params={"as_of": before}), 404, "not_found")
        beyond = client.get(f"{route}/{ref}", params={"at_version": len(times) + 1})
        assert_error(beyond, 404, "not_found")


def test_single_reads_carry_times_and_positions(client) -> None:
    tool_id = tool_with_history(client)
    now = ok(client, f"{TOOLS}/{tool_id}")
    assert now["version"] == 5
    assert now["deleted_at"] is None
    assert now["applied_position"] >= now["position"]
    events = ok(client, f"{TOOLS}/{tool_id}/events")["items"]
    assert now["created_at"] == ok(client, f"{TOOLS}/{tool_id}", at_version=1)["created_at"]
    assert datetime.fromisoformat(now["created_at"]) == datetime.fromisoformat(
        events[0]["occurred_at"]
    )
    deleted = ok(client, f"{TOOLS}/{tool_id}", at_version=4)
    assert datetime.fromisoformat(deleted["deleted_at"]) == datetime.fromisoformat(
        events[3]["occurred_at"]
    )
    assert deleted["tool"]["deleted"] is True


# --- read-your-writes ---------------------------------------------------------------------------


def test_every_read_says_which_position_it_reflects(client, container) -> None:
    tool_id = tool_with_history(client)
    head = container.store.head()
    for path in [
        TOOLS,
        f"{TOOLS}/{tool_id}",
        f"{TOOLS}/{tool_id}?at_version=2",
        f"{TOOLS}/{tool_id}/versions",
        f"{TOOLS}/{tool_id}/diff?from=1&to=2",
        f"{TOOLS}/{tool_id}/events",
        DATASETS,
        DOCUMENTS,
    ]:
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text)
        assert int(answer.headers["x-ledger-position"]) >= head, path
    listing = client.get(TOOLS, params={"limit": 1})
    assert listing.json()["position"] == int(listing.headers["x-ledger-position"])


def test_a_write_is_visible_at_its_position_once_projected(client, container) -> None:
    written = post(client, TOOLS, tool_body())
    container.read_side.follower.catch_up()
    answer = client.get(f"{TOOLS}/{written['id']}", params={"min_position": written["position"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["position"] == written["position"]
    assert int(answer.headers["x-ledger-position"]) >= written["position"]


def test_a_read_ahead_of_the_projections_waits_then_503s(container) -> None:
    wait = 0.3
    with TestClient(app_with(container, read_wait_seconds=wait)) as plain:
        written = post(plain, TOOLS, tool_body())  # nobody projects it: no follower here
        applied = applied_now(container)
        assert applied < written["position"]
        at = {"min_position": written["position"]}
        for path in (TOOLS, f"{TOOLS}/{written['id']}", f"{TOOLS}/{written['id']}/versions"):
            started = time.monotonic()
            answer = plain.get(path, params=at)
            assert time.monotonic() - started >= wait
            assert_error(answer, 503, "projection_behind", "min_position")
            message = answer.json()["error"]["message"]
            assert f"applied position {applied}" in message
            assert f"min_position {written['position']}" in message
        # The audit trail reads the store itself: the write is there already.
        events = plain.get(f"{TOOLS}/{written['id']}/events", params=at)
        assert events.status_code == 200, events.text
        ahead = plain.get(f"{TOOLS}/{written['id']}/events", params={"min_position": 2**62})
        assert_error(ahead, 503, "position_not_reached", "min_position")


def test_a_read_waits_for_the_projections_to_catch_up(container) -> None:
    with TestClient(app_with(container, read_wait_seconds=5)) as plain:
        written = post(plain, TOOLS, tool_body())

        def project_later() -> None:
            time.sleep(0.3)
            container.read_side.follower.catch_up()

        worker = threading.Thread(target=project_later)
        worker.start()
        started = time.monotonic()
        answer = plain.get(f"{TOOLS}/{written['id']}", params={"min_position": written["position"]})
        worker.join()
        assert answer.status_code == 200, answer.text
        assert 0.25 <= time.monotonic() - started < 5
        assert answer.json()["version"] == 1


def test_waiting_does_not_block_other_requests(container) -> None:
    """While one read waits for a position, the event loop keeps answering other requests."""
    app = app_with(container, read_wait_seconds=1)
    ahead = container.store.head() + 1_000_000

    async def scenario() -> tuple[int, float, list[float]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            started = time.monotonic()

            async def waiting() -> tuple[int, float]:
                answer = await http.get(TOOLS, params={"min_position": ahead})
                return answer.status_code, time.monotonic() - started

            async def quick() -> float:
                await asyncio.sleep(0.1)
                assert (await http.get("/health/live")).status_code == 200
                return time.monotonic() - started

            (status, waited), *others = await asyncio.gather(waiting(), quick(), quick())
            return status, waited, others

    status, waited, others = asyncio.run(scenario())
    assert status == 503
    assert waited >= 1
    assert max(others) < 0.9


def test_the_in_process_follower_serves_reads_at_a_writes_position(container) -> None:
    """`mcp-ledger up`: the app follows the log itself; a read with the write's position waits
    for it, with no help from the test."""
    with TestClient(create_app(container, follow_log=True)) as embedded:
        written = post(embedded, TOOLS, tool_body())
        at = {"min_position": written["position"]}
        answer = embedded.get(f"{TOOLS}/{written['id']}", params=at)
        assert answer.status_code == 200, answer.text
        listed = embedded.get(TOOLS, params=at | {"limit": 200})
        assert written["id"] in [i["id"] for i in listed.json()["items"]]
