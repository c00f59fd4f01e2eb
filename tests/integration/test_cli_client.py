"""The REST API client commands (cli/client.py: `tools ...`, `datasets ...`) against a real
`mcp-ledger api` process, plus a small recording HTTP server for what the API cannot show
(the Authorization header, errors that are not the API's envelope)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner, Result

from cli import client
from cli.client import datasets_app, tools_app
from tests.conftest import LiveServer, free_port, tool_body

RUN = uuid.uuid4().hex[:8]
TAG = f"cli-{RUN}"


@dataclass
class Seeded:
    """What the module registered over HTTP, and the store position after the last write."""

    url: str
    alpha: str
    beta: str
    gamma: str
    dataset: str
    position: int = 0

    def args(self) -> list[str]:
        return ["--url", self.url, "--min-position", str(self.position)]


@pytest.fixture(scope="module")
def server(
    database_url: str,
    secret_key: str,
    tmp_path_factory: pytest.TempPathFactory,
    container: Any,  # the schema must exist before the server starts
) -> Iterator[LiveServer]:
    """One `mcp-ledger api` for the module (the `live_server` fixture starts one per test)."""
    log = tmp_path_factory.mktemp("cli-client") / "api.log"
    live = LiveServer(database_url, secret_key, log).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def seeded(server: LiveServer, container: Any) -> Seeded:
    """Three tools (alpha updated once) and a dataset, written over HTTP; the session's follower
    then brings the read models (which the server only reads) up to date."""
    data = Seeded(server.url, f"{TAG}-alpha", f"{TAG}-beta", f"{TAG}-gamma", f"{TAG}-ds")
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as http:
        _write(http.post("/tools", json=tool_body(data.alpha, tags=[TAG, "weather"])))
        finance = {"category": "finance", "name": "Currency converter", "tags": [TAG]}
        text = "Converts amounts with zanzibarite exchange rates"
        _write(http.post("/tools", json=tool_body(data.beta, description=text, **finance)))
        _write(http.post("/tools", json=tool_body(data.gamma, tags=[TAG], status="active")))
        change = {"description": "Forecast and current weather for a city"}
        _write(http.patch(f"/tools/{data.alpha}", json=change))
        data.position = _write(http.post("/datasets", json=dataset_body(data.dataset)))
    container.read_side.follower.catch_up()
    return data


def dataset_body(slug: str) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": "Sales orders",
        "description": "One row per order",
        "source": {"kind": "postgres_table", "uri": "postgresql://wh/sales?table=orders"},
        "columns": [
            {"name": "order_id", "type": "bigint", "nullable": False},
            {"name": "amount", "type": "numeric", "description": "EUR"},
        ],
        "tags": [TAG],
        "owner": "data-platform",
    }


def _write(response: httpx.Response) -> int:
    assert response.status_code in (200, 201), response.text
    return int(response.json()["position"])


def run(app: typer.Typer, *args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def run_json(app: typer.Typer, *args: str) -> Any:
    result = run(app, *args, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def slugs(page: dict[str, Any], kind: str = "tool") -> list[str]:
    return [item[kind]["slug"] for item in page["items"]]


# --- tools ----------------------------------------------------------------------------------


def test_tools_list_filters_by_tag_category_and_status(seeded: Seeded) -> None:
    everything = run_json(tools_app, "list", "--tag", TAG, *seeded.args())
    assert sorted(slugs(everything)) == sorted([seeded.alpha, seeded.beta, seeded.gamma])
    both_tags = run_json(tools_app, "list", "--tag", TAG, "--tag", "weather", *seeded.args())
    assert slugs(both_tags) == [seeded.alpha]
    finance = run_json(tools_app, "list", "--tag", TAG, "--category", "finance", *seeded.args())
    assert slugs(finance) == [seeded.beta]
    active = run_json(tools_app, "list", "--tag", TAG, "--status", "active", *seeded.args())
    assert slugs(active) == [seeded.gamma]


def test_tools_list_table_pages_with_the_printed_cursor(seeded: Seeded) -> None:
    first = run(tools_app, "list", "--tag", TAG, "--limit", "2", *seeded.args())
    assert first.exit_code == 0, first.stderr
    # Most recently changed first: alpha (updated last), then gamma; beta is on the next page.
    assert seeded.alpha in first.stdout
    assert seeded.gamma in first.stdout
    assert seeded.beta not in first.stdout
    assert "2 tools; next page: --cursor " in first.stdout
    cursor = first.stdout.rsplit("--cursor ", 1)[1].strip()
    rest = run(
        tools_app, "list", "--tag", TAG, "--limit", "2", "--cursor", cursor, "--url", seeded.url
    )
    assert rest.exit_code == 0, rest.stderr
    assert seeded.beta in rest.stdout
    assert "1 tool" in rest.stdout.splitlines()
    assert "next page" not in rest.stdout


def test_tools_show_by_slug_prints_its_fields(seeded: Seeded) -> None:
    item = run_json(tools_app, "show", seeded.beta, *seeded.args())
    assert item["version"] == 1
    tool = item["tool"]
    assert tool["slug"] == seeded.beta
    assert tool["name"] == "Currency converter"
    assert tool["category"] == "finance"
    assert tool["description"] == "Converts amounts with zanzibarite exchange rates"
    shown = run(tools_app, "show", seeded.beta, *seeded.args())
    assert shown.exit_code == 0, shown.stderr
    for text in (seeded.beta, "Currency converter", "finance", item["id"], "ledger version"):
        assert text in shown.stdout


def test_tools_show_at_version_1_is_the_description_before_the_update(seeded: Seeded) -> None:
    now = run_json(tools_app, "show", seeded.alpha, *seeded.args())
    assert now["version"] == 2
    assert now["tool"]["description"] == "Forecast and current weather for a city"
    then = run_json(tools_app, "show", seeded.alpha, "--at-version", "1", *seeded.args())
    assert then["version"] == 1
    assert then["tool"]["description"] == "Current weather for a city"
    table = run(tools_app, "show", seeded.alpha, "--at-version", "1", *seeded.args())
    assert "Current weather for a city" in table.stdout
    assert "Forecast" not in table.stdout
    registered_at = then["updated_at"]  # version 1's time: --as-of gives the same state
    as_of = run_json(tools_app, "show", seeded.alpha, "--as-of", registered_at, "--url", seeded.url)
    assert (as_of["version"], as_of["tool"]["description"]) == (1, "Current weather for a city")


def test_tools_search_finds_a_tool_by_a_word_of_its_description(seeded: Seeded) -> None:
    found = run_json(tools_app, "search", "zanzibarite", *seeded.args())
    hits = [(h["kind"], h["slug"]) for h in found["items"]]
    assert hits[0] == ("tool", seeded.beta)
    table = run(tools_app, "search", "zanzibarite", "--category", "finance", *seeded.args())
    assert table.exit_code == 0, table.stderr
    assert seeded.beta in table.stdout
    elsewhere = run_json(
        tools_app, "search", "zanzibarite", "--category", "weather", "--url", seeded.url
    )
    assert elsewhere["items"] == []
    # Only tools: the words that find the dataset over the API find nothing of it here.
    everything = httpx.get(f"{seeded.url}/api/v1/search", params={"q": TAG, "limit": 100})
    assert seeded.dataset in [h["slug"] for h in everything.json()["items"]]
    tools = run_json(tools_app, "search", TAG, "--limit", "100", "--url", seeded.url)
    assert {h["kind"] for h in tools["items"]} == {"tool"}


def test_tools_history_lists_the_versions_with_what_changed(seeded: Seeded) -> None:
    page = run_json(tools_app, "history", seeded.alpha, *seeded.args())
    assert [v["version"] for v in page["items"]] == [1, 2]
    assert [v["event_type"] for v in page["items"]] == ["ToolRegistered", "ToolUpdated"]
    table = run(tools_app, "history", seeded.alpha, "--limit", "1", *seeded.args())
    assert table.exit_code == 0, table.stderr
    assert "ToolRegistered" in table.stdout
    assert "ToolUpdated" not in table.stdout
    assert "more: --after-version 1" in table.stdout
    rest = run(tools_app, "history", seeded.alpha, "--after-version", "1", "--url", seeded.url)
    assert "ToolUpdated" in rest.stdout
    assert "description" in rest.stdout


# --- datasets -------------------------------------------------------------------------------


def test_datasets_list_and_show(seeded: Seeded) -> None:
    page = run_json(datasets_app, "list", "--tag", TAG, "--owner", "data-platform", *seeded.args())
    assert slugs(page, "dataset") == [seeded.dataset]
    item = run_json(datasets_app, "show", seeded.dataset, *seeded.args())
    assert item["dataset"]["slug"] == seeded.dataset
    assert [c["name"] for c in item["dataset"]["columns"]] == ["order_id", "amount"]
    table = run(datasets_app, "show", seeded.dataset, *seeded.args())
    assert table.exit_code == 0, table.stderr
    for text in (seeded.dataset, "Sales orders", "order_id", "bigint", "EUR"):
        assert text in table.stdout
    listed = run(datasets_app, "list", "--tag", TAG, "--status", "active", *seeded.args())
    assert seeded.dataset in listed.stdout
    assert "1 dataset" in listed.stdout.splitlines()
    archived = run(datasets_app, "list", "--tag", TAG, "--status", "archived", *seeded.args())
    assert archived.stdout == "no datasets\n"


# --- errors ---------------------------------------------------------------------------------


def test_an_unknown_slug_prints_the_api_error_and_exits_1(seeded: Seeded) -> None:
    result = run(tools_app, "show", f"{TAG}-nope", "--url", seeded.url)
    assert result.exit_code == 1
    assert result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: ")
    assert f"{TAG}-nope" in first
    assert first.endswith("(not_found)")
    assert "request id: " in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_parameters_print_the_field_details(seeded: Seeded) -> None:
    result = run(tools_app, "show", seeded.alpha, "--as-of", "yesterday", "--url", seeded.url)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "error: the request has invalid fields (invalid_input)"
    assert any(line.startswith("  as_of: ") for line in lines[1:]), lines


def test_an_unreachable_url_is_one_line_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run(tools_app, "list", "--url", url)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: cannot connect to the registry at {url} ")


def test_a_url_without_a_scheme_is_a_usage_error() -> None:
    result = run(tools_app, "list", "--url", "localhost:8000")
    assert result.exit_code == 2
    words = " ".join(result.stderr.replace("│", " ").split())  # typer boxes and wraps it
    assert "must start with http:// or https:// (got 'localhost:8000')" in words


# --- what the live server cannot show: a recording server ----------------------------------


@dataclass
class Recorder:
    """Answers every GET with `status` and `body`, and keeps each request's path and headers."""

    status: int = 200
    body: bytes = b'{"items": [], "next_cursor": null, "position": 0}'
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""
    delay: float = 0.0


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            rec.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            time.sleep(rec.delay)
            self.send_response(rec.status)
            self.send_header("Content-Length", str(len(rec.body)))
            self.end_headers()
            self.wfile.write(rec.body)

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{http.server_address[1]}"
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield rec
    http.shutdown()
    http.server_close()


