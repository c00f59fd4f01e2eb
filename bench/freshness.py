"""Freshness benchmark: how long after a command's 2xx its change is visible in `rm_tools`.

    .venv/bin/python bench/freshness.py [--quick] [--rate 50] [--commands 2000] [--json PATH]

Three phases in one run, each on its own fresh database / topic:
  1. kafka_raw: the floor. A kafka-python producer (acks=all) sends to a fresh 3-partition
     topic at the same rate; a consumer in this process times produce-send -> consume.
  2. kafka_pipeline: `mcp-ledger api` (MCP_LEDGER_READ_FEED=kafka), `mcp-ledger relay` and
     `mcp-ledger projector --source kafka` (Faust) as subprocesses. Register and update commands
     over HTTP on a fixed schedule; a watcher thread polls rm_tools every few ms and stamps when
     each command's aggregate version shows up. lag = seen - 2xx received.
  3. follow_log: the same load against `mcp-ledger api --follow-log` (projections in-process,
     no relay, no Kafka): the comparison.
Target (kafka_pipeline): lag p50 < 50 ms, p99 < 200 ms. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
from cryptography.fernet import Fernet

# The checkout this file is in, not the one the virtualenv installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from write_path import (
    LOCAL_HOSTS,
    ROOT,
    Report,
    check_local,
    expect,
    free_port,
    fresh_database,
    log,
    machine_busy,
    process_cpu,
    server_facts,
    server_url,
    tool_body,
)

from infra.kafka.topics import TopicSpec

TARGET_P50_MS = 50.0
TARGET_P99_MS = 200.0
PARTITIONS = 3  # as the relay's topics (MCP_LEDGER_KAFKA_PARTITIONS default)
FLOOR_PAYLOAD = os.urandom(300).hex().encode()  # ~ the size of a tool event's message value
POSITION_MARGIN = 4  # a command's rm_tools row may sit a little below the position it returns
START_TIMEOUT = 60.0  # s: a service to start
FIRST_VISIBLE_TIMEOUT = 120.0  # s: the first command to reach rm_tools (consumer group join)
DRAIN_TIMEOUT = 30.0  # s after the last 2xx for the rest to become visible


# --------------------------------------------------------------------------------------------
# statistics


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; `inf` (never seen) sorts last."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def ms(values: list[float]) -> list[float]:
    return [v * 1000 for v in values]


def add_distribution(
    report: Report, prefix: str, values_ms: list[float], floor: str | None = None
) -> None:
    """p50, p90, p99, max; each percentile compared with the same percentile of `floor`."""
    for q, name in ((0.50, "p50"), (0.90, "p90"), (0.99, "p99")):
        report.add(
            f"{prefix}.{name}", percentile(values_ms, q), "ms", f"{floor}.{name}" if floor else None
        )
    report.add(f"{prefix}.max", max(values_ms, default=float("nan")), "ms")


# --------------------------------------------------------------------------------------------
# subprocesses


@dataclass
class Service:
    """One `mcp-ledger` command in a subprocess, stopped by its pid."""

    name: str
    args: list[str]
    env: dict[str, str]
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> Service:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *self.args],
                cwd=ROOT, env=self.env, stdout=out, stderr=out,
            )  # fmt: skip
        return self

    def check(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = self.proc.returncode if self.proc else None
            raise RuntimeError(f"{self.name} exited ({code}): {self.log_tail()}")

    def cpu_seconds(self) -> float:
        return process_cpu(self.proc.pid) if self.proc else 0.0

    def log_tail(self) -> str:
        with suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:]
        return ""

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name} (pid {self.proc.pid}) did not stop in {timeout:.0f} s: killing it")
            self.proc.kill()
            self.proc.wait()


def start_api(
    env: dict[str, str], workdir: Path, services: list[Service], *extra: str
) -> tuple[Service, str]:
    """Starts `mcp-ledger api` (added to `services` at once, so it is stopped even if it never
    gets ready) and waits for /health/ready."""
    port = free_port()
    args = ["api", "--host", "127.0.0.1", "--port", str(port), *extra]
    api = Service("api", args, env, workdir).start()
    services.append(api)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(base_url=url, trust_env=False, timeout=1) as client:
        while time.monotonic() < deadline:
            with suppress(httpx.HTTPError):
                if client.get("/health/ready").status_code == 200:
                    return api, url
            api.check()
            time.sleep(0.1)
    raise RuntimeError(f"api did not become ready in {START_TIMEOUT:.0f} s: {api.log_tail()}")


def service_env(database_url: str, secret_key: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The inherited environment without any ledger or Kafka settings, plus this phase's."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MCP_LEDGER_") and k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
    }
    return {
        **base,
        "DATABASE_URL": database_url,
        "MCP_LEDGER_SECRET_KEY": secret_key,
        "MCP_LEDGER_LOG_LEVEL": "warning",
        "MCP_LEDGER_AUTH": "off",  # measured without key checks and rate limits
        "MCP_LEDGER_RATE_LIMIT": "off",
        "MCP_LEDGER_DATA_DIR": str(data_dir),
        **extra,
    }


# --------------------------------------------------------------------------------------------
# Kafka


@contextmanager
def kafka_bootstrap() -> Iterator[str]:
    """$KAFKA_BOOTSTRAP_SERVERS if set, else the dev broker of scripts/kafka under a lease held
    by this process (released at the end: a broker the lease started stops if nobody else
    holds one), as scripts/test does."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        check_local_kafka(given)
        yield given
        return
    script = str(ROOT / "scripts" / "kafka")
    lease = str(os.getpid())
    try:
        out = subprocess.run(
            [script, "start", "--lease", lease],
            check=True, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        line = out.stdout.strip().splitlines()[-1]
        bootstrap = line.removeprefix("KAFKA_BOOTSTRAP_SERVERS=")
        check_local_kafka(bootstrap)
        yield bootstrap
    finally:
        subprocess.run([script, "release", lease], check=False, capture_output=True, timeout=120)


def check_local_kafka(bootstrap: str) -> None:
    for address in bootstrap.split(","):
        host = urlsplit("//" + address.strip().split("://")[-1]).hostname or ""
        if host not in LOCAL_HOSTS:
            raise SystemExit(f"refusing to benchmark a non-local Kafka ({host}): 127.0.0.1 only")


def kafka_admin(bootstrap: str) -> Any:
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="mcp-ledger-bench")


