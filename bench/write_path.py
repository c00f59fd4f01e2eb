"""Write-path benchmark: raw floors, the HTTP command path, and bulk import, in one run.

    .venv/bin/python bench/write_path.py [--quick] [--json PATH]

Uses $DATABASE_URL (a server; a fresh `bench_<random>` database is created on it and dropped at
the end) or, when unset, the Postgres that scripts/postgres provides. All traffic goes to
127.0.0.1. Prints one line per figure as it is measured, then a summary and the targets.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import psycopg
from cryptography.fernet import Fernet
from psycopg.types.json import Jsonb

# The checkout this file is in, not the one the virtualenv installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from commands.context import CommandContext
from commands.import_tools import import_tools
from commands.inputs import RegisterTool
from domain.events import DomainEvent, EventMeta, stamp
from infra.container import build_container
from infra.postgres.event_store import EVENTS_TABLE, LedgerApplication, eventsourcing_env
from infra.postgres.schema import ensure_schema
from infra.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}
CONCURRENCY = (1, 8)
IMPORT_BATCH = 500  # tools per transaction (each tool is 2 events)
HTTP_BATCH_CHUNK = 5_000  # tools per POST /api/v1/tools:batch request (under the body limit)

TARGET_HTTP_RATIO = 0.60
TARGET_P99_MS = 50.0
TARGET_IMPORT_EVENTS = 10_000.0


# --------------------------------------------------------------------------------------------
# figures and output


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    floor: str | None = None  # name of the figure this one is compared against
    ratio: float | None = None


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)

    def get(self, name: str) -> Figure | None:
        return next((f for f in self.figures if f.name == name), None)

    def add(self, name: str, value: float, unit: str, floor: str | None = None) -> Figure:
        fig = Figure(name, value, unit)
        base = self.get(floor) if floor else None
        if base is not None and base.value > 0:
            fig.floor, fig.ratio = floor, value / base.value
        self.figures.append(fig)
        print(format_figure(fig), flush=True)
        return fig

    def target(self, name: str, ok: bool, detail: str) -> None:
        self.targets.append({"target": name, "met": ok, "detail": detail})


def fmt_value(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.2f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def format_figure(fig: Figure) -> str:
    line = f"{fig.name:<34} {fmt_value(fig.value, fig.unit):>12} {fig.unit:<11}"
    if fig.ratio is not None:
        line += f" {fig.ratio:6.1%} of {fig.floor}"
    return line.rstrip()


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# timed concurrent load


@dataclass
class Sample:
    kind: str
    start: float
    end: float
    weight: int = 1  # how many units (rows, events, commands) the operation did


Record = Callable[[str, float, float, int], None]


@dataclass
class Worker:
    step: Callable[[Record], None]  # does one unit of work and records its timing
    close: Callable[[], None] = lambda: None


@dataclass
class LoadResult:
    threads: int
    seconds: float
    samples: list[Sample]
    probes: dict[str, float] = field(default_factory=dict)  # counter deltas over the window

    def kinds(self) -> list[str]:
        return sorted({s.kind for s in self.samples})

    def rate(self, kind: str | None = None) -> float:
        units = sum(s.weight for s in self.samples if kind is None or s.kind == kind)
        return units / self.seconds

    def busy_rate(self) -> float:
        """Units per second of time spent inside operations (for one thread of few, long ops)."""
        busy = sum(s.end - s.start for s in self.samples)
        return sum(s.weight for s in self.samples) / busy if busy else 0.0

    def percentile_ms(self, q: float, kind: str | None = None) -> float:
        lat = sorted(s.end - s.start for s in self.samples if kind is None or s.kind == kind)
        if not lat:
            return float("nan")
        rank = min(len(lat) - 1, max(0, round(q * len(lat) + 0.5) - 1))  # nearest rank
        return lat[rank] * 1000


def run_load(
    threads: int,
    make_worker: Callable[[int], Worker],
    warmup: float,
    duration: float,
    probes: dict[str, Callable[[], float]] | None = None,
) -> LoadResult:
    """Runs `threads` workers for warm-up + duration; keeps the operations that both started
    and ended inside the measured window. `probes` are cumulative counters (e.g. CPU seconds)
    read at the window's start and end."""
    probes = probes or {}
    readings: dict[str, float] = {}
    workers = [make_worker(i) for i in range(threads)]
    per_thread: list[list[Sample]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    stop = threading.Event()
    barrier = threading.Barrier(threads + 1)
    window: dict[str, float] = {}

    def body(i: int) -> None:
        out = per_thread[i]

        def record(kind: str, t0: float, t1: float, weight: int = 1) -> None:
            if t0 >= window["start"] and t1 <= window["end"]:
                out.append(Sample(kind, t0, t1, weight))

        try:
            barrier.wait()
            while not stop.is_set() and time.perf_counter() < window["end"]:
                workers[i].step(record)
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    pool = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(threads)]
    try:
        for t in pool:
            t.start()
        now = time.perf_counter()
        window["start"] = now + warmup
        window["end"] = now + warmup + duration
        barrier.wait()
        time.sleep(max(0.0, window["start"] - time.perf_counter()))
        before = {k: read() for k, read in probes.items()}
        time.sleep(max(0.0, window["end"] - time.perf_counter()))
        readings = {k: read() - before[k] for k, read in probes.items()}
        deadline = window["end"] + 60  # an operation in flight gets at most a minute more
        for t in pool:
            t.join(max(0.0, deadline - time.perf_counter()))
        if any(t.is_alive() for t in pool):
            stop.set()
            raise RuntimeError("workers did not stop within 60 s after the measured window")
        if errors:
            raise RuntimeError(f"a worker failed: {errors[0]!r}") from errors[0]
    finally:
        stop.set()
        for w in workers:
            with suppress(Exception):
                w.close()
    samples = [s for out in per_thread for s in out]
    return LoadResult(threads, duration, samples, readings)


