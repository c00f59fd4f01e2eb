"""MCP benchmark: get_tool and search_tools over Streamable HTTP (`mcp-ledger up`, /mcp) at 1
and 16 concurrent clients, beside the same query functions called in-process, in one run.

    .venv/bin/python bench/mcp.py [--tools N] [--seconds S] [--quick]

Uses $DATABASE_URL (a local server; a fresh `bench_<random>` database is created on it and
dropped at the end) or the Postgres that scripts/postgres provides. Bulk-imports N tools
(default 10,000) in-process, projects and indexes them, measures the in-process floor, then
starts `mcp-ledger up` on the same database and data folder and drives it with the SDK's own
client (one session per concurrent client). Prints one line per figure.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named mcp.py: keep its folder off sys.path so `import mcp` is the SDK.
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import anyio  # noqa: E402
import httpx  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

from commands.context import CommandContext  # noqa: E402
from commands.import_tools import import_tools  # noqa: E402
from commands.inputs import RegisterTool  # noqa: E402
from infra.container import build_container  # noqa: E402
from infra.settings import load_settings  # noqa: E402
from projections import queries  # noqa: E402
from projections.search_types import SearchRequest  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_write_path", HERE / "write_path.py")
assert _spec is not None
assert _spec.loader is not None
wp = importlib.util.module_from_spec(_spec)
sys.modules["bench_write_path"] = wp
_spec.loader.exec_module(wp)

CLIENTS = (1, 16)
WORDS = [
    "weather",
    "forecast",
    "city",
    "temperature",
    "invoice",
    "payment",
    "refund",
    "customer",
    "order",
    "shipping",
    "calendar",
    "meeting",
    "email",
    "translate",
    "language",
    "stock",
    "price",
    "currency",
    "exchange",
    "map",
    "route",
    "geocode",
    "image",
    "resize",
    "pdf",
    "extract",
    "summary",
    "search",
    "ticket",
    "incident",
    "alert",
    "metric",
    "log",
]


def tool(i: int, rng: random.Random) -> RegisterTool:
    words = rng.sample(WORDS, 4)
    return RegisterTool(
        slug=f"bench-{i:05d}",
        name=f"{words[0].title()} {words[1]} {i}",
        description=f"{' '.join(words)} tool number {i}",
        category=words[0],
        tags=words[:2],
        input_schema={
            "type": "object",
            "properties": {words[2]: {"type": "string"}, "limit": {"type": "integer"}},
            "required": [words[2]],
        },
        version="1.0.0",
        author="bench",
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))] * 1000


def line(name: str, rate: float, lat: list[float], floor: str = "") -> None:
    print(
        f"{name:<40} {rate:>9.1f} calls/s  p50 {percentile(lat, 0.5):7.2f} ms  "
        f"p95 {percentile(lat, 0.95):7.2f} ms  p99 {percentile(lat, 0.99):7.2f} ms{floor}",
        flush=True,
    )


def threaded(n: int, seconds: float, call: Callable[[random.Random], None]) -> tuple[float, list]:
    lat: list[float] = []
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def worker(k: int) -> None:
        rng = random.Random(k)
        mine = []
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            call(rng)
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(lat) / (time.monotonic() - t0), lat


def over_mcp(
    url: str, n: int, seconds: float, make: Callable[[random.Random], tuple[str, dict[str, Any]]]
) -> tuple[float, list[float]]:
    from mcp.client import Client

    lat: list[float] = []

    async def client(k: int, stop: float) -> None:
        rng = random.Random(1000 + k)
        async with Client(url, read_timeout_seconds=60) as c:
            await c.list_tools()
            while time.monotonic() < stop:
                name, args = make(rng)
                t0 = time.perf_counter()
                result = await c.call_tool(name, args)
                lat.append(time.perf_counter() - t0)
                if result.is_error:
                    raise RuntimeError(result.content)

    async def main() -> float:
        stop = time.monotonic() + seconds
        t0 = time.monotonic()
        async with anyio.create_task_group() as tg:
            for k in range(n):
                tg.start_soon(client, k, stop)
        return time.monotonic() - t0

    elapsed = anyio.run(main)
    return len(lat) / elapsed, lat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tools", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="1,000 tools, 3 s per load")
    args = parser.parse_args()
    n_tools, seconds = (1_000, 3.0) if args.quick else (args.tools, args.seconds)
    server = wp.server_url()
    wp.check_local(server)
    secret = Fernet.generate_key().decode()
    with wp.fresh_database(server) as url, tempfile.TemporaryDirectory() as data_dir:
        settings = load_settings(
            database_url=url, secret_key=secret, data_dir=Path(data_dir), read_feed="log"
        )
        container = build_container(settings)
        rng = random.Random(7)
        t0 = time.monotonic()
        ctx = CommandContext(actor="bench", correlation_id=str(uuid.uuid4()))
        import_tools(container.deps, [tool(i, rng) for i in range(n_tools)], ctx, 500)
        container.read_side.follower.catch_up()
        print(f"# imported and projected {n_tools} tools in {time.monotonic() - t0:.1f} s")
        from infra.search.wiring import start_search

        indexer = start_search(container.search_parts(), container.settings, follow_log=True)
        t0 = time.monotonic()
        if indexer is not None:
            indexer.catch_up()
        print(f"# indexed vectors in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        searcher = container.searcher

        def get_tool_inprocess(r: random.Random) -> None:
            slug = f"bench-{r.randrange(n_tools):05d}"
            with container.read_side.connection() as conn, queries.snapshot(conn):
                container.read_side.applied_position(conn)
                queries.get_current(conn, "tool", slug)

        def search_inprocess(r: random.Random) -> None:
            q = " ".join(r.sample(WORDS, 2))
            with container.read_side.connection() as conn:
                container.read_side.applied_position(conn)
                searcher.search(conn, SearchRequest(q=q, kinds=("tool",), limit=10))

        floors: dict[tuple[str, int], float] = {}
        for name, fn in (("get_tool", get_tool_inprocess), ("search_tools", search_inprocess)):
            for n in CLIENTS:
                threaded(n, min(1.0, seconds / 3), fn)  # warm-up
                rate, lat = threaded(n, seconds, fn)
                floors[(name, n)] = rate
                line(f"in-process {name} x{n}", rate, lat)
        container.close()

        port = wp.free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "MCP_LEDGER_SECRET_KEY": secret,
            "MCP_LEDGER_LOG_LEVEL": "warning",
            "MCP_LEDGER_AUTH": "off",  # measured without key checks and rate limits
            "MCP_LEDGER_RATE_LIMIT": "off",
            "MCP_LEDGER_READ_FEED": "log",
        }
        log_path = Path(data_dir) / "up.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cli.main",
                    "up",
                    "--port",
                    str(port),
                    "--data-dir",
                    data_dir,
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log_path.read_text()[-3000:])
                time.sleep(0.2)

            def get_call(r: random.Random) -> tuple[str, dict[str, Any]]:
                return "get_tool", {"slug": f"bench-{r.randrange(n_tools):05d}"}

            def search_call(r: random.Random) -> tuple[str, dict[str, Any]]:
                return "search_tools", {"query": " ".join(r.sample(WORDS, 2)), "limit": 10}

            calls: list[tuple[str, Callable[..., Any]]] = [
                ("get_tool", get_call),
                ("search_tools", search_call),
            ]
            for name, make in calls:
                for n in CLIENTS:
                    over_mcp(f"{base}/mcp", n, min(1.0, seconds / 3), make)  # warm-up
                    rate, lat = over_mcp(f"{base}/mcp", n, seconds, make)
                    floor = floors[(name, n)]
                    line(
                        f"mcp http {name} x{n}",
                        rate,
                        lat,
                        f"  ({rate / floor:.0%} of in-process {floor:.0f}/s)",
                    )
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