def delete_kafka_leftovers(bootstrap: str, prefix: str, groups: list[str]) -> None:
    """Best effort: the topics whose names start with `prefix` and the consumer groups."""
    try:
        admin = kafka_admin(bootstrap)
    except Exception as exc:
        log(f"could not clean up Kafka topics {prefix}*: {exc!r}")
        return
    try:
        topics = [t for t in admin.list_topics() if t.startswith(prefix)]
        if topics:
            admin.delete_topics(topics, raise_errors=False)
        if groups:
            with suppress(Exception):
                admin.delete_groups(groups)
        log(f"deleted Kafka topics {', '.join(sorted(topics)) or '(none)'}")
    except Exception as exc:
        log(f"could not clean up Kafka topics {prefix}*: {exc!r}")
    finally:
        admin.close()


def kafka_consumer(bootstrap: str) -> Any:
    from kafka import KafkaConsumer

    return KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        client_id="mcp-ledger-bench",
        group_id=None,
        enable_auto_commit=False,
        allow_auto_create_topics=False,
    )


def assign_all(consumer: Any, topic: str, timeout: float, beginning: bool) -> None:
    """Assigns every partition of `topic` (waiting for it to exist) and resolves the offsets."""
    from kafka import TopicPartition

    deadline = time.monotonic() + timeout
    while not (partitions := consumer.partitions_for_topic(topic)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kafka topic {topic} did not appear in {timeout:.0f} s")
        time.sleep(0.2)
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    if beginning:
        consumer.seek_to_beginning(*tps)
    else:
        consumer.seek_to_end(*tps)
    for tp in tps:
        consumer.position(tp)  # resolves the offset now, not at the first poll


class Consuming(threading.Thread):
    """Polls a consumer until stopped, calling `on_message(message, t_received)`."""

    def __init__(self, consumer: Any, on_message: Callable[[Any, float], object]) -> None:
        super().__init__(daemon=True, name="bench-consumer")
        self.consumer, self.on_message = consumer, on_message
        self.stopping = threading.Event()
        self.polled = threading.Event()  # set after the first poll returned
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                batches = self.consumer.poll(timeout_ms=100)
                t = time.perf_counter()
                for messages in batches.values():
                    for m in messages:
                        self.on_message(m, t)
                self.polled.set()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)
        with suppress(Exception):
            self.consumer.close()