def add_load_figures(
    report: Report, prefix: str, result: LoadResult, unit: str, floor: str | None
) -> None:
    report.add(f"{prefix}.rate", result.rate(), unit, floor)
    report.add(f"{prefix}.p50", result.percentile_ms(0.50), "ms")
    report.add(f"{prefix}.p99", result.percentile_ms(0.99), "ms")
    add_cpu_figures(report, prefix, result)


def add_cpu_figures(report: Report, prefix: str, result: LoadResult) -> None:
    """Where the CPU went during the window: per unit of work, and the whole machine."""
    units = sum(s.weight for s in result.samples) or 1
    for name, delta in result.probes.items():
        if name == "machine":
            report.add(f"{prefix}.machine_busy_cores", delta / result.seconds, "cores")
        else:
            report.add(f"{prefix}.{name}_cpu_per_op", delta * 1000 / units, "ms")


# --------------------------------------------------------------------------------------------
# CPU accounting (Linux /proc; Postgres runs on this machine since it is on 127.0.0.1)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> float:
    """CPU seconds the whole machine spent not idle (every process, ours or not)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


class CpuProbes:
    """Counters read at the start and end of each measured window: this process (the load
    generator), the Postgres backends serving the bench database, the API server if any,
    and the machine as a whole (which includes anything else running on it)."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.server: ApiServer | None = None

    def postgres(self) -> float:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        ).fetchall()
        return sum(process_cpu(r[0]) for r in rows)

    def probes(self) -> dict[str, Callable[[], float]]:
        out: dict[str, Callable[[], float]] = {
            "client": time.process_time,
            "postgres": self.postgres,
            "machine": machine_busy,
        }
        if self.server is not None and self.server.proc is not None:
            out["server"] = lambda: process_cpu(self.server.proc.pid)  # type: ignore[union-attr]
        return out

    def close(self) -> None:
        self.conn.close()


# --------------------------------------------------------------------------------------------
# Postgres: a fresh database per run


def server_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    log("DATABASE_URL unset: asking scripts/postgres for one")
    out = subprocess.run(
        [str(ROOT / "scripts" / "postgres")], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def check_local(url: str) -> None:
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [parts.hostname or ""])[0]
    if host not in LOCAL_HOSTS and not host.startswith("/"):
        raise SystemExit(f"refusing to benchmark a non-local Postgres ({host}): 127.0.0.1 only")


def with_db(url: str, dbname: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + dbname))


