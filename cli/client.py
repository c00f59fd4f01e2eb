"""`mcp-ledger tools` and `mcp-ledger datasets`: a read-only command-line client over the REST API
(/api/v1) of a running registry, printing tables by default and the API's JSON with --json."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer
from rich import box
from rich.console import Console
from rich.table import Table

URL_ENV = "MCP_LEDGER_URL"
KEY_ENV = "MCP_LEDGER_API_KEY"
DEFAULT_URL = "http://127.0.0.1:8000"
# Reads with --min-position may wait for the read side (MCP_LEDGER_READ_WAIT_SECONDS) first.
TIMEOUT_SECONDS = 30.0
TIMEOUT = httpx.Timeout(TIMEOUT_SECONDS, connect=5.0)
# Piped or redirected output: rich's default of 80 columns would cut most table cells short.
PIPED_WIDTH = 160
# Shown first in `show`, in this order; the other fields follow alphabetically.
LEADING_FIELDS = ("slug", "name", "status", "category", "owner", "tags", "description")

tools_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Tools in a running registry, read over its REST API.",
    no_args_is_help=True,
)
datasets_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Datasets in a running registry, read over its REST API.",
    no_args_is_help=True,
)


class ToolStatus(StrEnum):
    draft = "draft"
    active = "active"
    deprecated = "deprecated"


class DatasetStatus(StrEnum):
    active = "active"
    archived = "archived"


class SearchMode(StrEnum):
    hybrid = "hybrid"
    vector = "vector"
    lexical = "lexical"


def _base_url(value: str) -> str:
    """The server's root URL: a trailing slash or /api/v1 is dropped, the scheme is required."""
    if not value.startswith(("http://", "https://")):
        raise typer.BadParameter(f"must start with http:// or https:// (got {value!r})")
    return value.rstrip("/").removesuffix("/api/v1")


Url = Annotated[
    str,
    typer.Option("--url", envvar=URL_ENV, callback=_base_url, help="The registry's base URL."),
]
Key = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar=KEY_ENV,
        show_default=False,
        help="An API key, sent as the header Authorization: Bearer KEY.",
    ),
]
AsJson = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON answer instead of a table.")
]
MinPosition = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="Wait until the read side has reached this store position, e.g. your last write's.",
    ),
]
PageLimit = Annotated[
    int | None, typer.Option(min=1, max=200, help="At most this many items (API default 50).")
]
Cursor = Annotated[
    str | None, typer.Option(help="The next-page cursor printed under the previous page.")
]
Tags = Annotated[
    list[str] | None,
    typer.Option("--tag", help="Only items with this tag; repeat it to require several tags."),
]
Ref = Annotated[str, typer.Argument(help="The item's slug or id.")]


@dataclass(frozen=True)
class Api:
    """GETs from /api/v1 of one registry; every failure ends the command with a message."""

    url: str
    key: str | None

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        try:
            with httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT) as http:
                response = http.get(f"/api/v1/{path}", params=_query(params or {}))
        except httpx.TimeoutException:
            _fail(f"error: the registry at {self.url} did not answer in {TIMEOUT_SECONDS:g} s")
        except httpx.HTTPError as exc:
            _fail(f"error: cannot connect to the registry at {self.url} ({_one_line(exc)})")
        if response.is_error:
            _fail_with(response)
        try:
            return response.json()
        except ValueError:
            _fail(f"error: the answer from {response.url} is not JSON; is --url a registry?")


def _query(params: dict[str, Any]) -> dict[str, Any]:
    """Query parameters without the unset ones; enums as their values, lists repeated."""
    return {
        name: value.value if isinstance(value, Enum) else value
        for name, value in params.items()
        if value is not None and value != []
    }


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(1)


def _fail_with(response: httpx.Response) -> NoReturn:
    """Prints the API's error envelope (message, code, field details), or the bare status."""
    try:
        error = response.json()["error"]
        lines = [f"error: {error['message']} ({error['code']})"]
    except (ValueError, KeyError, TypeError):
        body = " ".join(response.text.split())[:200]
        _fail(f"error: HTTP {response.status_code} from {response.url}: {body}")
    lines += [f"  {d.get('field')}: {d.get('message')}" for d in error.get("details") or []]
    if error.get("request_id"):
        lines.append(f"  request id: {error['request_id']}")
    _fail("\n".join(lines))