# --------------------------------------------------------------------------------------------
# commands on a fixed schedule, and the watcher that sees them arrive in rm_tools


@dataclass
class Command:
    index: int
    kind: str  # register | update
    warm: bool
    scheduled: float
    sent: float = 0.0
    acked: float = 0.0
    id: str = ""
    version: int = 0
    position: int = 0
    seen: float | None = None  # first poll that showed rm_tools at >= this version
    in_kafka: float | None = None  # when a plain consumer got the event from Kafka

    @property
    def lag(self) -> float:
        return self.seen - self.acked if self.seen is not None else math.inf


class Tracker:
    """What the watcher must look for. Positions are assigned in commit order, so a command
    sent after another's 2xx gets a higher position: the watcher asks for rows above the
    lowest position any unseen command can have, and never misses one that arrives out of
    position order (Kafka partitions are applied side by side)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.max_acked = 0
        self.inflight: dict[int, int] = {}  # command index -> position lower bound
        self.pending: dict[int, Command] = {}  # 2xx received, not yet seen
        self.seen: dict[str, list[tuple[int, float]]] = defaultdict(list)  # id -> (version, t)

    def sending(self, cmd: Command) -> None:
        with self.lock:
            self.inflight[cmd.index] = self.max_acked

    def failed(self, cmd: Command) -> None:
        with self.lock:
            self.inflight.pop(cmd.index, None)

    def acked(self, cmd: Command) -> None:
        with self.lock:
            self.inflight.pop(cmd.index, None)
            self.max_acked = max(self.max_acked, cmd.position)
            if not self._resolve(cmd):  # it may already have been seen (before the 2xx came)
                self.pending[cmd.index] = cmd

    def floor(self) -> int:
        with self.lock:
            bounds = [c.position - POSITION_MARGIN for c in self.pending.values()]
            bounds += self.inflight.values()
            return min(bounds) if bounds else self.max_acked

    def observe(self, rows: list[tuple[str, int, int]], t: float) -> None:
        with self.lock:
            for aggregate_id, version, _ in rows:
                versions = self.seen[aggregate_id]
                if not versions or version > versions[-1][0]:
                    versions.append((version, t))
            for index, cmd in list(self.pending.items()):
                if self._resolve(cmd):
                    del self.pending[index]

    def _resolve(self, cmd: Command) -> bool:
        t = next((t for v, t in self.seen.get(cmd.id, ()) if v >= cmd.version), None)
        if t is not None:
            cmd.seen = t
        return t is not None

    def outstanding(self) -> int:
        with self.lock:
            return len(self.pending) + len(self.inflight)


class Watcher(threading.Thread):
    """Every `interval` s: the rm_tools rows above the tracker's floor, stamped when the answer
    arrived (so a lag is an upper bound, at most one interval + one query late)."""

    SQL = "SELECT id::text, aggregate_version, position FROM rm_tools WHERE position > %s"

    def __init__(self, database_url: str, tracker: Tracker, interval: float) -> None:
        super().__init__(daemon=True, name="bench-watcher")
        self.tracker, self.interval = tracker, interval
        self.conn = psycopg.connect(database_url, autocommit=True, application_name="bench-watcher")
        self.backend_pid = self.conn.info.backend_pid
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.starts: list[float] = []
        self.query_s: list[float] = []
        self.rows = 0

    def run(self) -> None:
        try:
            next_poll = time.perf_counter()
            while not self.stopping.is_set():
                floor = self.tracker.floor()
                t0 = time.perf_counter()
                rows = self.conn.execute(self.SQL, (floor,)).fetchall()
                t1 = time.perf_counter()
                self.tracker.observe(rows, t1)
                self.starts.append(t0)
                self.query_s.append(t1 - t0)
                self.rows += len(rows)
                next_poll = max(next_poll + self.interval, time.perf_counter())  # never bursts
                time.sleep(max(0.0, next_poll - time.perf_counter()))
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)
        self.conn.close()

    def stats_in(self, start: float, end: float) -> tuple[float, list[float]]:
        """Mean interval between polls, and query times, of the polls inside [start, end]."""
        inside = [
            (s, q) for s, q in zip(self.starts, self.query_s, strict=True) if start <= s <= end
        ]
        if len(inside) < 2:
            return float("nan"), [q for _, q in inside]
        return (inside[-1][0] - inside[0][0]) / (len(inside) - 1), [q for _, q in inside]


class ToolPool:
    """Registered tools that no command is in flight on; an update takes one at random."""

    def __init__(self, seed: int) -> None:
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.idle: list[tuple[str, int]] = []  # (id, updates so far)

    def take(self) -> tuple[str, int] | None:
        with self.lock:
            if not self.idle:
                return None
            i = self.rng.randrange(len(self.idle))
            self.idle[i], self.idle[-1] = self.idle[-1], self.idle[i]
            return self.idle.pop()

    def give(self, tool_id: str, updates: int) -> None:
        with self.lock:
            self.idle.append((tool_id, updates))


@dataclass
class LoadResult:
    commands: list[Command]  # the measured ones (warm-up excluded)
    window: tuple[float, float]  # first measured send .. last measured 2xx
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds in the window

    @property
    def seconds(self) -> float:
        return self.window[1] - self.window[0]


Probes = dict[str, Callable[[], float]]


def drive(
    api_url: str,
    tracker: Tracker,
    args: argparse.Namespace,
    probes: Probes,
    check: Callable[[], None],
) -> LoadResult:
    """Sends warm-up + measured commands at `args.rate` from `args.clients` threads: command i
    is scheduled at start + i / rate, and a thread keeps at least clients / rate between its
    own sends: one that falls behind does not catch up in a burst (the achieved rate drops,
    and `send_slip` grows, instead). Every
    third command registers a tool; the others update a registered tool with no command in
    flight (a forward semver and a new description)."""
    warm, total = args.warm_commands, args.warm_commands + args.commands
    pool = ToolPool(args.seed)
    run_id = uuid.uuid4().hex[:8]
    start = time.perf_counter() + 0.2
    commands: list[Command | None] = [None] * total
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker(k: int) -> None:
        client = httpx.Client(base_url=api_url, trust_env=False, timeout=30)
        spacing, last_sent = args.clients / args.rate, -math.inf
        try:
            for i in range(k, total, args.clients):
                scheduled = start + i / args.rate
                not_before = max(scheduled, last_sent + spacing)
                time.sleep(max(0.0, not_before - time.perf_counter()))
                if stop.is_set():
                    return
                target = None if i % 3 == 0 else pool.take()
                cmd = Command(i, "update" if target else "register", i < warm, scheduled)
                commands[i] = cmd
                tracker.sending(cmd)
                try:
                    cmd.sent = last_sent = time.perf_counter()
                    if target is None:
                        r = client.post("/api/v1/tools", json=tool_body(f"f{run_id}-{i}"))
                        cmd.acked = time.perf_counter()
                        body, updates = expect(r, 201), 0
                    else:
                        updates = target[1] + 1
                        patch = {"version": f"1.0.{updates}", "description": f"revision {updates}"}
                        r = client.patch(f"/api/v1/tools/{target[0]}", json=patch)
                        cmd.acked = time.perf_counter()
                        body = expect(r, 200)
                except BaseException:
                    tracker.failed(cmd)
                    raise
                cmd.id, cmd.version, cmd.position = body["id"], body["version"], body["position"]
                tracker.acked(cmd)
                pool.give(cmd.id, updates)
        except BaseException as exc:
            errors.append(exc)
            stop.set()
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(args.clients)]
    for t in threads:
        t.start()
    try:
        time.sleep(max(0.0, start + warm / args.rate - time.perf_counter()))
        before = {name: read() for name, read in probes.items()}
        deadline = start + 2 * total / args.rate + 60  # late: at most twice as long + 1 min
        while any(t.is_alive() for t in threads):
            if time.perf_counter() > deadline:
                raise RuntimeError("the commands took over twice their schedule + 60 s")
            if not errors:
                check()
            for t in threads:
                t.join(0.2)
        cpu = {name: read() - before[name] for name, read in probes.items()}
    finally:
        stop.set()
    if errors:
        raise RuntimeError(f"a command failed: {errors[0]!r}") from errors[0]
    measured = [c for c in commands if c is not None and not c.warm]
    if len(measured) != args.commands:
        raise RuntimeError(f"sent {len(measured)} of {args.commands} measured commands")
    window = (min(c.sent for c in measured), max(c.acked for c in measured))
    return LoadResult(measured, window, cpu)


def first_command_visible(api_url: str, tracker: Tracker, check: Callable[[], None]) -> float:
    """Registers one tool and waits until the watcher sees it: the pipeline is up (for Kafka:
    the projector's consumer group has its partitions). Returns the seconds it took."""
    started = time.perf_counter()
    cmd = Command(-1, "register", True, started)
    tracker.sending(cmd)
    with httpx.Client(base_url=api_url, trust_env=False, timeout=30) as client:
        body = expect(client.post("/api/v1/tools", json=tool_body(f"warm-{uuid.uuid4().hex}")), 201)
    cmd.id, cmd.version, cmd.position = body["id"], body["version"], body["position"]
    cmd.acked = time.perf_counter()
    tracker.acked(cmd)
    deadline = started + FIRST_VISIBLE_TIMEOUT
    while cmd.seen is None:
        if time.perf_counter() > deadline:
            raise RuntimeError(
                f"the first command was not visible after {FIRST_VISIBLE_TIMEOUT:.0f} s"
            )
        check()
        time.sleep(0.05)
    return time.perf_counter() - started


def drain(tracker: Tracker, check: Callable[[], None]) -> None:
    deadline = time.perf_counter() + DRAIN_TIMEOUT
    while tracker.outstanding() and time.perf_counter() < deadline:
        check()
        time.sleep(0.05)
    if tracker.outstanding():
        n = tracker.outstanding()
        log(f"{n} commands still not visible {DRAIN_TIMEOUT:.0f} s after the last 2xx")


def write_samples(path: Path, phase: str, commands: list[Command]) -> None:
    """One CSV row per measured command, times in ms from the phase's first scheduled send."""
    t0 = commands[0].scheduled
    new = path.stat().st_size == 0
    with path.open("a") as out:
        if new:
            out.write("phase,index,kind,version,position,scheduled,sent,acked,in_kafka,seen,lag\n")

        def rel(t: float | None) -> str:
            return "" if t is None else f"{(t - t0) * 1000:.3f}"

        for c in commands:
            lag = f"{c.lag * 1000:.3f}" if c.seen is not None else ""
            out.write(
                f"{phase},{c.index},{c.kind},{c.version},{c.position},{rel(c.scheduled)},"
                f"{rel(c.sent)},{rel(c.acked)},{rel(c.in_kafka)},{rel(c.seen)},{lag}\n"
            )


def postgres_cpu(conn: psycopg.Connection[Any]) -> float:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    ).fetchall()
    return sum(process_cpu(r[0]) for r in rows)