@contextmanager
def fresh_database(server: str) -> Iterator[str]:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    log(f"created database {name}")
    try:
        yield with_db(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        log(f"dropped database {name}")


def server_facts(url: str) -> dict[str, str]:
    names = ("server_version", "synchronous_commit", "fsync", "commit_delay", "wal_sync_method")
    with psycopg.connect(url, autocommit=True) as conn:
        return {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names}  # type: ignore[index]


# --------------------------------------------------------------------------------------------
# 1. raw psycopg INSERT floor

RAW_PAYLOAD = {
    "occurred_at": "2026-01-01T00:00:00+00:00",
    "actor": "bench",
    "correlation_id": "00000000-0000-0000-0000-000000000000",
    "causation_id": "00000000-0000-0000-0000-000000000000",
    "reason": None,
    "n": 0,
}


def bench_raw_insert(
    report: Report, url: str, cpu: CpuProbes, warmup: float, duration: float
) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_raw (id bigserial PRIMARY KEY, data jsonb NOT NULL)")

    def make_worker(_: int) -> Worker:
        conn = psycopg.connect(url)

        def step(record: Record) -> None:
            t0 = time.perf_counter()
            conn.execute("INSERT INTO bench_raw (data) VALUES (%s)", (Jsonb(RAW_PAYLOAD),))
            conn.commit()
            record("insert", t0, time.perf_counter(), 1)

        return Worker(step, conn.close)

    for n in CONCURRENCY:
        result = run_load(n, make_worker, warmup, duration, cpu.probes())
        add_load_figures(report, f"raw_insert.c{n}", result, "ops/s", None)


# --------------------------------------------------------------------------------------------
# 2. raw eventsourcing append floor


@dataclass(frozen=True, kw_only=True)
class BenchPinged(DomainEvent):
    n: int


def ping(n: int) -> BenchPinged:
    meta = EventMeta("bench", str(uuid.uuid4()), str(uuid.uuid4()), datetime.now(UTC))
    return BenchPinged(**stamp(meta, uuid.uuid4(), 1), n=n)


def bench_es_append(
    report: Report, url: str, cpu: CpuProbes, warmup: float, duration: float
) -> None:
    # Built the way infra/container.py builds it.
    app = LedgerApplication(env=eventsourcing_env(url, max(CONCURRENCY)))
    try:
        ensure_schema(url, auto_migrate=True)

        def make_worker(_: int) -> Worker:
            def step(record: Record) -> None:
                event = ping(0)
                t0 = time.perf_counter()
                app.save(event)
                record("append", t0, time.perf_counter(), 1)

            return Worker(step)

        for n in CONCURRENCY:
            result = run_load(n, make_worker, warmup, duration, cpu.probes())
            add_load_figures(report, f"es_append.c{n}", result, "events/s", f"raw_insert.c{n}.rate")

        # The floor for bulk import: one transaction of IMPORT_BATCH * 2 events, one writer.
        def make_batch_worker(_: int) -> Worker:
            def step(record: Record) -> None:
                events = [ping(i) for i in range(IMPORT_BATCH * 2)]
                t0 = time.perf_counter()
                app.save(*events)
                record("batch", t0, time.perf_counter(), len(events))

            return Worker(step)

        result = run_load(1, make_batch_worker, warmup, duration)
        report.add(f"es_append_batch{IMPORT_BATCH * 2}.c1.rate", result.busy_rate(), "events/s")
        report.add(f"es_append_batch{IMPORT_BATCH * 2}.c1.p50", result.percentile_ms(0.5), "ms")

        # Nothing else may ever replay these events (their topic is __main__:BenchPinged).
        with app.recorder.datastore.transaction(commit=True) as curs:  # type: ignore[attr-defined]
            curs.execute(f"TRUNCATE {EVENTS_TABLE}")
    finally:
        app.close()


# --------------------------------------------------------------------------------------------
# 3. the HTTP command path, and 4b. bulk import over HTTP


def tool_body(slug: str) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": "Weather lookup",
        "description": "Current weather for a city",
        "category": "weather",
        "tags": ["weather", "geo"],
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        "version": "1.0.0",
        "author": "platform-team",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiServer:
    """`mcp-ledger api` in a subprocess (as tests/conftest.py LiveServer), log level warning."""

    def __init__(self, database_url: str, secret_key: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "api.log"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "MCP_LEDGER_SECRET_KEY": secret_key,
            "MCP_LEDGER_LOG_LEVEL": "warning",
            "MCP_LEDGER_AUTH": "off",  # measured without key checks and rate limits
            "MCP_LEDGER_RATE_LIMIT": "off",
            "MCP_LEDGER_DATA_DIR": str(workdir / "data"),
            "MCP_LEDGER_IMPORT_BATCH_SIZE": str(IMPORT_BATCH),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ApiServer:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "api", "--host", "127.0.0.1",
                 "--port", str(self.port)],
                cwd=ROOT, env=self.env, stdout=out, stderr=out,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=self.url, trust_env=False, timeout=1) as client:
            while time.monotonic() < deadline:
                with suppress(httpx.HTTPError):
                    if client.get("/health/ready").status_code == 200:
                        return self
                if self.proc.poll() is not None:
                    raise RuntimeError(f"api exited: {self.log_tail()}")
                time.sleep(0.1)
        raise RuntimeError(f"api did not become ready in 30 s: {self.log_tail()}")

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return process_cpu(self.proc.pid)

    def log_tail(self) -> str:
        with suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:]
        return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def expect(response: httpx.Response, status: int) -> dict[str, Any]:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} → "
            f"{response.status_code}: {response.text[:500]}"
        )
    return response.json()  # type: ignore[no-any-return]