def test_the_key_is_sent_as_a_bearer_header(recorder: Recorder) -> None:
    assert run(tools_app, "list", "--url", recorder.url, "--key", "k-123").exit_code == 0
    result = CliRunner().invoke(
        datasets_app, ["list", "--url", recorder.url], env={"MCP_LEDGER_API_KEY": "k-env"}
    )
    assert result.exit_code == 0, result.stderr
    keyless = CliRunner().invoke(
        tools_app, ["list", "--url", recorder.url], env={"MCP_LEDGER_API_KEY": None}
    )
    assert keyless.exit_code == 0, keyless.stderr
    sent = [(path, headers.get("authorization")) for path, headers in recorder.requests]
    assert sent == [
        ("/api/v1/tools", "Bearer k-123"),
        ("/api/v1/datasets", "Bearer k-env"),
        ("/api/v1/tools", None),
    ]


def test_the_url_may_end_in_api_v1_and_refs_are_quoted(recorder: Recorder) -> None:
    recorder.body = b'{"id": "x", "items": [], "next_after_version": null, "position": 0}'
    result = run(tools_app, "history", "a/b c", "--url", f"{recorder.url}/api/v1/", "--limit", "5")
    assert result.exit_code == 0, result.stderr
    assert recorder.requests[0][0] == "/api/v1/tools/a%2Fb%20c/versions?limit=5"


def test_an_error_that_is_not_the_api_envelope_shows_the_status(recorder: Recorder) -> None:
    recorder.status, recorder.body = 502, b"<html>Bad gateway</html>"
    result = run(tools_app, "list", "--url", recorder.url)
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: HTTP 502 from {recorder.url}/api/v1/tools: <html>Bad gateway</html>\n"
    )


def test_a_success_that_is_not_json_is_an_error(recorder: Recorder) -> None:
    recorder.body = b"<html>a web page</html>"
    result = run(tools_app, "list", "--url", recorder.url)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: the answer from ")
    assert "is not JSON" in result.stderr


def test_a_registry_that_does_not_answer_in_time_is_one_line(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client, "TIMEOUT", httpx.Timeout(0.2))
    recorder.delay = 1.0
    result = run(tools_app, "list", "--url", recorder.url)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: the registry at {recorder.url} did not answer in ")
    assert len(result.stderr.splitlines()) == 1