def _path(*parts: str) -> str:
    return "/".join(quote(p, safe="") for p in parts)


# --- output ---------------------------------------------------------------------------------


def _console() -> Console:
    # Values come from the registry: no markup, emoji or highlighting is read into them.
    console = Console(markup=False, emoji=False, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH
    return console


def _emit(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        render(data)


def _cell(value: Any) -> str:
    if value is None or value == []:
        return "-"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2, ensure_ascii=False)
    return str(value)


def _table(headers: Iterable[str], rows: Iterable[Iterable[Any]]) -> Table:
    """A table whose first column (the slug, name or version) is never wrapped or cut."""
    cells = [[_cell(v) for v in row] for row in rows]
    table = Table(*headers, box=box.SIMPLE_HEAD)
    table.columns[0].no_wrap = True
    table.columns[0].min_width = max((len(row[0]) for row in cells), default=None)
    for row in cells:
        table.add_row(*row)
    return table


def _print_page(kind: str, columns: tuple[str, ...], page: dict[str, Any]) -> None:
    console, items = _console(), page["items"]
    if not items:
        console.print(f"no {kind}s")
        return
    console.print(_table(columns, ([item[kind].get(c) for c in columns] for item in items)))
    more = f"; next page: --cursor {page['next_cursor']}" if page.get("next_cursor") else ""
    plural = "" if len(items) == 1 else "s"
    console.print(f"{len(items)} {kind}{plural}{more}", soft_wrap=True)


def _ordered(fields: dict[str, Any]) -> list[tuple[str, Any]]:
    leading = [(name, fields[name]) for name in LEADING_FIELDS if name in fields]
    rest = sorted((n, v) for n, v in fields.items() if n not in LEADING_FIELDS)
    return leading + rest


def _print_item(kind: str, item: dict[str, Any]) -> None:
    fields = dict(item[kind])
    columns = fields.pop("columns", None)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    meta = [("id", item["id"]), ("ledger version", item["version"])]
    meta += [(m.replace("_", " "), item[m]) for m in ("created_at", "updated_at", "deleted_at")]
    for name, value in [*_ordered(fields), *meta]:
        grid.add_row(name, _cell(value))
    console = _console()
    console.print(grid)
    if columns:
        keys = ("name", "type", "nullable", "description")
        console.print(_table(keys, ([c.get(k) for k in keys] for c in columns)))


def _changes(version: dict[str, Any]) -> str:
    """The top-level fields a version's JSON Patch touches."""
    if version["version"] == 1:
        return "(new)"
    fields = sorted({op["path"].split("/")[1] for op in version["patch"] if op.get("path")})
    return ", ".join(fields) or "-"


def _print_versions(page: dict[str, Any]) -> None:
    headers = ("version", "event", "occurred at", "actor", "reason", "changed")
    rows = (
        (
            v["version"],
            v["event_type"],
            _when(v["occurred_at"]),
            v["actor"],
            v["reason"],
            _changes(v),
        )
        for v in page["items"]
    )
    console = _console()
    console.print(_table(headers, rows))
    if page.get("next_after_version") is not None:
        console.print(f"more: --after-version {page['next_after_version']}")


def _when(timestamp: str) -> str:
    """An RFC 3339 time from the API, to the second: 2024-05-01 12:00:00Z."""
    return f"{timestamp[:19].replace('T', ' ')}Z" if timestamp.endswith("Z") else timestamp


def _print_hits(result: dict[str, Any]) -> None:
    for warning in result.get("warnings") or []:
        typer.echo(f"warning: {warning}", err=True)
    if not result["items"]:
        _console().print("no matches")
        return
    headers = ("slug", "score", "name", "status", "category", "description")
    rows = (
        (h["slug"], f"{h['score']:.3f}", h["name"], h["status"], h["category"], h["description"])
        for h in result["items"]
    )
    _console().print(_table(headers, rows))


# --- tools ----------------------------------------------------------------------------------

TOOL_COLUMNS = ("slug", "name", "status", "category", "tags", "version")


@tools_app.command("list")
def list_tools(  # noqa: PLR0917 - typer reads the signature
    category: Annotated[str | None, typer.Option(help="Only tools in this category.")] = None,
    tag: Tags = None,
    status: Annotated[ToolStatus | None, typer.Option(help="Only tools with this status.")] = None,
    limit: PageLimit = None,
    cursor: Cursor = None,
    min_position: MinPosition = None,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    key: Key = None,
) -> None:
    """List tools, most recently changed first, one page at a time."""
    params = {"category": category, "tag": tag, "status": status, "limit": limit}
    params |= {"cursor": cursor, "min_position": min_position}
    page = Api(url, key).get("tools", params)
    _emit(page, as_json, lambda p: _print_page("tool", TOOL_COLUMNS, p))


@tools_app.command("show")
def show_tool(  # noqa: PLR0917 - typer reads the signature
    ref: Ref,
    as_of: Annotated[
        str | None,
        typer.Option(help="Show the tool as it was at this RFC 3339 time with an offset."),
    ] = None,
    at_version: Annotated[
        int | None, typer.Option(min=1, help="Show the tool as it was at this ledger version.")
    ] = None,
    min_position: MinPosition = None,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    key: Key = None,
) -> None:
    """Show one tool's fields, now or as it was at a time or version."""
    params = {"as_of": as_of, "at_version": at_version, "min_position": min_position}
    item = Api(url, key).get(_path("tools", ref), params)
    _emit(item, as_json, lambda i: _print_item("tool", i))


@tools_app.command("search")
def search_tools(  # noqa: PLR0917 - typer reads the signature
    query: Annotated[str, typer.Argument(help="What the tool should do, in plain words.")],
    limit: Annotated[
        int | None, typer.Option(min=1, max=100, help="At most this many hits (API default 10).")
    ] = None,
    category: Annotated[str | None, typer.Option(help="Only tools in this category.")] = None,
    tag: Tags = None,
    mode: Annotated[
        SearchMode | None, typer.Option(help="The ranking to use (API default hybrid).")
    ] = None,
    min_position: MinPosition = None,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    key: Key = None,
) -> None:
    """Search tools by meaning and words, best match first."""
    params = {"q": query, "kind": "tool", "limit": limit, "category": category, "tag": tag}
    params |= {"mode": mode, "min_position": min_position}
    result = Api(url, key).get("search", params)
    _emit(result, as_json, _print_hits)


@tools_app.command("history")
def tool_history(  # noqa: PLR0917 - typer reads the signature
    ref: Ref,
    limit: PageLimit = None,
    after_version: Annotated[
        int | None, typer.Option(min=0, help="Start after this ledger version (for paging).")
    ] = None,
    min_position: MinPosition = None,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    key: Key = None,
) -> None:
    """List one tool's versions, oldest first, with what each changed."""
    params = {"limit": limit, "after_version": after_version, "min_position": min_position}
    page = Api(url, key).get(_path("tools", ref, "versions"), params)
    _emit(page, as_json, _print_versions)


# --- datasets -------------------------------------------------------------------------------

DATASET_COLUMNS = ("slug", "name", "status", "owner", "tags")


@datasets_app.command("list")
def list_datasets(  # noqa: PLR0917 - typer reads the signature
    owner: Annotated[str | None, typer.Option(help="Only datasets with this owner.")] = None,
    tag: Tags = None,
    status: Annotated[
        DatasetStatus | None, typer.Option(help="Only datasets with this status.")
    ] = None,
    limit: PageLimit = None,
    cursor: Cursor = None,
    min_position: MinPosition = None,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    key: Key = None,
) -> None:
    """List datasets, most recently changed first, one page at a time."""
    params = {"owner": owner, "tag": tag, "status": status, "limit": limit}
    params |= {"cursor": cursor, "min_position": min_position}
    page = Api(url, key).get("datasets", params)
    _emit(page, as_json, lambda p: _print_page("dataset", DATASET_COLUMNS, p))


@datasets_app.command("show")
def show_dataset(
    ref: Ref,
    min_position: MinPosition = None,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    key: Key = None,
) -> None:
    """Show one dataset's fields and columns."""
    item = Api(url, key).get(_path("datasets", ref), {"min_position": min_position})
    _emit(item, as_json, lambda i: _print_item("dataset", i))
