"""Bulk import: POST /api/v1/tools:batch (JSON and YAML) and `mcp-ledger import FILE`.
Batches (50 tools in the test settings) are all-or-nothing; the first failing batch stops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, tool_body
from tests.ledger_sql import connect, registrations_by_slug

pytestmark = pytest.mark.backends("server", "embedded")

BATCH = 50  # import_batch_size of the test settings


@pytest.fixture(scope="module")
def db(database_url: str):  # type: ignore[no-untyped-def]
    with connect(database_url) as conn:
        yield conn


def prefix() -> str:
    return f"imp-{uuid.uuid4().hex[:8]}"


def tools(p: str, n: int, **overrides: Any) -> list[dict[str, Any]]:
    return [tool_body(f"{p}-{i:03d}", **overrides) for i in range(n)]


def stored_indices(db: Any, p: str) -> list[int]:
    found = registrations_by_slug(db, p + "-")
    assert all(len(ids) == 1 for ids in found.values()), found
    return sorted(int(slug.rsplit("-", 1)[1]) for slug in found)


def fields(answer: Any) -> list[str]:
    return [d["field"] for d in answer.json()["error"]["details"]]


def post_yaml(client: Any, data: Any) -> Any:
    return client.post(
        "/api/v1/tools:batch",
        content=yaml.safe_dump(data, allow_unicode=True).encode(),
        headers={"Content-Type": "application/yaml"},
    )


# --- the batch endpoint -----------------------------------------------------------------------


def test_json_batch_stores_every_tool(client, db) -> None:  # type: ignore[no-untyped-def]
    p = prefix()
    answer = client.post("/api/v1/tools:batch", json={"tools": tools(p, 120)})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["committed"] == 120
    assert [i["version"] for i in body["items"]] == [1] * 120
    positions = [i["position"] for i in body["items"]]
    assert positions == sorted(set(positions))
    assert stored_indices(db, p) == list(range(120))
    one = client.get(f"/api/v1/tools/{p}-007").json()
    assert one["id"] == body["items"][7]["id"]
    assert one["tool"]["name"] == "Weather lookup"


@pytest.mark.parametrize("shape", ["object", "list"])
def test_yaml_batch_stores_every_tool(client, db, shape) -> None:  # type: ignore[no-untyped-def]
    p = prefix()
    items = tools(p, 60, description="Multi-line\ndescription: with a colon", tags=["a", "b"])
    answer = post_yaml(client, {"tools": items} if shape == "object" else items)
    assert answer.status_code == 200, answer.text
    assert answer.json()["committed"] == 60
    assert stored_indices(db, p) == list(range(60))
    got = client.get(f"/api/v1/tools/{p}-059").json()["tool"]
    assert got["description"] == "Multi-line\ndescription: with a colon"
    assert got["tags"] == ["a", "b"]


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_a_bad_item_in_batch_two_keeps_batch_one_and_stores_nothing_after(client, db, fmt) -> None:  # type: ignore[no-untyped-def]
    p = prefix()
    items = tools(p, 3 * BATCH + 10)
    items[60]["slug"] = "Not A Slug"
    items[120]["version"] = "one"  # in a later batch: never reached
    body = {"tools": items}
    answer = (
        client.post("/api/v1/tools:batch", json=body) if fmt == "json" else post_yaml(client, body)
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_input"
    assert "tools[60].slug" in fields(answer)
    assert {"field": "committed", "message": str(BATCH)} in error["details"]
    assert stored_indices(db, p) == list(range(BATCH))


def test_a_bad_item_in_the_first_batch_stores_nothing(client, db) -> None:  # type: ignore[no-untyped-def]
    p = prefix()
    items = tools(p, 80)
    items[49]["input_schema"] = {"type": "no-such-type"}
    answer = client.post("/api/v1/tools:batch", json={"tools": items})
    assert answer.status_code == 422
    assert "tools[49].input_schema" in fields(answer)
    assert stored_indices(db, p) == []


def test_duplicate_slugs_within_a_batch_are_refused(client, db) -> None:  # type: ignore[no-untyped-def]
    p = prefix()
    items = tools(p, 20)
    items[12]["slug"] = items[3]["slug"]
    answer = client.post("/api/v1/tools:batch", json={"tools": items})
    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0] == {
        "field": "tools[12].slug",
        "message": "repeats tools[3].slug",
    }
    assert stored_indices(db, p) == []


def test_a_slug_repeated_in_a_later_batch_stops_there(client, db) -> None:  # type: ignore[no-untyped-def]
    p = prefix()
    items = tools(p, 2 * BATCH)
    items[BATCH + 5]["slug"] = items[2]["slug"]
    answer = client.post("/api/v1/tools:batch", json={"tools": items})
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "slug_taken"
    assert items[2]["slug"] in answer.json()["error"]["message"]
    assert stored_indices(db, p) == list(range(BATCH))


def test_a_slug_already_registered_refuses_its_batch(client, db) -> None:  # type: ignore[no-untyped-def]
    p = prefix()
    assert client.post("/api/v1/tools", json=tool_body(f"{p}-004")).status_code == 201
    answer = client.post("/api/v1/tools:batch", json={"tools": tools(p, 10)})
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "slug_taken"
    assert stored_indices(db, p) == [4]


def test_a_type_error_anywhere_rejects_the_whole_request(client, db) -> None:  # type: ignore[no-untyped-def]
    p = prefix()
    items = tools(p, 2 * BATCH)
    del items[75]["name"]
    items[80]["tags"] = "not-a-list"
    answer = client.post("/api/v1/tools:batch", json={"tools": items})
    assert answer.status_code == 422
    named = fields(answer)
    assert {"tools.75.name", "tools.80.tags"} <= set(named) or {
        "tools[75].name",
        "tools[80].tags",
    } <= set(named), named
    assert stored_indices(db, p) == []


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b'{"tools": [', "application/json", 400, "malformed_body"),
        (b"tools: [\n  - {slug: a\n", "application/yaml", 400, "malformed_body"),
        (b'{"tools": []}', "application/json", 422, "invalid_input"),
        (b"[]", "application/json", 422, "invalid_input"),
        (b"just text", "application/yaml", 422, "invalid_input"),
        (b'{"tools": [], "extra": 1}', "application/json", 422, "invalid_input"),
    ],
)
def test_malformed_batches_are_refused_with_the_envelope(
    client, content, content_type, status, code
) -> None:  # type: ignore[no-untyped-def]
    answer = client.post(
        "/api/v1/tools:batch",
        content=content,
        headers={"Content-Type": content_type, "X-Request-ID": "bad-batch"},
    )
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["request_id"]) == (code, "bad-batch")
    if status == 400:
        assert "line" in error["message"]


def test_yaml_values_that_are_not_json_are_refused_by_field(client, db) -> None:  # type: ignore[no-untyped-def]
    # YAML has dates and sets; the event store holds JSON. They are input errors, not crashes.
    p = prefix()
    text = yaml.safe_dump({"tools": tools(p, 2, config={"released": "DATE"})})
    answer = client.post(
        "/api/v1/tools:batch",
        content=text.replace("DATE", "2024-01-01").encode(),
        headers={"Content-Type": "application/yaml"},
    )
    assert answer.status_code == 422, answer.text
    assert any(f.replace("[", ".").startswith("tools.0") and "config" in f for f in fields(answer))
    assert stored_indices(db, p) == []


def test_batch_events_carry_the_request_metadata(client) -> None:  # type: ignore[no-untyped-def]
    p = prefix()
    answer = client.post(
        "/api/v1/tools:batch",
        json=tools(p, 3),
        headers={"X-Request-ID": f"batch-{p}", "X-Actor": "importer", "X-Reason": "migration"},
    )
    assert answer.status_code == 200
    for i in range(3):
        (event,) = client.get(f"/api/v1/tools/{p}-{i:03d}/events").json()["items"]
        assert (event["correlation_id"], event["actor"], event["reason"]) == (
            f"batch-{p}",
            "importer",
            "migration",
        )


# --- the CLI ----------------------------------------------------------------------------------


def run_cli(database_url: str, secret_key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MCP_LEDGER_SECRET_KEY": secret_key,
        "MCP_LEDGER_IMPORT_BATCH_SIZE": str(BATCH),
    }
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "import", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_cli_imports_a_file(database_url, secret_key, tmp_path, db, container, suffix) -> None:  # type: ignore[no-untyped-def]
    p = prefix()
    items = tools(p, 120)
    token = f"tok-{uuid.uuid4().hex}"
    items[5]["config"] = {"api_token": token}
    path = tmp_path / f"tools{suffix}"
    path.write_text(json.dumps(items) if suffix == ".json" else yaml.safe_dump({"tools": items}))
    done = run_cli(database_url, secret_key, str(path), "--actor", "cli-test")
    assert done.returncode == 0, done.stderr
    assert "imported 120 tools in 3 batches" in done.stdout
    assert stored_indices(db, p) == list(range(120))
    from commands.common import load
    from commands.tools import TOOL

    tool = load(container.deps, TOOL, f"{p}-005")
    assert container.sealer.unseal(tool.id, tool.config["api_token"]) == token
    (event,) = container.deps.store.load(tool.id)
    assert event.actor == "cli-test"


def test_cli_stops_at_a_bad_batch_and_names_the_field(
    database_url, secret_key, tmp_path, db
) -> None:  # type: ignore[no-untyped-def]
    p = prefix()
    items = tools(p, 3 * BATCH)
    items[BATCH + 7]["slug"] = "-bad"
    path = tmp_path / "tools.yaml"
    path.write_text(yaml.safe_dump(items))
    done = run_cli(database_url, secret_key, str(path))
    assert done.returncode == 1
    assert f"tools[{BATCH + 7}].slug" in done.stderr
    assert f"{BATCH} tools in earlier batches were stored" in done.stderr
    assert stored_indices(db, p) == list(range(BATCH))


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("BROKEN", "tools.1.name"),
        ("[{", "cannot read"),
    ],
)
def test_cli_refuses_an_unreadable_file(
    database_url, secret_key, tmp_path, db, content, named
) -> None:  # type: ignore[no-untyped-def]
    p = prefix()
    if content == "BROKEN":
        items = tools(p, 3)
        del items[1]["name"]
        text = json.dumps(items)
    else:
        text = content
    path = tmp_path / "tools.json"
    path.write_text(text)
    done = run_cli(database_url, secret_key, str(path))
    assert done.returncode == 2
    assert named in done.stderr
    assert stored_indices(db, p) == []


def test_cli_reports_a_missing_file(database_url, secret_key, tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = run_cli(database_url, secret_key, str(tmp_path / "nowhere.json"))
    assert done.returncode != 0
    assert "nowhere.json" in done.stderr