def measure_pipeline(
    report: Report,
    prefix: str,
    database_url: str,
    api_url: str,
    services: list[Service],
    args: argparse.Namespace,
    floor: str | None,
    spy: tuple[str, str] | None = None,  # (bootstrap, tools topic): also time arrival in Kafka
) -> LoadResult:
    tracker = Tracker()
    watcher = Watcher(database_url, tracker, args.poll_ms / 1000)
    probe_conn = psycopg.connect(database_url, autocommit=True)
    consuming: Consuming | None = None

    def check() -> None:
        for s in services:
            s.check()
        if watcher.error:
            raise RuntimeError(f"the watcher failed: {watcher.error!r}") from watcher.error
        if consuming and consuming.error:
            raise RuntimeError(f"the Kafka consumer failed: {consuming.error!r}")

    try:
        watcher.start()
        took = first_command_visible(api_url, tracker, check)
        log(f"{prefix}: first command visible after {took:.1f} s")
        in_kafka: dict[tuple[str, int], float] = {}
        if spy is not None:
            bootstrap, topic = spy
            consumer = kafka_consumer(bootstrap)

            def on_message(m: Any, t: float) -> None:
                headers = dict(m.headers or ())
                version = int(headers.get("ce_sequence", b"0"))
                in_kafka.setdefault((m.key.decode(), version), t)

            assign_all(consumer, topic, 30, beginning=True)
            consuming = Consuming(consumer, on_message)
            consuming.start()
            if not consuming.polled.wait(30):
                raise RuntimeError("the Kafka consumer did not poll within 30 s")
        probes: Probes = {s.name: s.cpu_seconds for s in services}
        probes |= {
            "postgres": lambda: postgres_cpu(probe_conn),
            "watcher_postgres": lambda: process_cpu(watcher.backend_pid),
            "bench": time.process_time,
            "machine": machine_busy,
        }
        log(f"{prefix}: {args.warm_commands} warm-up + {args.commands} commands at {args.rate:g}/s")
        result = drive(api_url, tracker, args, probes, check)
        drain(tracker, check)
    finally:
        watcher.stop()
        if consuming is not None:
            consuming.stop()
        probe_conn.close()
    for cmd in result.commands:
        cmd.in_kafka = in_kafka.get((cmd.id, cmd.version))
    if args.samples:
        write_samples(args.samples, prefix, result.commands)

    cmds = result.commands
    report.add(f"{prefix}.commands", len(cmds), "commands")
    report.add(f"{prefix}.unseen", sum(c.seen is None for c in cmds), "commands")
    add_distribution(report, f"{prefix}.lag", ms([c.lag for c in cmds]), floor)
    report.add(f"{prefix}.lag.mean", sum(ms([c.lag for c in cmds])) / len(cmds), "ms")
    if spy is not None:
        to_kafka = [c.in_kafka - c.acked if c.in_kafka is not None else math.inf for c in cmds]
        add_distribution(report, f"{prefix}.to_kafka", ms(to_kafka))
        after = [c.seen - c.in_kafka for c in cmds if c.seen is not None and c.in_kafka is not None]
        add_distribution(report, f"{prefix}.kafka_to_table", ms(after))
    report.add(f"{prefix}.command.p50", percentile(ms([c.acked - c.sent for c in cmds]), 0.5), "ms")
    report.add(
        f"{prefix}.command.p99", percentile(ms([c.acked - c.sent for c in cmds]), 0.99), "ms"
    )
    report.add(
        f"{prefix}.send_slip.p99", percentile(ms([c.sent - c.scheduled for c in cmds]), 0.99), "ms"
    )
    report.add(f"{prefix}.rate", (len(cmds) - 1) / (cmds[-1].sent - cmds[0].sent), "commands/s")
    interval, queries = watcher.stats_in(*result.window)
    report.add(f"{prefix}.poll_interval", interval * 1000, "ms")
    report.add(f"{prefix}.poll_query.p50", percentile(ms(queries), 0.5), "ms")
    report.add(f"{prefix}.poll_query.p99", percentile(ms(queries), 0.99), "ms")
    for name, seconds in result.cpu.items():
        if name == "machine":
            report.add(f"{prefix}.machine_busy_cores", seconds / result.seconds, "cores")
        else:
            report.add(f"{prefix}.cpu.{name}", seconds / result.seconds, "cores")
    return result