def bench_http(
    report: Report, server: ApiServer, cpu: CpuProbes, warmup: float, duration: float
) -> None:
    def make_worker(i: int) -> Worker:
        run_id = uuid.uuid4().hex[:8]  # slugs unique across workers and loads
        client = httpx.Client(base_url=server.url, trust_env=False, timeout=30)
        counter = iter(range(10**9))

        def step(record: Record) -> None:
            slug = f"b{run_id}-{i}-{next(counter)}"
            t0 = time.perf_counter()
            created = expect(client.post("/api/v1/tools", json=tool_body(slug)), 201)
            t1 = time.perf_counter()
            record("register", t0, t1, 1)
            patch = {"version": "1.0.1", "description": "Current weather for a city, updated"}
            expect(client.patch(f"/api/v1/tools/{created['id']}", json=patch), 200)
            record("update", t1, time.perf_counter(), 1)

        return Worker(step, client.close)

    for n in CONCURRENCY:
        result = run_load(n, make_worker, warmup, duration, cpu.probes())
        prefix = f"http.c{n}"
        report.add(f"{prefix}.rate", result.rate(), "commands/s", f"es_append.c{n}.rate")
        report.add(f"{prefix}.p50", result.percentile_ms(0.50), "ms")
        report.add(f"{prefix}.p99", result.percentile_ms(0.99), "ms")
        for kind in ("register", "update"):
            report.add(f"{prefix}.{kind}.p50", result.percentile_ms(0.50, kind), "ms")
            report.add(f"{prefix}.{kind}.p99", result.percentile_ms(0.99, kind), "ms")
        add_cpu_figures(report, prefix, result)


def bench_http_import(report: Report, server: ApiServer, n_tools: int) -> None:
    run_id = uuid.uuid4().hex[:6]

    def body(start: int, count: int) -> bytes:
        tools = [tool_body(f"h{run_id}-{k}") for k in range(start, start + count)]
        return json.dumps({"tools": tools}).encode()

    headers = {"content-type": "application/json", "x-actor": "bench"}
    with httpx.Client(base_url=server.url, trust_env=False, timeout=600) as client:
        warm = body(-IMPORT_BATCH, IMPORT_BATCH)
        expect(client.post("/api/v1/tools:batch", content=warm, headers=headers), 200)
        chunks = [
            body(s, min(HTTP_BATCH_CHUNK, n_tools - s)) for s in range(0, n_tools, HTTP_BATCH_CHUNK)
        ]
        cpu0, t0 = server.cpu_seconds(), time.perf_counter()
        committed = 0
        for chunk in chunks:
            r = client.post("/api/v1/tools:batch", content=chunk, headers=headers)
            committed += expect(r, 200)["committed"]
        elapsed = time.perf_counter() - t0
        server_cpu = server.cpu_seconds() - cpu0
    if committed != n_tools:
        raise RuntimeError(f"HTTP import committed {committed} of {n_tools} tools")
    floor = f"es_append_batch{IMPORT_BATCH * 2}.c1.rate"
    report.add("import.http.tools_rate", n_tools / elapsed, "tools/s")
    report.add("import.http.rate", 2 * n_tools / elapsed, "events/s", floor)
    report.add("import.http.server_cpu_per_tool", server_cpu * 1000 / n_tools, "ms")


