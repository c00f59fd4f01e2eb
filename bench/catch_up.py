"""Catch-up benchmark: how fast the read models catch up with a backlog in the event store.

    .venv/bin/python bench/catch_up.py [--events 100000] [--quick] [--skip-kafka] [--json PATH]

Fills a fresh database with tools (each registered, then updated three times: 5 events per tool
counting the slug claim), then measures in the same run:
  - floor.read_log: reading and decoding the whole notification log (what any catch-up must do);
  - catch_up.in_process: from an empty read side, the log follower feeding the projection runner
    in batches of 500, as `mcp-ledger up` does after an import;
  - catch_up.kafka: from an empty read side again, `mcp-ledger relay` and `mcp-ledger projector
    --source kafka` (Faust) as subprocesses on fresh topics, timed from their start until the
    history holds every event; `relay.publish` is when the relay had published them all, and
    `catch_up.kafka.steady` leaves out the start-up before the first row is applied.
Target: catch-up >= 5,000 events/s, in-process and through Kafka. Uses $DATABASE_URL (a local
server; a fresh `bench_<random>` database is created and dropped) and $KAFKA_BOOTSTRAP_SERVERS or
the dev broker of scripts/kafka.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

# The checkout this file is in, not the one the virtualenv installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from freshness import Service, delete_kafka_leftovers, kafka_bootstrap, service_env
from rebuild import line, populate
from write_path import check_local, fresh_database, server_url

from infra.container import Container, build_container
from infra.settings import load_settings
from projections.rebuild import stream_log

TARGET_EVENTS_PER_S = 5_000.0
EVENTS_PER_TOOL = 5
KAFKA_TIMEOUT = 900.0  # s for the whole backlog through Kafka


def empty_read_side(c: Container) -> None:
    side = c.read_side
    with side.connection() as conn, conn.transaction(), conn.cursor() as cur:
        for p in side.runner.projections:
            p.reset(cur)
        for table in ("projection_versions", "projection_dead_letters", "projection_checkpoints"):
            cur.execute(f"DELETE FROM {table}")


def history_rows(c: Container) -> int:
    with c.read_side.connection() as conn:
        row = conn.execute("SELECT count(*) AS n FROM rm_history").fetchone()
    return int(row["n"]) if row else 0


def catch_up_in_process(c: Container, total: int) -> float:
    empty_read_side(c)
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        if done[0] // 20_000 != (done[0] - n) // 20_000:
            print(f"# caught up {done[0]:,}/{total:,}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    applied = c.read_side.follower.catch_up(progress)
    return applied / (time.perf_counter() - started)


def relayed(c: Container) -> int:
    with c.read_side.connection() as conn:
        row = conn.execute(
            "SELECT coalesce(max(position), 0) AS p FROM relay_partitions"
        ).fetchone()
    return int(row["p"]) if row else 0


@dataclass
class Timings:
    seconds: float = 0.0  # from the start of the services until every history row is there
    published: float | None = None  # until the relay had published up to the head
    first: tuple[float, int] | None = None  # (seconds, rows) when the first rows were seen


def wait_for_history(c: Container, services: list[Service], expected: int, head: int) -> Timings:
    started, t = time.perf_counter(), Timings()
    while (n := history_rows(c)) < expected:
        now = time.perf_counter() - started
        if t.first is None and n > 0:
            t.first = (now, n)
        if t.published is None and relayed(c) >= head:
            t.published = now
        if now > KAFKA_TIMEOUT:
            raise RuntimeError(f"only {n:,}/{expected:,} history rows after {KAFKA_TIMEOUT} s")
        for s in services:
            s.check()
        time.sleep(0.2)
    t.seconds = time.perf_counter() - started
    return t


def catch_up_kafka(
    c: Container, url: str, secret: str, expected: int, head: int, total: int
) -> list[Any]:
    """Relay + Faust projector from an empty read side; figures as `line` dicts."""
    empty_read_side(c)
    prefix = f"bench-catchup-{uuid.uuid4().hex[:10]}"
    with kafka_bootstrap() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        env = service_env(
            url, secret, Path(tmp) / "data", KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            MCP_LEDGER_KAFKA_TOPIC_PREFIX=prefix, MCP_LEDGER_READ_FEED="kafka",
        )  # fmt: skip
        services: list[Service] = []
        try:
            for name, args in (("relay", ["relay"]), ("projector", ["projector"])):
                services.append(Service(name, args, env, Path(tmp)).start())
            t = wait_for_history(c, services, expected, head)
        finally:
            for s in reversed(services):
                s.stop()
            delete_kafka_leftovers(bootstrap, prefix, [f"{prefix}-projector"])
    figures = []
    if t.published is not None:
        note = f"{t.published:.1f} s"
        figures.append(line("relay.publish", total / t.published, "events/s", note))
    note = f"{t.seconds:.1f} s from the start"
    figures.append(line("catch_up.kafka", total / t.seconds, "events/s", note))
    if t.first is not None:
        share = (expected - t.first[1]) / expected
        rate = total * share / (t.seconds - t.first[0])
        figures.append(line("catch_up.kafka.steady", rate, "events/s", "after the first rows"))
    return figures


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    server = server_url()
    check_local(server)
    n_tools = max(args.events // EVENTS_PER_TOOL, 1)
    secret = Fernet.generate_key().decode()
    figures = []
    with fresh_database(server) as url:
        c = build_container(load_settings(database_url=url, secret_key=secret))
        try:
            head = populate(c, n_tools)
            total = sum(1 for _ in stream_log(c.read_side.records_after))
            print(f"# stored {n_tools:,} tools: {total:,} events, head {head:,}", flush=True)
            started = time.perf_counter()
            sum(1 for _ in stream_log(c.read_side.records_after))
            read_rate = total / (time.perf_counter() - started)
            figures.append(line("floor.read_log", read_rate, "events/s", f"{total:,} events"))
            rate = catch_up_in_process(c, total)
            note = f"{rate / read_rate:.0%} of read_log"
            figures.append(line("catch_up.in_process", rate, "events/s", note))
            expected = history_rows(c)
            if not args.skip_kafka:
                figures += catch_up_kafka(c, url, secret, expected, head, total)
        finally:
            c.close()
    print()
    for f in figures:
        if f["name"].startswith("catch_up"):
            met = "MET" if f["value"] >= TARGET_EVENTS_PER_S else "MISS"
            print(f"[{met}] {f['name']} >= {TARGET_EVENTS_PER_S:,.0f} events/s: {f['value']:,.0f}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="20,000 events")
    parser.add_argument("--skip-kafka", action="store_true", help="in-process only")
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
