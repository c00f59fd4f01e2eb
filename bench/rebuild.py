"""Rebuild benchmark: how fast current state + version history are rebuilt from the event store.

    .venv/bin/python bench/rebuild.py [--events 200000] [--quick] [--json PATH]

Fills a fresh database with tools (each registered, then updated three times: 5 events per tool
counting the slug claim), then measures in the same run:
  - floor.read_log: reading and decoding the whole notification log (what any rebuild must do);
  - floor.copy: COPY of as many history-sized rows into a scratch table (the write floor);
  - rebuild: `projections.rebuild.rebuild` of both projections, events/s over all store events;
  - verify: the independent replay check that `mcp-ledger rebuild` runs afterwards.
Target: rebuild >= 15,000 events/s. (The live path's catch-up: bench/catch_up.py.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from psycopg.types.json import Jsonb

# The checkout this file is in, not the one the virtualenv installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from write_path import check_local, fresh_database, server_url

from commands.context import CommandContext
from commands.import_tools import import_tools
from commands.inputs import RegisterTool
from domain.events import EventMeta, stamp
from domain.tool import ToolUpdated
from infra.container import Container, build_container
from infra.settings import load_settings
from projections.rebuild import rebuild, stream_log
from projections.verify import differences

TARGET_EVENTS_PER_S = 15_000.0
UPDATES_PER_TOOL = 3


def line(name: str, value: float, unit: str, note: str = "") -> dict[str, Any]:
    print(f"{name:<28} {value:>12,.0f} {unit:<10} {note}", flush=True)
    return {"name": name, "value": value, "unit": unit}


def tool_input(i: int) -> RegisterTool:
    return RegisterTool(
        slug=f"bench-tool-{i}",
        name=f"Benchmark tool {i}",
        description=f"Looks up item {i} in the benchmark catalogue",
        category=("weather", "finance", "search", "code")[i % 4],
        tags=["bench", f"group-{i % 10}"],
        input_schema={"type": "object", "properties": {"id": {"type": "string"}}},
        version="1.0.0",
        author="bench",
    )


def populate(c: Container, n_tools: int) -> int:
    ctx = CommandContext(actor="bench", correlation_id="bench-rebuild")
    items = [tool_input(i) for i in range(n_tools)]
    outcomes = import_tools(c.deps, items, ctx, 1000)
    ids = [r.id for o in outcomes for r in o.results]
    meta = EventMeta("bench", "bench-rebuild", "bench", datetime.now(UTC))
    batch = []
    for step in range(1, UPDATES_PER_TOOL + 1):
        for tool_id in ids:
            changes = {"version": f"1.0.{step}", "description": f"revision {step}"}
            batch.append(ToolUpdated(**stamp(meta, tool_id, 1 + step), changes=changes))
            if len(batch) == 2000:
                c.store.append(batch)
                batch = []
    if batch:
        c.store.append(batch)
    return c.store.head()


def copy_floor(c: Container, rows: int) -> float:
    snapshot = Jsonb({"name": "x" * 40, "tags": ["a", "b"], "input_schema": {"type": "object"}})
    with c.read_side.connection() as conn, conn.transaction(), conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE floor_copy (LIKE rm_history) ON COMMIT DROP")
        started = time.perf_counter()
        with cur.copy("COPY floor_copy FROM STDIN") as copy:
            now = datetime.now(UTC)
            for i in range(rows):
                copy.write_row((uuid.uuid4(), 1, "tool", i, "ToolUpdated", snapshot, Jsonb([]),
                                "bench", None, "c", "k", now))  # fmt: skip
        return rows / (time.perf_counter() - started)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    server = server_url()
    check_local(server)
    n_tools = max(args.events // (2 + UPDATES_PER_TOOL), 1)
    figures = []
    with fresh_database(server) as url:
        settings = load_settings(database_url=url, secret_key=Fernet.generate_key().decode())
        c = build_container(settings)
        try:
            started = time.perf_counter()
            head = populate(c, n_tools)
            print(f"# stored {n_tools:,} tools, head position {head:,} "
                  f"({time.perf_counter() - started:.1f} s)", flush=True)  # fmt: skip
            side = c.read_side
            total = sum(1 for _ in stream_log(side.records_after))
            started = time.perf_counter()
            assert sum(1 for _ in stream_log(side.records_after)) == total
            read_rate = total / (time.perf_counter() - started)
            figures.append(line("floor.read_log", read_rate, "events/s", f"{total:,} events"))
            figures.append(line("floor.copy", copy_floor(c, total), "rows/s"))

            done = [0]

            def progress(n: int) -> None:
                done[0] += n
                if done[0] % max(total // 10 // 5000 * 5000, 5000) == 0:
                    print(f"# rebuilt {done[0]:,}/{total:,}", flush=True)

            with side.connection() as conn:
                started = time.perf_counter()
                rebuild(conn, side.runner.projections, side.records_after, progress)
                seconds = time.perf_counter() - started
                rate = total / seconds
                note = f"{rate / read_rate:.0%} of read_log; {seconds:.1f} s"
                figures.append(line("rebuild.current+history", rate, "events/s", note))
                started = time.perf_counter()
                problems = differences(conn, stream_log(side.records_after))
                figures.append(line("verify", total / (time.perf_counter() - started), "events/s"))
            if problems:
                print("# VERIFY FAILED:", *problems, sep="\n  ")
            met = "MET" if rate >= TARGET_EVENTS_PER_S else "MISS"
            print(f"\n[{met}] rebuild >= {TARGET_EVENTS_PER_S:,.0f} events/s: {rate:,.0f}")
        finally:
            c.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="20,000 events")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.events = 20_000
    figures = run(args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