# --------------------------------------------------------------------------------------------
# 1. the raw Kafka floor


def bench_kafka_raw(report: Report, bootstrap: str, prefix: str, args: argparse.Namespace) -> None:
    from kafka import KafkaProducer

    topic = f"{prefix}.floor"
    spec = TopicSpec(prefix=prefix, partitions=PARTITIONS)
    admin = kafka_admin(bootstrap)
    try:
        new = {
            topic: {
                "num_partitions": PARTITIONS,
                "replication_factor": 1,
                "configs": spec.configs(),
            }
        }
        admin.create_topics(new, wait_for_metadata=True)
    finally:
        admin.close()
    warm, total = args.warm_commands, args.warm_commands + args.commands
    sent: list[float] = [0.0] * total
    acks: dict[int, float] = {}
    received: dict[int, float] = {}
    consumer = kafka_consumer(bootstrap)
    assign_all(consumer, topic, 30, beginning=False)
    consuming = Consuming(consumer, lambda m, t: received.setdefault(int(m.key), t))
    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        client_id="mcp-ledger-bench",
        acks="all",
        linger_ms=0,
        allow_auto_create_topics=False,
        metrics_enabled=False,
    )
    try:
        consuming.start()
        if not consuming.polled.wait(30):
            raise RuntimeError("the floor consumer did not poll within 30 s")
        log(f"kafka_raw: {warm} warm-up + {args.commands} messages at {args.rate:g}/s to {topic}")
        cpu0, busy0 = time.process_time(), machine_busy()
        start = time.perf_counter() + 0.2
        last = -math.inf
        for i in range(total):  # as drive(): on schedule, never a catch-up burst
            time.sleep(
                max(0.0, max(start + i / args.rate, last + 1 / args.rate) - time.perf_counter())
            )
            sent[i] = last = time.perf_counter()
            future = producer.send(topic, FLOOR_PAYLOAD, str(i).encode())
            future.add_callback(lambda _meta, i=i: acks.setdefault(i, time.perf_counter()))
            if consuming.error:
                raise RuntimeError(f"the floor consumer failed: {consuming.error!r}")
        producer.flush(30)
        deadline = time.perf_counter() + DRAIN_TIMEOUT
        while len(received) < total and time.perf_counter() < deadline:
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        cpu, busy = time.process_time() - cpu0, machine_busy() - busy0
    finally:
        consuming.stop()
        producer.close(10)
    measured = range(warm, total)
    e2e = [received[i] - sent[i] if i in received else math.inf for i in measured]
    ack = [acks[i] - sent[i] if i in acks else math.inf for i in measured]
    report.add("kafka_raw.messages", len(measured), "messages")
    report.add("kafka_raw.unseen", sum(i not in received for i in measured), "messages")
    add_distribution(report, "kafka_raw", ms(e2e))
    report.add("kafka_raw.mean", sum(ms(e2e)) / len(e2e), "ms")
    report.add("kafka_raw.ack.p50", percentile(ms(ack), 0.5), "ms")
    report.add("kafka_raw.ack.p99", percentile(ms(ack), 0.99), "ms")
    report.add("kafka_raw.cpu.bench", cpu / seconds, "cores")
    report.add("kafka_raw.machine_busy_cores", busy / seconds, "cores")