# --------------------------------------------------------------------------------------------
# 4a. bulk import in-process


def bench_inprocess_import(
    report: Report, url: str, secret_key: str, workdir: Path, n_tools: int
) -> None:
    settings = load_settings(
        database_url=url,
        secret_key=secret_key,
        data_dir=workdir / "data",
        import_batch_size=IMPORT_BATCH,
    )
    container = build_container(settings)
    try:
        run_id = uuid.uuid4().hex[:6]
        ctx = CommandContext(actor="bench", correlation_id=f"bench-import-{run_id}")
        warm = [RegisterTool(**tool_body(f"w{run_id}-{k}")) for k in range(IMPORT_BATCH)]
        items = [RegisterTool(**tool_body(f"i{run_id}-{k}")) for k in range(n_tools)]
        check_outcomes(import_tools(container.deps, warm, ctx, IMPORT_BATCH), len(warm))
        cpu0, t0 = time.process_time(), time.perf_counter()
        outcomes = import_tools(container.deps, items, ctx, IMPORT_BATCH)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        check_outcomes(outcomes, n_tools)
    finally:
        container.close()
    floor = f"es_append_batch{IMPORT_BATCH * 2}.c1.rate"
    report.add("import.inproc.tools_rate", n_tools / elapsed, "tools/s")
    report.add("import.inproc.rate", 2 * n_tools / elapsed, "events/s", floor)
    report.add("import.inproc.cpu_per_tool", cpu * 1000 / n_tools, "ms")


def check_outcomes(outcomes: list[Any], expected: int) -> None:
    failed = next((o for o in outcomes if o.error), None)
    if failed is not None:
        raise RuntimeError(f"import batch {failed.index} failed: {failed.error}")
    stored = sum(len(o.results) for o in outcomes)
    if stored != expected:
        raise RuntimeError(f"import stored {stored} of {expected} tools")


# --------------------------------------------------------------------------------------------
# summary


def judge(report: Report) -> None:
    http8, es8 = report.get("http.c8.rate"), report.get("es_append.c8.rate")
    if http8 and es8:
        ratio = http8.value / es8.value if es8.value else 0.0
        report.target(
            f"HTTP commands/s at 8 clients >= {TARGET_HTTP_RATIO:.0%} of raw append at 8",
            ratio >= TARGET_HTTP_RATIO,
            f"{http8.value:,.0f} / {es8.value:,.0f} = {ratio:.1%}",
        )
    p99s = {k: report.get(f"http.c8.{k}.p99") for k in ("register", "update")}
    if all(p99s.values()):
        worst = max(p99s.values(), key=lambda f: f.value)  # type: ignore[union-attr]
        report.target(
            f"HTTP p99 per command at 8 clients < {TARGET_P99_MS:.0f} ms",
            worst.value < TARGET_P99_MS,  # type: ignore[union-attr]
            ", ".join(f"{k} {f.value:.1f} ms" for k, f in p99s.items()),  # type: ignore[union-attr]
        )
    for where in ("inproc", "http"):
        fig = report.get(f"import.{where}.rate")
        if fig:
            report.target(
                f"bulk import ({where}) >= {TARGET_IMPORT_EVENTS:,.0f} events/s",
                fig.value >= TARGET_IMPORT_EVENTS,
                f"{fig.value:,.0f} events/s",
            )


