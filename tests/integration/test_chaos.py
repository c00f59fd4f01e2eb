"""The whole topology under chaos, as docker-compose.yml runs it: Postgres, a Kafka broker of this
test's own and Redis, `migrate` once, then two `api`, two `relay` and two `projector --source
kafka` processes. A mixed load (single commands, bulk imports, MCP calls and searches) runs while
every few seconds one project process is killed with -9 and restarted, as the restart policy
would; once the broker is restarted too. Afterwards:

- every acknowledged command is in the store exactly once;
- the read models equal a replay (`mcp-ledger verify`); the vector index holds exactly the live
  search units;
- every answered MCP call is counted exactly once by the usage analytics (and nothing is counted
  that was not executed: only calls whose answer was lost to a kill may be counted unanswered);
- no dead letter without a reason.

Differences from compose, and why: the vector index is the embedded one of each api (no Qdrant
server can run here; one api owns it, the other answers lexically), and auth and rate limits
are off (the load would be rate limited; access control has its own tests). The figures are
written to .cache/test-artifacts/chaos-report.json."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import ROOT, free_port, tool_body
from tests.kafka_pipeline_support import Service, fresh_database, wait_for
from tests.ledger_sql import REGISTERED

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

LOAD_SECONDS = float(os.environ.get("MCP_LEDGER_CHAOS_SECONDS", "60"))
KILL_EVERY = (2.0, 5.0)  # seconds between kills, drawn uniformly
RESTART_AFTER = 0.5  # the restart policy's delay
ARTIFACTS = ROOT / ".cache" / "test-artifacts"
MCP_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "Mcp-Protocol-Version": "2026-07-28",
    "Mcp-Method": "tools/call",
}
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}
RETRYABLE = (408, 409, 425, 429, 500, 502, 503, 504)


# --- the broker of this test ----------------------------------------------------------------


@contextlib.contextmanager
def own_broker(data: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """A Kafka broker on a port and data folder of its own: (bootstrap, restart function)."""
    env = {**os.environ, "KAFKA_PORT": str(free_port()), "KAFKA_DATA_DIR": str(data)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)

    def kafka(*args: str) -> str:
        done = subprocess.run(
            [str(ROOT / "scripts" / "kafka"), *args],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip()

    bootstrap = kafka("start").partition("=")[2]

    def restart() -> None:
        kafka("stop")
        kafka("start")

    try:
        yield bootstrap, restart
    finally:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            kafka("stop")


# --- the processes ----------------------------------------------------------------------------


@dataclass
class Topology:
    env: dict[str, str]
    logs: Path
    services: dict[str, Service] = field(default_factory=dict)
    api_ports: dict[str, int] = field(default_factory=dict)
    kills: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)
    exits: Counter[str] = field(default_factory=Counter)  # exited on their own
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, name: str) -> None:
        role = name.rstrip("0123456789")
        env = {**self.env, "MCP_LEDGER_DATA_DIR": str(self.logs / f"data-{name}")}
        if role == "api":
            port = self.api_ports.setdefault(name, free_port())
            args = ["api", "--host", "127.0.0.1", "--port", str(port)]
        elif role == "relay":
            args = ["relay"]
        else:
            args = ["projector", "--source", "kafka"]
        self.services[name] = Service(args, env, self.logs / f"{name}.log").start()

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.api_ports.values()]

    def kill_one(self, rng: random.Random) -> None:
        with self.lock:
            name = rng.choice(sorted(n for n, s in self.services.items() if s.alive()))
            self.services[name].kill()
            self.kills[name.rstrip("0123456789")] += 1
        time.sleep(RESTART_AFTER)
        with self.lock:
            self.start(name)
            self.restarts[name.rstrip("0123456789")] += 1

    def revive(self) -> None:
        """Restarts anything that exited on its own (the restart policy's other half; e.g. a
        projector exits on a fatal Kafka error while the broker restarts)."""
        with self.lock:
            for name, service in list(self.services.items()):
                if not service.alive():
                    self.exits[name.rstrip("0123456789")] += 1
                    self.start(name)
                    self.restarts[name.rstrip("0123456789")] += 1

    def stop(self) -> None:
        for service in self.services.values():
            if service.alive():
                service.stop(30)


def wait_ready(url: str, timeout: float = 90) -> None:
    def ready() -> bool:
        try:
            return httpx.get(f"{url}/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, f"{url} to be ready", timeout)


# --- the load -----------------------------------------------------------------------------------


@dataclass
class Acked:
    """What the clients were told was stored."""

    registered: dict[str, dict[str, Any]] = field(default_factory=dict)  # slug -> answer
    changes: list[tuple[str, int, int]] = field(default_factory=list)  # (id, version, position)
    imported: dict[str, str] = field(default_factory=dict)  # slug -> id
    commands: int = 0
    mcp_answered: set[str] = field(default_factory=set)  # client ids of answered calls
    mcp_lost: set[str] = field(default_factory=set)  # no answer: a kill cut it off
    searches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Client:
    """Sends each command until it is acknowledged, to whichever api answers, with the same
    Idempotency-Key: what a careful client does while servers die under it."""

    def __init__(self, topology: Topology, rng: random.Random) -> None:
        self.topology, self.rng = topology, rng
        self.http = httpx.Client(timeout=30)

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        key = kwargs.pop("key", None) or uuid.uuid4().hex
        headers = {"Idempotency-Key": key, **kwargs.pop("headers", {})}
        deadline = time.monotonic() + 180
        while True:
            url = self.rng.choice(self.topology.urls())
            try:
                answer = self.http.request(method, url + path, headers=headers, **kwargs)
                if answer.status_code not in RETRYABLE:
                    return answer
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{method} {path} never acknowledged"
            time.sleep(0.2)


def writer(client: Client, acked: Acked, stop: threading.Event, tag: str) -> None:
    i = 0
    while not stop.is_set():
        slug = f"{tag}-{i}"
        i += 1
        answer = client.send("POST", "/api/v1/tools", json=tool_body(slug))
        assert answer.status_code == 201, answer.text
        body = answer.json()
        with acked.lock:
            acked.registered[slug] = body
            acked.commands += 1
        # A change and an activation of the same tool, each exactly once.
        change = client.send(
            "PATCH", f"/api/v1/tools/{body['id']}", json={"long_description": f"v2 of {slug}"}
        )
        assert change.status_code == 200, change.text
        activate = client.send("POST", f"/api/v1/tools/{body['id']}/activate")
        assert activate.status_code == 200, activate.text
        with acked.lock:
            for done in (change.json(), activate.json()):
                acked.changes.append((body["id"], done["version"], done["position"]))
            acked.commands += 2


def importer(client: Client, acked: Acked, stop: threading.Event, tag: str) -> None:
    n = 0
    while not stop.wait(1.0):
        items = [tool_body(f"{tag}-{n}-{j}") for j in range(100)]
        n += 1
        answer = client.send("POST", "/api/v1/tools:batch", json={"tools": items})
        assert answer.status_code == 200, answer.text[:500]
        body = answer.json()
        assert body["committed"] == len(items)
        with acked.lock:
            for item, stored in zip(items, body["items"], strict=True):
                acked.imported[str(item["slug"])] = stored["id"]
            acked.commands += 1


def mcp_reader(topology: Topology, acked: Acked, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(timeout=30) as http:
        while not stop.is_set():
            with acked.lock:
                slugs = list(acked.registered)
            if not slugs:
                time.sleep(0.1)
                continue
            if rng.random() < 0.5:
                name, arguments = "get_tool", {"slug": rng.choice(slugs)}
            else:
                name, arguments = "search_tools", {"query": "weather for a city", "limit": 5}
            client_id = uuid.uuid4().hex
            body = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": name, "arguments": arguments, "_meta": META},
            }
            headers = {**MCP_HEADERS, "Mcp-Name": name, "X-Client-Id": client_id}
            url = rng.choice(topology.urls())
            try:
                answer = http.post(f"{url}/mcp", json=body, headers=headers)
            except httpx.TransportError:
                with acked.lock:
                    acked.mcp_lost.add(client_id)
                time.sleep(0.1)  # that api is down; its restart takes a few seconds
                continue
            if answer.status_code == 200 and "result" in answer.json():
                with acked.lock:
                    acked.mcp_answered.add(client_id)


def searcher(client: Client, acked: Acked, stop: threading.Event) -> None:
    while not stop.wait(0.2):
        answer = client.send("GET", "/api/v1/search", params={"q": "weather lookup", "limit": 5})
        assert answer.status_code == 200, answer.text
        with acked.lock:
            acked.searches += 1


# --- the checks ---------------------------------------------------------------------------------


def one_row(url: str, sql: str, *params: Any) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return tuple(row)


def registrations(url: str) -> Counter[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT convert_from(state, 'UTF8')::jsonb ->> 'slug' FROM ledger_events "
            "WHERE topic = %s",
            (REGISTERED,),
        ).fetchall()
    return Counter(r[0] for r in rows)


def converged(url: str, prefix: str) -> bool:
    from projections.positions import applied_position

    with psycopg.connect(url) as conn:
        head = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events")
        head_position = head.fetchone()[0]  # type: ignore[index]
        relayed = conn.execute("SELECT position FROM relay_checkpoints WHERE name = %s", (prefix,))
        relay_row = relayed.fetchone()
        outbox = conn.execute("SELECT count(*) FROM usage_outbox").fetchone()[0]  # type: ignore[index]
        vectors = conn.execute("SELECT count(*) FROM vector_outbox").fetchone()[0]  # type: ignore[index]
        applied = applied_position(conn, prefix)
    return bool(
        relay_row
        and relay_row[0] == head_position
        and applied >= head_position
        and outbox == 0
        and vectors == 0
    )


def usage_by_client(url: str, clients: set[str]) -> Counter[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT client, calls FROM usage_stats WHERE window_size = '1h' AND client = ANY(%s)",
            (list(clients),),
        ).fetchall()
    counted: Counter[str] = Counter()
    for client, calls in rows:
        counted[client] += int(calls)
    return counted


def vector_index_matches_units(url: str, topology: Topology, owner: str) -> tuple[int, int]:
    """Opens the owning api's shard (the processes are stopped) and compares every point with
    the live search units: (points, units)."""
    from infra.search.vector_store import EdgeVectorStore
    from projections.vector_index import COLLECTIONS, active_generation, point_id, text_hash

    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        generation = active_generation(conn)
        rows = conn.execute(
            "SELECT kind, id, chunk, version, body FROM rm_search WHERE NOT deleted"
        ).fetchall()
    assert generation is not None
    want: dict[str, dict[str, tuple[int, str]]] = {k: {} for k in COLLECTIONS}
    for r in rows:
        want[r["kind"]][point_id(r["id"], r["chunk"])] = (r["version"], text_hash(r["body"]))
    folders = [topology.logs / f"data-{n}" / "vectors" for n in topology.services if "api" in n]
    stores = [EdgeVectorStore(f) for f in folders if f.exists()]
    try:
        (store,) = [s for s in stores if s.identity == owner]
        points = 0
        for kind, expected in want.items():
            collection = generation.collection(kind)
            ids = sorted({r["id"] for r in rows if r["kind"] == kind}, key=str)
            stored = {
                p.id: (p.payload["version"], p.payload["text_hash"])
                for p in store.points_of(collection, [str(i) for i in ids])
            }
            assert stored == expected, kind
            assert store.count(collection) == len(expected), kind  # nothing else in there
            points += len(stored)
    finally:
        for s in stores:
            s.close()
    return points, len(rows)


# --- the test -----------------------------------------------------------------------------------


def test_the_compose_topology_survives_kill_9_chaos(secret_key: str, tmp_path: Path) -> None:
    redis_url = os.environ.get("REDIS_URL", "")
    assert redis_url, "scripts/test provides REDIS_URL"
    rng = random.Random(int(os.environ.get("MCP_LEDGER_CHAOS_SEED", str(time.time_ns()))))
    prefix = f"t-chaos-{uuid.uuid4().hex[:8]}"
    broker = own_broker(tmp_path / "kafka")
    with broker as (bootstrap, restart_broker), fresh_database("chaos") as url:
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "MCP_LEDGER_SECRET_KEY": secret_key,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "MCP_LEDGER_KAFKA_TOPIC_PREFIX": prefix,
            "MCP_LEDGER_READ_FEED": "kafka",
            "REDIS_URL": redis_url,
            "MCP_LEDGER_AUTH": "off",
            "MCP_LEDGER_RATE_LIMIT": "off",
            "MCP_LEDGER_LOG_LEVEL": "warning",
            "MCP_LEDGER_PROJECTOR_SESSION_TIMEOUT": "6",
            "MCP_LEDGER_RELAY_POLL_INTERVAL": "0.2",
        }
        topology = Topology(env, tmp_path)
        migrate = Service(["migrate"], env, tmp_path / "migrate.log").start()
        assert migrate.proc is not None
        assert migrate.proc.wait(120) == 0, migrate.log_tail()
        for name in ("api1", "api2", "relay1", "relay2", "projector1", "projector2"):
            topology.start(name)
        for base in topology.urls():
            wait_ready(base)

        acked = Acked()
        stop = threading.Event()
        errors: list[BaseException] = []

        def guarded(target: Callable[..., None], *args: Any) -> threading.Thread:
            def run() -> None:
                try:
                    target(*args)
                except BaseException as exc:
                    errors.append(exc)
                    stop.set()

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            return thread

        load = [
            guarded(writer, Client(topology, random.Random(1)), acked, stop, "w1"),
            guarded(writer, Client(topology, random.Random(2)), acked, stop, "w2"),
            guarded(importer, Client(topology, random.Random(3)), acked, stop, "imp"),
            guarded(mcp_reader, topology, acked, stop, 4),
            guarded(mcp_reader, topology, acked, stop, 5),
            guarded(searcher, Client(topology, random.Random(6)), acked, stop),
        ]
        started = time.monotonic()
        broker_restarted = False
        while time.monotonic() - started < LOAD_SECONDS and not stop.is_set():
            time.sleep(rng.uniform(*KILL_EVERY))
            if not broker_restarted and time.monotonic() - started > LOAD_SECONDS / 2:
                restart_broker()
                broker_restarted = True
            else:
                topology.kill_one(rng)
            topology.revive()
        stop.set()
        for thread in load:
            thread.join(200)
        assert not errors, errors
        topology.revive()

        load_ended = time.monotonic()
        wait_for(lambda: converged(url, prefix), "the read side to converge", timeout=300)
        answered = set(acked.mcp_answered)
        wait_for(
            lambda: sum(usage_by_client(url, answered).values()) >= len(answered),
            "every answered MCP call to be counted",
            timeout=120,
        )
        converge_seconds = time.monotonic() - load_ended

        # Every acknowledged command is stored exactly once.
        stored = registrations(url)
        acked_slugs = set(acked.registered) | set(acked.imported)
        assert {s: stored[s] for s in acked_slugs if stored[s] != 1} == {}
        for tool_id, version, position in acked.changes:
            row = one_row(
                url,
                "SELECT count(*), min(notification_id) FROM ledger_events "
                "WHERE originator_id = %s AND originator_version = %s",
                uuid.UUID(tool_id),
                version,
            )
            assert row == (1, position)
        for slug, answer in acked.registered.items():
            # register, change, activate: a retried command never appended a second event.
            versions = one_row(
                url,
                "SELECT max(originator_version) FROM ledger_events WHERE originator_id = %s",
                uuid.UUID(answer["id"]),
            )[0]
            assert versions == 3, slug

        # Usage: answered calls counted once each; anything else counted was cut off by a kill.
        counted = usage_by_client(url, answered | acked.mcp_lost)
        assert {c: n for c, n in counted.items() if n != 1} == {}
        assert answered <= set(counted)
        unanswered_counted = set(counted) - answered
        assert unanswered_counted <= acked.mcp_lost

        # No dead letter without a reason.
        dead = one_row(
            url,
            "SELECT count(*), count(*) FILTER (WHERE coalesce(error, '') = '') "
            "FROM projection_dead_letters",
        )
        assert dead[1] == 0

        # The read models equal a replay.
        verify = subprocess.run(
            [sys.executable, "-m", "cli.main", "verify"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-3000:]

        # The vector index holds exactly the live search units (in the owning api's shard).
        owner = one_row(url, "SELECT owner FROM vector_indexes WHERE status = 'active'")[0]
        topology.stop()
        points, units = vector_index_matches_units(url, topology, owner)

        report = {
            "load_seconds": LOAD_SECONDS,
            "commands_acknowledged": acked.commands,
            "tools_registered": len(acked_slugs),
            "mcp_calls_answered": len(answered),
            "mcp_calls_cut_off": len(acked.mcp_lost),
            "mcp_cut_off_but_executed": len(unanswered_counted),
            "searches": acked.searches,
            "kills": dict(topology.kills),
            "restarts": dict(topology.restarts),
            "exited_on_their_own": dict(topology.exits),
            "broker_restarts": int(broker_restarted),
            "seconds_to_converge": round(converge_seconds, 1),
            "dead_letters": dead[0],
            "vector_points": points,
            "live_units": units,
        }
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "chaos-report.json").write_text(json.dumps(report, indent=2))
        print("chaos report:", json.dumps(report))
        assert sum(topology.kills.values()) >= 5