# --------------------------------------------------------------------------------------------
# 2. relay + Kafka + Faust, and 3. the in-process log follower


def bench_kafka_pipeline(
    report: Report, server: str, bootstrap: str, prefix: str, secret_key: str, workdir: Path,
    args: argparse.Namespace, meta: dict[str, Any],
) -> None:  # fmt: skip
    workdir = workdir / "kafka"
    workdir.mkdir()
    with fresh_database(server) as url:
        meta.setdefault("postgres", server_facts(url))
        env = service_env(
            url, secret_key, workdir / "data",
            KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            MCP_LEDGER_KAFKA_TOPIC_PREFIX=prefix,
            MCP_LEDGER_KAFKA_PARTITIONS=str(PARTITIONS),
            MCP_LEDGER_READ_FEED="kafka",
        )  # fmt: skip
        services: list[Service] = []
        try:
            _, api_url = start_api(env, workdir, services)  # migrates before the others start
            services.append(Service("relay", ["relay"], env, workdir).start())
            args_ = ["projector", "--source", "kafka"]
            services.append(Service("projector", args_, env, workdir).start())
            topic = TopicSpec(prefix=prefix).for_kind("tool")
            assert topic is not None
            measure_pipeline(
                report,
                "kafka_pipeline",
                url,
                api_url,
                services,
                args,
                "kafka_raw",
                (bootstrap, topic),
            )
        finally:
            for s in reversed(services):  # projector, relay, api
                s.stop()