def print_summary(report: Report) -> None:
    rows = [
        ("raw INSERT+COMMIT", "raw_insert", "ops/s"),
        ("eventsourcing append", "es_append", "events/s"),
        ("HTTP register+update", "http", "commands/s"),
    ]
    print("\nsummary")
    print(f"{'path':<24}{'conc':>5}{'rate':>12}  {'unit':<11}{'p50 ms':>8}{'p99 ms':>8}  vs floor")
    for label, prefix, unit in rows:
        for n in CONCURRENCY:
            rate = report.get(f"{prefix}.c{n}.rate")
            if rate is None:
                continue
            p50, p99 = report.get(f"{prefix}.c{n}.p50"), report.get(f"{prefix}.c{n}.p99")
            vs = f"{rate.ratio:.1%}" if rate.ratio is not None else "-"
            print(
                f"{label:<24}{n:>5}{rate.value:>12,.0f}  {unit:<11}"
                f"{(p50.value if p50 else float('nan')):>8.2f}"
                f"{(p99.value if p99 else float('nan')):>8.2f}  {vs}"
            )
    batch = report.get(f"es_append_batch{IMPORT_BATCH * 2}.c1.rate")
    if batch:
        print(f"{'append, 1000 ev/txn':<24}{1:>5}{batch.value:>12,.0f}  events/s")
    for label, where in (("import in-process", "inproc"), ("import POST :batch", "http")):
        fig = report.get(f"import.{where}.rate")
        if fig:
            tools = report.get(f"import.{where}.tools_rate")
            vs = f"{fig.ratio:.1%}" if fig.ratio is not None else "-"
            extra = f" ({tools.value:,.0f} tools/s)" if tools else ""
            print(f"{label:<24}{1:>5}{fig.value:>12,.0f}  {'events/s':<11}{'':>16}  {vs}{extra}")
    print("\ntargets")
    for t in report.targets:
        print(f"  [{'MET ' if t['met'] else 'MISS'}] {t['target']}: {t['detail']}")


# --------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="~2 s per measurement, 2,000 tools")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--seconds", type=float, help="measured seconds per load (default 10; 2)")
    p.add_argument("--tools", type=int, help="tools per bulk import (default 20,000; 2,000)")
    args = p.parse_args(argv)
    args.seconds = args.seconds or (2.0 if args.quick else 10.0)
    args.warmup = 0.5 if args.quick else 2.0
    args.tools = args.tools or (2_000 if args.quick else 20_000)
    return args


def _terminate(signum: int, _: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    report = Report()
    secret_key = Fernet.generate_key().decode()
    server = server_url()
    check_local(server)
    meta: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "quick": args.quick,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "tools": args.tools,
        "import_batch": IMPORT_BATCH,
        "http_batch_chunk": HTTP_BATCH_CHUNK,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    with (
        tempfile.TemporaryDirectory(prefix="mcp-ledger-bench-") as tmp,
        fresh_database(server) as url,
    ):
        workdir = Path(tmp)
        meta["postgres"] = server_facts(url)
        log(
            f"postgres {meta['postgres']['server_version']}, "
            f"synchronous_commit={meta['postgres']['synchronous_commit']}, "
            f"{meta['cpus']} cpus, load {meta['loadavg_start'][0]:.2f}"
        )
        w, d = args.warmup, args.seconds
        cpu = CpuProbes(url)
        api = ApiServer(url, secret_key, workdir)
        try:
            bench_raw_insert(report, url, cpu, w, d)
            bench_es_append(report, url, cpu, w, d)
            api.start()
            cpu.server = api
            bench_http(report, api, cpu, w, d)
            bench_http_import(report, api, args.tools)
            api.stop()
            cpu.server = None
            bench_inprocess_import(report, url, secret_key, workdir, args.tools)
        finally:
            api.stop()
            cpu.close()
    meta["loadavg_end"] = os.getloadavg()
    meta["elapsed_s"] = round(time.perf_counter() - started, 1)
    judge(report)
    print_summary(report)
    print(f"\n(run took {meta['elapsed_s']} s; load average {meta['loadavg_end'][0]:.2f})")
    if args.json:
        data = {
            "meta": meta,
            "figures": [
                {**f.__dict__, "value": None if f.value != f.value else f.value}  # NaN → null
                for f in report.figures
            ],
            "targets": report.targets,
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