def bench_follow_log(
    report: Report, server: str, secret_key: str, workdir: Path, args: argparse.Namespace
) -> None:
    workdir = workdir / "follow-log"
    workdir.mkdir()
    with fresh_database(server) as url:
        env = service_env(url, secret_key, workdir / "data", MCP_LEDGER_READ_FEED="log")
        services: list[Service] = []
        try:
            _, api_url = start_api(env, workdir, services, "--follow-log")
            measure_pipeline(report, "follow_log", url, api_url, services, args, None)
        finally:
            for s in services:
                s.stop()


# --------------------------------------------------------------------------------------------
# summary


def judge(report: Report) -> None:
    for q, target in (("p50", TARGET_P50_MS), ("p99", TARGET_P99_MS)):
        fig = report.get(f"kafka_pipeline.lag.{q}")
        if fig is None:
            continue
        unseen = report.get("kafka_pipeline.unseen")
        note = f" ({unseen.value:.0f} never visible)" if unseen and unseen.value else ""
        report.target(
            f"2xx -> rm_tools via relay + Kafka + Faust, {q} < {target:.0f} ms",
            fig.value < target,
            f"{fig.value:.1f} ms{note}",
        )


def print_summary(report: Report) -> None:
    rows = [
        ("kafka raw produce->consume", "kafka_raw", "kafka_raw"),
        ("relay+Kafka+Faust 2xx->rm_tools", "kafka_pipeline.lag", "kafka_pipeline"),
        ("  2xx -> in Kafka", "kafka_pipeline.to_kafka", "kafka_pipeline"),
        ("  in Kafka -> rm_tools", "kafka_pipeline.kafka_to_table", "kafka_pipeline"),
        ("follow-log 2xx->rm_tools", "follow_log.lag", "follow_log"),
    ]
    print("\nsummary (ms)")
    print(f"{'path':<33}{'n':>6}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}  p50 vs floor")
    for label, prefix, phase in rows:
        figs = [report.get(f"{prefix}.{q}") for q in ("p50", "p90", "p99", "max")]
        if figs[0] is None:
            continue
        n = report.get(f"{phase}.commands") or report.get(f"{phase}.messages")
        vs = f"{figs[0].ratio:.0%}" if figs[0].ratio is not None else "-"
        values = "".join(f"{(f.value if f else float('nan')):>9.1f}" for f in figs)
        print(f"{label:<33}{(n.value if n else 0):>6.0f}{values}  {vs}")
    interval = report.get("kafka_pipeline.poll_interval") or report.get("follow_log.poll_interval")
    if interval:
        print(f"(rm_tools polled every {interval.value:.1f} ms: a lag is late by up to that much)")
    print("\ntargets")
    for t in report.targets:
        print(f"  [{'MET ' if t['met'] else 'MISS'}] {t['target']}: {t['detail']}")


# --------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="300 commands per phase, 1 s warm-up")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--rate", type=float, default=50.0, help="commands (messages) per second")
    p.add_argument("--commands", type=int, help="measured commands per phase (2,000; 300)")
    p.add_argument("--warmup", type=float, help="seconds of discarded commands first (2; 1)")
    p.add_argument("--clients", type=int, default=2, help="client threads sharing the schedule")
    p.add_argument("--poll-ms", type=float, default=3.0, help="watcher poll interval, ms")
    p.add_argument("--seed", type=int, default=1, help="which tools the updates pick")
    p.add_argument("--samples", type=Path, metavar="PATH", help="also write every command, CSV")
    p.add_argument("--skip-follow-log", action="store_true", help="leave out the follow_log phase")
    args = p.parse_args(argv)
    args.commands = args.commands or (300 if args.quick else 2_000)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.warm_commands = max(1, round(args.warmup * args.rate))
    if args.rate <= 0 or args.clients < 1 or args.commands < 2 or args.poll_ms <= 0:
        p.error("--rate, --poll-ms must be > 0, --clients >= 1, --commands >= 2")
    return args


def finite(value: float | None) -> float | None:
    """NaN and infinity (a message never seen) are null in JSON."""
    return value if value is not None and math.isfinite(value) else None


def _terminate(signum: int, _: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.samples:
        args.samples.write_text("")  # each phase appends its rows
    signal.signal(signal.SIGTERM, _terminate)
    sys.setswitchinterval(0.001)  # the watcher and consumer threads stamp times: less GIL wait
    started = time.perf_counter()
    report = Report()
    secret_key = Fernet.generate_key().decode()
    server = server_url()
    check_local(server)
    prefix = f"bench-fresh-{uuid.uuid4().hex[:10]}"
    meta: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "quick": args.quick,
        "rate": args.rate,
        "commands": args.commands,
        "warm_commands": args.warm_commands,
        "clients": args.clients,
        "poll_ms": args.poll_ms,
        "partitions": PARTITIONS,
        "topic_prefix": prefix,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    with (
        tempfile.TemporaryDirectory(prefix="mcp-ledger-bench-") as tmp,
        kafka_bootstrap() as bootstrap,
    ):
        meta["kafka"] = bootstrap
        log(f"kafka {bootstrap}, {meta['cpus']} cpus, load {meta['loadavg_start'][0]:.2f}")
        try:
            bench_kafka_raw(report, bootstrap, prefix, args)
            bench_kafka_pipeline(
                report, server, bootstrap, prefix, secret_key, Path(tmp), args, meta
            )
            if not args.skip_follow_log:
                bench_follow_log(report, server, secret_key, Path(tmp), args)
        finally:
            delete_kafka_leftovers(bootstrap, prefix, [f"{prefix}-projector"])
    meta["loadavg_end"] = os.getloadavg()
    meta["elapsed_s"] = round(time.perf_counter() - started, 1)
    judge(report)
    print_summary(report)
    print(f"\n(run took {meta['elapsed_s']} s; load average {meta['loadavg_end'][0]:.2f})")
    if args.json:
        data = {
            "meta": meta,
            "figures": [
                {**f.__dict__, "value": finite(f.value), "ratio": finite(f.ratio)}
                for f in report.figures
            ],
            "targets": report.targets,
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
