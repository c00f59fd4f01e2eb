"""Search benchmark: vector-index build speed and search latency with N tools indexed, beside
the raw floors (the embedder alone, raw Qdrant Edge upsert and query, the lexical SQL alone)
measured in the same run.

    .venv/bin/python bench/search.py [--quick] [--tools N] [--queries Q] [--json PATH]

Uses $DATABASE_URL (a server; a fresh `bench_<random>` database is created on it and dropped at
the end) or, when unset, the Postgres that scripts/postgres provides. The embedded vector index
lives in a temporary folder, built by this process and then served by a real `mcp-ledger api`
process. Prints one line per figure as it is measured, then a summary and the targets. See
bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.write_path import (
    ApiServer,
    Report,
    check_local,
    check_outcomes,
    fresh_database,
    log,
    machine_busy,
    process_cpu,
    server_facts,
    server_url,
)
from commands.context import CommandContext
from commands.import_tools import import_tools
from commands.inputs import RegisterTool
from infra.container import Container, build_container
from infra.search.vector_store import EdgeVectorStore
from infra.settings import load_settings
from projections.search import DEFAULT_FUSION, _lexical, _vector_filter
from projections.search_types import SearchRequest
from projections.vector_index import (
    COLLECTIONS,
    UNIT_COLUMNS,
    VectorIndexer,
    _payload,
    point_id,
    text_hash,
)
from projections.vector_ports import Embedder, VectorFilter, VectorPoint

IMPORT_BATCH = 500  # tools per import transaction, as write_path.py
IMPORT_CHUNK = 10_000  # tools per import_tools call (a progress note after each)
INDEX_BATCH = 256  # items per indexer batch: VectorIndexer's default, as `rebuild vectors`
LIMIT = 10  # results asked for; the searcher fetches max(4 * limit, 50) candidates per side
CANDIDATES = 50
WARMUP_QUERIES = 20
VARIANTS = ("none", "category", "tag", "status")

TARGET_P95_MS = 30.0
TARGET_RATIO = 2.0


# --------------------------------------------------------------------------------------------
# synthetic tools: word lists per domain, so texts differ and filters are selective

# fmt: off
DOMAINS: dict[str, dict[str, list[str]]] = {
    "weather": {
        "objects": [
            "forecast", "temperature", "rainfall", "wind speed", "air quality", "storm warning",
            "humidity", "UV index", "snow depth", "sunrise time",
        ],
        "tags": [
            "forecast", "climate", "alerts", "geo", "observation", "realtime",
        ],
        "params": [
            "location: city name, postal code or coordinates", "days: days ahead, 1-16",
            "units: metric or imperial", "hourly: include hourly values",
        ],
    },
    "finance": {
        "objects": [
            "exchange rate", "stock quote", "invoice", "payment", "ledger balance",
            "expense report", "tax estimate", "credit score", "loan schedule", "budget",
        ],
        "tags": [
            "payments", "accounting", "markets", "currency", "invoicing", "tax",
        ],
        "params": [
            "currency: ISO 4217 code", "amount: decimal amount", "account_id: account",
            "period: month or quarter, e.g. 2026-Q1",
        ],
    },
    "email": {
        "objects": [
            "inbox message", "mailing list", "newsletter", "email template", "bounce", "attachment",
            "reply draft", "spam report", "calendar invite", "signature",
        ],
        "tags": [
            "email", "messaging", "smtp", "marketing", "inbox", "notifications",
        ],
        "params": [
            "to: recipient address", "subject: subject line", "body: message text",
            "folder: mailbox folder name",
        ],
    },
    "devops": {
        "objects": [
            "deployment", "container image", "build pipeline", "incident", "log stream",
            "alert rule", "server metric", "rollback", "feature flag", "TLS certificate",
        ],
        "tags": [
            "ci", "kubernetes", "monitoring", "logs", "incidents", "cloud",
        ],
        "params": [
            "service: service name", "environment: staging or production",
            "since: start time, ISO 8601", "revision: git commit or tag",
        ],
    },
    "crm": {
        "objects": [
            "customer record", "sales lead", "deal stage", "contact", "support ticket",
            "churn risk", "account owner", "renewal date", "meeting note", "quote",
        ],
        "tags": [
            "sales", "customers", "support", "pipeline", "contacts", "tickets",
        ],
        "params": [
            "customer_id: customer identifier", "email: contact email", "stage: pipeline stage",
            "owner: account owner",
        ],
    },
    "travel": {
        "objects": [
            "flight", "hotel room", "train ticket", "car rental", "itinerary", "visa requirement",
            "airport delay", "seat map", "loyalty points", "trip",
        ],
        "tags": [
            "flights", "hotels", "booking", "transport", "trips", "airports",
        ],
        "params": [
            "origin: departure city or airport", "destination: arrival city", "date: travel date",
            "passengers: number of travellers",
        ],
    },
    "health": {
        "objects": [
            "appointment", "prescription", "lab result", "symptom", "vaccination record",
            "heart rate", "sleep pattern", "medication reminder", "patient chart", "BMI",
        ],
        "tags": [
            "medical", "patients", "fitness", "clinic", "wellness", "pharmacy",
        ],
        "params": [
            "patient_id: patient identifier", "date: appointment date", "dose: dose in mg",
            "provider: clinic or doctor",
        ],
    },
    "ecommerce": {
        "objects": [
            "product listing", "shopping cart", "order status", "inventory level", "shipping label",
            "return request", "discount code", "product review", "price history", "warehouse stock",
        ],
        "tags": [
            "shop", "orders", "inventory", "shipping", "retail", "catalog",
        ],
        "params": [
            "sku: product SKU", "order_id: order number", "quantity: number of items",
            "country: shipping country",
        ],
    },
    "hr": {
        "objects": [
            "job posting", "candidate", "interview slot", "payroll run", "leave request",
            "employee profile", "performance review", "onboarding checklist", "org chart",
            "timesheet",
        ],
        "tags": [
            "hiring", "payroll", "employees", "recruiting", "people", "timeoff",
        ],
        "params": [
            "employee_id: employee identifier", "department: team name", "start: start date",
            "role: job title",
        ],
    },
    "maps": {
        "objects": [
            "route", "address", "place", "traffic jam", "distance", "geocode", "transit stop",
            "elevation", "boundary", "points of interest",
        ],
        "tags": [
            "geo", "navigation", "places", "traffic", "routing", "gis",
        ],
        "params": [
            "from: start address", "to: destination address", "mode: driving, walking or transit",
            "radius: search radius in metres",
        ],
    },
    "documents": {
        "objects": [
            "PDF file", "spreadsheet", "contract", "scanned receipt", "slide deck", "word document",
            "signature request", "OCR text", "document summary", "redaction",
        ],
        "tags": [
            "pdf", "office", "ocr", "files", "contracts", "esign",
        ],
        "params": [
            "file_url: location of the file", "pages: page range", "language: document language",
            "format: output format",
        ],
    },
    "social": {
        "objects": [
            "post", "follower count", "mention", "hashtag trend", "comment thread",
            "direct message", "profile", "engagement rate", "scheduled post", "story",
        ],
        "tags": [
            "social", "media", "marketing", "engagement", "community", "content",
        ],
        "params": [
            "handle: account handle", "text: post text", "network: social network",
            "limit: maximum results",
        ],
    },
    "database": {
        "objects": [
            "SQL query", "table schema", "index", "backup", "slow query", "replica lag",
            "migration", "row count", "connection pool", "query plan",
        ],
        "tags": [
            "sql", "postgres", "data", "backups", "performance", "schema",
        ],
        "params": [
            "database: database name", "sql: query text", "table: table name", "timeout: seconds",
        ],
    },
    "security": {
        "objects": [
            "vulnerability", "password", "access token", "audit log", "firewall rule",
            "phishing email", "malware scan", "login attempt", "secret", "permission",
        ],
        "tags": [
            "security", "auth", "compliance", "scanning", "identity", "audit",
        ],
        "params": [
            "user: user name", "ip: IP address", "severity: minimum severity",
            "scope: resource scope",
        ],
    },
    "translation": {
        "objects": [
            "sentence", "subtitle", "glossary term", "language", "web page", "product description",
            "chat message", "speech transcript", "locale file", "pronunciation",
        ],
        "tags": [
            "language", "localization", "nlp", "speech", "text", "i18n",
        ],
        "params": [
            "text: text to translate", "source: source language code",
            "target: target language code", "formality: formal or informal",
        ],
    },
    "music": {
        "objects": [
            "song", "playlist", "album", "artist", "lyrics", "concert", "radio station",
            "podcast episode", "chord chart", "audio fingerprint",
        ],
        "tags": [
            "audio", "streaming", "podcasts", "entertainment", "music", "events",
        ],
        "params": [
            "query: song or artist", "genre: music genre", "duration: minutes",
            "market: country code",
        ],
    },
    "education": {
        "objects": [
            "course", "quiz", "student grade", "lesson plan", "flashcard", "assignment",
            "reading list", "exam schedule", "certificate", "tutor",
        ],
        "tags": [
            "learning", "students", "courses", "school", "exams", "teaching",
        ],
        "params": [
            "student_id: student identifier", "course: course code", "level: difficulty level",
            "due: due date",
        ],
    },
    "iot": {
        "objects": [
            "sensor reading", "thermostat", "smart light", "door lock", "energy usage",
            "device firmware", "battery level", "camera feed", "motion event", "gateway",
        ],
        "tags": [
            "devices", "smarthome", "energy", "sensors", "automation", "firmware",
        ],
        "params": [
            "device_id: device identifier", "room: room name", "value: target value",
            "interval: sampling interval",
        ],
    },
    "news": {
        "objects": [
            "headline", "article", "press release", "breaking story", "news source", "topic feed",
            "fact check", "editorial", "earnings call", "RSS feed",
        ],
        "tags": [
            "news", "media", "articles", "rss", "journalism", "feeds",
        ],
        "params": [
            "topic: topic or keyword", "source: publisher", "from: earliest date",
            "language: article language",
        ],
    },
    "legal": {
        "objects": [
            "case law", "court filing", "statute", "trademark", "patent", "NDA", "privacy policy",
            "GDPR request", "compliance checklist", "license",
        ],
        "tags": [
            "law", "compliance", "privacy", "ip", "contracts", "regulation",
        ],
        "params": [
            "jurisdiction: country or state", "case_number: court case number", "party: party name",
            "clause: clause type",
        ],
    },
}
VERBS = [
    "Fetches", "Returns", "Looks up", "Computes", "Summarises", "Lists", "Validates", "Converts",
    "Exports", "Monitors", "Searches", "Aggregates", "Predicts", "Detects", "Schedules",
    "Translates", "Updates", "Creates", "Cancels", "Compares",
]
QUALIFIERS = [
    "in real time", "for the last 30 days", "with historical comparison", "across all regions",
    "for a single account", "in bulk", "on a schedule", "with confidence scores", "grouped by week",
    "for a given date range", "with pagination", "as CSV or JSON", "from several providers",
    "with caching for repeated calls",
]
SOURCES = [
    "from the public API", "from the internal data warehouse", "from a partner feed",
    "from the vendor's REST endpoint", "from the company database", "from open data",
    "from uploaded files", "from the event stream",
]
PURPOSES = [
    "Useful for dashboards and alerting.", "Meant for support agents.", "Handy in chat assistants.",
    "Built for nightly batch jobs.", "Good for quick lookups.",
    "Respects rate limits and retries on errors.",
    "Returns structured results an agent can reason about.", "Works with read-only credentials.",
    "Suited to audits and reports.",
]
ADJECTIVES = [
    "Quick", "Smart", "Bulk", "Live", "Secure", "Simple", "Advanced", "Daily", "Global", "Instant",
    "Precise", "Open",
]
NOUNS = [
    "Finder", "Reporter", "Checker", "Tracker", "Builder", "Lookup", "Manager", "Sync", "Scanner",
    "Planner", "Explorer", "Helper",
]
SHARED_TAGS = [
    "beta", "internal", "public", "v2", "experimental", "stable",
]

# Plain-language requests, each with the category and a tag a caller would filter by.
QUERIES: list[tuple[str, str, str]] = [
    ("will it rain in Paris tomorrow", "weather", "forecast"),
    ("current air pollution level in my city", "weather", "observation"),
    ("send me an alert when a storm is coming", "weather", "alerts"),
    ("convert 100 dollars to euros", "finance", "currency"),
    ("what is the latest price of a stock", "finance", "markets"),
    ("create an invoice for a customer", "finance", "invoicing"),
    ("estimate how much tax I owe this quarter", "finance", "tax"),
    ("send a newsletter to all subscribers", "email", "marketing"),
    ("find unread messages in my inbox", "email", "inbox"),
    ("draft a reply to this email", "email", "messaging"),
    ("roll back the last production deployment", "devops", "kubernetes"),
    ("show error logs of the payment service", "devops", "logs"),
    ("open an incident for the outage", "devops", "incidents"),
    ("when does our TLS certificate expire", "devops", "monitoring"),
    ("which customers are likely to churn", "crm", "customers"),
    ("move this deal to the next sales stage", "crm", "pipeline"),
    ("list open support tickets for an account", "crm", "tickets"),
    ("book a cheap flight from Berlin to Rome", "travel", "flights"),
    ("find a hotel near the conference centre", "travel", "hotels"),
    ("is my flight delayed", "travel", "airports"),
    ("do I need a visa to visit Japan", "travel", "trips"),
    ("book a doctor appointment next week", "health", "clinic"),
    ("remind me to take my medication", "health", "pharmacy"),
    ("show my sleep and heart rate data", "health", "fitness"),
    ("where is my order", "ecommerce", "orders"),
    ("how many units are left in the warehouse", "ecommerce", "inventory"),
    ("print a shipping label for a parcel", "ecommerce", "shipping"),
    ("post a job opening for a backend engineer", "hr", "hiring"),
    ("request two days of vacation", "hr", "timeoff"),
    ("run payroll for this month", "hr", "payroll"),
    ("fastest route to the airport avoiding traffic", "maps", "routing"),
    ("turn an address into coordinates", "maps", "gis"),
    ("restaurants near me", "maps", "places"),
    ("extract the text from a scanned receipt", "documents", "ocr"),
    ("summarise this PDF contract", "documents", "pdf"),
    ("ask a client to sign a document", "documents", "esign"),
    ("schedule a post on social media", "social", "content"),
    ("which hashtags are trending today", "social", "engagement"),
    ("why is this SQL query so slow", "database", "performance"),
    ("back up the production database", "database", "backups"),
    ("show the schema of the orders table", "database", "schema"),
    ("scan our servers for known vulnerabilities", "security", "scanning"),
    ("rotate a leaked API token", "security", "auth"),
    ("who logged in from an unknown IP address", "security", "audit"),
    ("translate this paragraph into Spanish", "translation", "language"),
    ("generate subtitles for a video", "translation", "speech"),
    ("make a playlist of relaxing songs", "music", "streaming"),
    ("find the lyrics of a song", "music", "music"),
    ("create a quiz for my students", "education", "teaching"),
    ("turn off the lights in the living room", "iot", "smarthome"),
    ("how much electricity did the house use yesterday", "iot", "energy"),
    ("latest headlines about climate policy", "news", "news"),
    ("is this claim true, fact check it", "news", "journalism"),
    ("handle a GDPR data deletion request", "legal", "privacy"),
    ("check if a trademark is already registered", "legal", "ip"),
]
# fmt: on


def make_tools(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    categories = sorted(DOMAINS)
    tools = []
    for i in range(n):
        category = categories[i % len(categories)]
        d = DOMAINS[category]
        objects = rng.sample(d["objects"], 2)
        name = f"{rng.choice(ADJECTIVES)} {objects[0].title()} {rng.choice(NOUNS)}"
        description = (
            f"{rng.choice(VERBS)} {objects[0]} and {objects[1]} {rng.choice(QUALIFIERS)} "
            f"{rng.choice(SOURCES)}. {rng.choice(PURPOSES)}"
        )
        tags = rng.sample(d["tags"], rng.randint(2, 3))
        if rng.random() < 0.3:
            tags.append(rng.choice(SHARED_TAGS))
        properties = {}
        for spec in rng.sample(d["params"], rng.randint(1, 3)):
            pname, pdesc = spec.split(": ", 1)
            properties[pname] = {"type": "string", "description": pdesc}
        slug_obj = "-".join(objects[0].lower().split())[:30]
        tools.append({
            "slug": f"{category}-{slug_obj}-{i}",
            "name": name,
            "description": description,
            "category": category,
            "tags": tags,
            "input_schema": {"type": "object", "properties": properties},
            "version": f"1.{rng.randint(0, 9)}.{rng.randint(0, 20)}",
            "author": f"{category}-team-{rng.randint(1, 5)}",
            "status": "active" if rng.random() < 0.85 else "draft",
        })  # fmt: skip
    return tools


# --------------------------------------------------------------------------------------------
# measuring


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))  # nearest rank
    return ordered[rank]


def add_latency(report: Report, prefix: str, samples_s: Sequence[float], floor: str | None) -> None:
    """p50/p95/p99 in ms; each compared with the same percentile of `floor`, if given."""
    ms = [s * 1000 for s in samples_s]
    for label, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        report.add(
            f"{prefix}.{label}", percentile(ms, q), "ms", f"{floor}.{label}" if floor else None
        )


class Phase:
    """The whole machine's and optionally one process's CPU over a measured loop."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid

    def __enter__(self) -> Phase:
        self.t0, self.busy0 = time.perf_counter(), machine_busy()
        self.cpu0 = process_cpu(self.pid) if self.pid else 0.0
        return self

    def __exit__(self, *_: Any) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.busy_cores = (machine_busy() - self.busy0) / self.seconds
        self.cpu = (process_cpu(self.pid) - self.cpu0) if self.pid else 0.0


def request(query: tuple[str, str, str], variant: str) -> SearchRequest:
    q, category, tag = query
    return SearchRequest(
        q=q, kinds=("tool",), limit=LIMIT,
        category=category if variant == "category" else None,
        tags=(tag,) if variant == "tag" else (),
        status="active" if variant == "status" else None,
    )  # fmt: skip


def http_params(query: tuple[str, str, str], variant: str) -> dict[str, str]:
    q, category, tag = query
    params = {"q": q, "kind": "tool", "limit": str(LIMIT)}
    if variant == "category":
        params["category"] = category
    elif variant == "tag":
        params["tag"] = tag
    elif variant == "status":
        params["status"] = "active"
    return params


def cycle(n: int) -> list[tuple[str, str, str]]:
    return [QUERIES[i % len(QUERIES)] for i in range(n)]


# --------------------------------------------------------------------------------------------
# 1. populate


def populate(report: Report, container: Container, n: int) -> None:
    log(f"generating {n:,} tools")
    items = [RegisterTool(**t) for t in make_tools(n)]
    ctx = CommandContext(actor="bench", correlation_id="bench-search")
    t0 = time.perf_counter()
    for start in range(0, n, IMPORT_CHUNK):
        chunk = items[start : start + IMPORT_CHUNK]
        check_outcomes(import_tools(container.deps, chunk, ctx, IMPORT_BATCH), len(chunk))
        log(f"imported {start + len(chunk):,} / {n:,} tools ({time.perf_counter() - t0:.0f} s)")
    report.add("populate.import.rate", n / (time.perf_counter() - t0), "tools/s")
    t0 = time.perf_counter()
    container.read_side.follower.catch_up()
    report.add("populate.catch_up.rate", n / (time.perf_counter() - t0), "tools/s")


def tool_units(container: Container) -> list[dict[str, Any]]:
    with container.read_side.connection() as conn:
        cur = conn.execute(
            f"SELECT {UNIT_COLUMNS} FROM rm_search WHERE kind = 'tool' AND NOT deleted "
            "ORDER BY id, chunk"
        )
        rows = cur.fetchall()
        if rows and not isinstance(rows[0], dict):
            names = [d.name for d in cur.description]  # type: ignore[union-attr]
            rows = [dict(zip(names, r, strict=True)) for r in rows]
    return rows  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# 2. index build: floors, then the indexer


class Progress:
    def __init__(self, what: str, every: float = 15.0) -> None:
        self.what, self.every = what, every
        self.t0 = self.last = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self.last >= self.every or done >= total:
            self.last = now
            rate = done / (now - self.t0) if now > self.t0 else 0.0
            log(f"{self.what}: {done:,} / {total:,} ({rate:,.0f}/s, {now - self.t0:.0f} s)")


def bench_embed_floor(report: Report, embedder: Embedder, texts: list[str]) -> np.ndarray[Any, Any]:
    """The model alone over the texts the indexer embeds, in the indexer's batches."""
    vectors = np.empty((len(texts), embedder.dimension), dtype=np.float32)
    progress = Progress("embedder alone")
    embedder.embed(texts[:INDEX_BATCH])  # warm-up (discarded)
    t0 = time.perf_counter()
    for start in range(0, len(texts), INDEX_BATCH):
        vectors[start : start + INDEX_BATCH] = embedder.embed(texts[start : start + INDEX_BATCH])
        progress(min(start + INDEX_BATCH, len(texts)), len(texts))
    report.add("index.embed_floor.rate", len(texts) / (time.perf_counter() - t0), "texts/s")
    return vectors


def bench_upsert_floor(
    report: Report, root: Path, units: list[dict[str, Any]], vectors: np.ndarray[Any, Any]
) -> None:
    """Precomputed vectors (with the indexer's payloads) into a fresh Edge collection: only the
    upsert calls are timed; then one optimize."""
    store = EdgeVectorStore(root)
    try:
        store.ensure_collection("raw_tools", vectors.shape[1])
        ids = [point_id(u["id"], u["chunk"]) for u in units]
        payloads = [_payload(u, text_hash(u["body"])) for u in units]
        spent = 0.0
        for start in range(0, len(units), INDEX_BATCH):
            end = start + INDEX_BATCH
            points = [
                VectorPoint(pid, vec, pay)
                for pid, vec, pay in zip(
                    ids[start:end], vectors[start:end].tolist(), payloads[start:end], strict=True
                )
            ]
            t0 = time.perf_counter()
            store.upsert("raw_tools", points)
            spent += time.perf_counter() - t0
        report.add("index.upsert_floor.rate", len(units) / spent, "points/s")
        t0 = time.perf_counter()
        store.optimize("raw_tools")
        report.add("index.upsert_floor.optimize", time.perf_counter() - t0, "s")
    finally:
        store.close()
        shutil.rmtree(root, ignore_errors=True)


def bench_index(report: Report, container: Container, n_units: int) -> str:
    parts = container.search_parts()
    if parts.store is None or parts.embedder is None:
        raise RuntimeError(f"no vector search in the bench process: {parts.searcher.unavailable}")
    indexer = VectorIndexer(
        parts.store, parts.embedder, container.read_side.connection, sparse=parts.sparse
    )
    t0 = time.perf_counter()
    generation, count = indexer.rebuild(Progress("rebuild"))
    elapsed = time.perf_counter() - t0
    if count != n_units:
        raise RuntimeError(f"the rebuild holds {count} points, expected {n_units}")
    report.add("index.rebuild.rate", n_units / elapsed, "items/s", "index.floor.rate")
    report.add("index.rebuild.seconds", elapsed, "s")
    # The import queued every tool in the outbox and no indexer ran meanwhile; a rebuild does
    # not clear the outbox, so the live indexer re-visits those items (same text: no model
    # call). Drain it here, as the API's indexer would, so it does not run during the queries.
    t0 = time.perf_counter()
    drained = indexer.catch_up()
    if drained:
        report.add(
            "index.outbox_after_rebuild.rate", drained / (time.perf_counter() - t0), "items/s"
        )
    collection = generation.collection("tool")
    t0 = time.perf_counter()
    for kind in COLLECTIONS:
        parts.store.optimize(generation.collection(kind))
    report.add("index.final_optimize", time.perf_counter() - t0, "s")
    log(f"optimized {collection} after the bulk load ({parts.store.count(collection):,} points)")
    return collection


# --------------------------------------------------------------------------------------------
# 3. latency in-process: the floors and Searcher.search


def bench_floors(report: Report, container: Container, collection: str, n_queries: int) -> None:
    parts = container.search_parts()
    store, embedder = parts.store, parts.embedder
    assert store is not None
    assert embedder is not None
    queries = cycle(n_queries)
    for q, _, _ in QUERIES[:WARMUP_QUERIES]:
        store.query(collection, embedder.embed([q])[0].tolist(), VectorFilter(), CANDIDATES)

    embed_s: list[float] = []
    with Phase() as phase:
        for q, _, _ in queries:
            t0 = time.perf_counter()
            embedder.embed([q])
            embed_s.append(time.perf_counter() - t0)
    add_latency(report, "floor.embed_one", embed_s, None)
    report.add("floor.embed_one.machine_busy_cores", phase.busy_cores, "cores")

    vectors = {q: embedder.embed([q])[0].tolist() for q, _, _ in QUERIES}
    filters: dict[str, Callable[[tuple[str, str, str]], VectorFilter]] = {
        "unfiltered": lambda _: VectorFilter(),
        **{v: (lambda query, v=v: _vector_filter(request(query, v))) for v in VARIANTS},
    }
    sparse = parts.sparse
    assert sparse is not None
    words = {q: sparse.query(q) for q, _, _ in QUERIES}

    def raw(vector: list[float], q: str, flt: VectorFilter) -> list[Any]:
        # What search asks the index: dense and BM25 candidates fused in one query.
        return store.query_hybrid(  # type: ignore[union-attr]
            collection, vector, words[q], flt, CANDIDATES, fusion=DEFAULT_FUSION
        )

    for name, make_filter in filters.items():
        # The searcher's index query without the model: a precomputed vector and BM25 query,
        # the filter it builds ("none" still leaves out deprecated/archived items).
        query_s, both_s = [], []
        with Phase() as phase:
            for query in queries:
                flt = make_filter(query)
                t0 = time.perf_counter()
                hits = raw(vectors[query[0]], query[0], flt)
                query_s.append(time.perf_counter() - t0)
                if not hits:
                    raise RuntimeError(f"raw query {query} ({name}) found nothing")
        add_latency(report, f"floor.qdrant.{name}", query_s, None)
        if name == "unfiltered":
            continue
        # The floor the target names: one query embedding + one raw Qdrant hybrid query.
        for query in queries:
            flt = make_filter(query)
            t0 = time.perf_counter()
            vector = embedder.embed([query[0]])[0].tolist()
            raw(vector, query[0], flt)
            both_s.append(time.perf_counter() - t0)
        add_latency(report, f"floor.{name}", both_s, None)
        report.add(f"floor.qdrant.{name}.machine_busy_cores", phase.busy_cores, "cores")

    with container.read_side.connection() as conn:
        for variant in VARIANTS:
            lexical_s = []
            for query in queries:
                req = request(query, variant)
                t0 = time.perf_counter()
                _lexical(conn, req, CANDIDATES)
                lexical_s.append(time.perf_counter() - t0)
            add_latency(report, f"floor.lexical_sql.{variant}", lexical_s, None)


def bench_inprocess(report: Report, container: Container, n_queries: int) -> None:
    searcher = container.searcher
    queries = cycle(n_queries)
    with container.read_side.connection() as conn:
        for query in QUERIES[:WARMUP_QUERIES]:
            searcher.search(conn, request(query, "none"))
        for variant in VARIANTS:
            samples = []
            with Phase() as phase:
                for query in queries:
                    req = request(query, variant)
                    t0 = time.perf_counter()
                    result = searcher.search(conn, req)
                    samples.append(time.perf_counter() - t0)
                    if result.mode != "hybrid" or not result.items:
                        raise RuntimeError(f"search {req} → {result.mode}, {result.warnings}")
            add_latency(report, f"inproc.{variant}", samples, f"floor.{variant}")
            report.add(f"inproc.{variant}.machine_busy_cores", phase.busy_cores, "cores")


# --------------------------------------------------------------------------------------------
# 4. latency over HTTP against `mcp-ledger api`


def start_api(url: str, secret_key: str, workdir: Path) -> ApiServer:
    api = ApiServer(url, secret_key, workdir)  # MCP_LEDGER_DATA_DIR = workdir / "data"
    ours = {k: v for k, v in api.env.items() if k.startswith("MCP_LEDGER_")}
    dropped = ("MCP_LEDGER_", "KAFKA_", "REDIS_URL", "QDRANT_")  # none of the caller's settings
    api.env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)} | ours
    api.env |= {
        "DATABASE_URL": url,
        "MCP_LEDGER_READ_FEED": "log",
        # No API keys or rate limits: the bench measures search, not access control, and
        # sends far more queries per second than the search class's default limit.
        "MCP_LEDGER_AUTH": "off",
        "MCP_LEDGER_RATE_LIMIT": "off",
    }
    log("starting mcp-ledger api (it loads the model and opens the embedded index)")
    t0 = time.perf_counter()
    api.start()
    log(f"api ready in {time.perf_counter() - t0:.1f} s at {api.url}")
    return api


def bench_http(report: Report, api: ApiServer, n_queries: int) -> None:
    assert api.proc is not None
    queries = cycle(n_queries)
    with httpx.Client(base_url=api.url, trust_env=False, timeout=30) as client:

        def get(params: dict[str, str]) -> dict[str, Any]:
            r = client.get("/api/v1/search", params=params)
            if r.status_code != 200:
                raise RuntimeError(f"GET /api/v1/search {params} → {r.status_code}: {r.text[:500]}")
            body: dict[str, Any] = r.json()
            if body["mode"] != "hybrid" or body["warnings"] or not body["items"]:
                raise RuntimeError(f"GET /api/v1/search {params}: {json.dumps(body)[:500]}")
            return body

        for query in QUERIES[:WARMUP_QUERIES]:
            for variant in VARIANTS:
                get(http_params(query, variant))
        for variant in VARIANTS:
            samples = []
            with Phase(api.proc.pid) as phase:
                for query in queries:
                    params = http_params(query, variant)
                    t0 = time.perf_counter()
                    get(params)
                    samples.append(time.perf_counter() - t0)
            add_latency(report, f"http.{variant}", samples, f"floor.{variant}")
            report.add(
                f"http.{variant}.server_cpu_per_query", phase.cpu * 1000 / len(samples), "ms"
            )
            report.add(f"http.{variant}.machine_busy_cores", phase.busy_cores, "cores")


# --------------------------------------------------------------------------------------------
# summary


def judge(report: Report) -> None:
    p95s = {v: report.get(f"http.{v}.p95") for v in VARIANTS}
    if all(p95s.values()):
        worst = max(f.value for f in p95s.values())  # type: ignore[union-attr]
        report.target(
            f"search p95 end to end (HTTP) < {TARGET_P95_MS:.0f} ms, with and without filters",
            worst < TARGET_P95_MS,
            ", ".join(f"{v} {f.value:.1f} ms" for v, f in p95s.items()),  # type: ignore[union-attr]
        )
        ratios = {v: f.ratio for v, f in p95s.items() if f and f.ratio is not None}
        if ratios:
            report.target(
                f"p95 end to end within {TARGET_RATIO:.0f}x of raw Qdrant query + one embedding",
                max(ratios.values()) <= TARGET_RATIO,
                ", ".join(f"{v} {r:.2f}x" for v, r in ratios.items()),
            )


def value(report: Report, name: str) -> float:
    fig = report.get(name)
    return fig.value if fig else float("nan")


def print_summary(report: Report, n_tools: int) -> None:
    print(f"\nsummary: {n_tools:,} tools indexed; latency in ms (p50 / p95 / p99)")

    def trio(prefix: str) -> str:
        return " / ".join(f"{value(report, f'{prefix}.{p}'):6.2f}" for p in ("p50", "p95", "p99"))

    heads = ("HTTP end to end", "Searcher.search", "floor: embed+Qdrant", "Qdrant alone",
             "lexical SQL")  # fmt: skip
    print(f"{'filter':<10}" + "".join(f"{h:>24}" for h in heads) + "  p95 ratio")
    for v in VARIANTS:
        http95 = report.get(f"http.{v}.p95")
        ratio = f"{http95.ratio:.2f}x" if http95 and http95.ratio is not None else "-"
        prefixes = (f"http.{v}", f"inproc.{v}", f"floor.{v}", f"floor.qdrant.{v}",
                    f"floor.lexical_sql.{v}")  # fmt: skip
        print(f"{v:<10}" + "".join(f"{trio(p):>24}" for p in prefixes) + f"  {ratio}")
    print(f"{'one query embedding':<34}{trio('floor.embed_one'):>24}")
    print(f"{'Qdrant, no filter at all':<34}{trio('floor.qdrant.unfiltered'):>24}")
    print(
        f"index: rebuild {value(report, 'index.rebuild.rate'):,.0f} items/s; floors: embedder "
        f"{value(report, 'index.embed_floor.rate'):,.0f} texts/s, Qdrant upsert "
        f"{value(report, 'index.upsert_floor.rate'):,.0f} points/s, both in sequence "
        f"{value(report, 'index.floor.rate'):,.0f} items/s"
    )
    print("\ntargets")
    for t in report.targets:
        print(f"  [{'MET ' if t['met'] else 'MISS'}] {t['target']}: {t['detail']}")


# --------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10,000 tools")
    p.add_argument("--tools", type=int, help="tools indexed (default 100,000; --quick 10,000)")
    p.add_argument("--queries", type=int, default=500, help="queries per measurement (500)")
    p.add_argument(
        "--embed-sample",
        type=int,
        metavar="N",
        help="measure the embedder floor on the first N texts only (the indexer still embeds "
        "all); the upsert floor then cycles their vectors",
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    args.tools = args.tools or (10_000 if args.quick else 100_000)
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
        "tools": args.tools,
        "queries": args.queries,
        "limit": LIMIT,
        "index_batch": INDEX_BATCH,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    with (
        tempfile.TemporaryDirectory(prefix="mcp-ledger-bench-") as tmp,
        fresh_database(server) as url,
    ):
        workdir = Path(tmp)
        meta["postgres"] = server_facts(url)["server_version"]
        log(f"{meta['cpus']} cpus, load {meta['loadavg_start'][0]:.2f}; data in {workdir}")
        settings = load_settings(
            database_url=url, secret_key=secret_key, data_dir=workdir / "data",
            import_batch_size=IMPORT_BATCH, read_feed="log",
        )  # fmt: skip
        container = build_container(settings)
        api: ApiServer | None = None
        closed = False
        try:
            populate(report, container, args.tools)
            units = tool_units(container)
            if len(units) != args.tools:
                raise RuntimeError(f"rm_search holds {len(units)} tool units, not {args.tools}")
            embedder = container.search_parts().embedder
            assert embedder is not None
            meta["model"] = embedder.model
            sample = units[: args.embed_sample] if args.embed_sample else units
            vectors = bench_embed_floor(report, embedder, [u["body"] for u in sample])
            if len(sample) < len(units):  # the upsert floor reuses the sample's vectors
                vectors = np.resize(vectors, (len(units), vectors.shape[1]))
            bench_upsert_floor(report, workdir / "raw-vectors", units, vectors)
            del vectors
            serial = 1 / (
                1 / value(report, "index.embed_floor.rate")
                + 1 / value(report, "index.upsert_floor.rate")
            )
            report.add("index.floor.rate", serial, "items/s")
            collection = bench_index(report, container, len(units))
            del units
            bench_floors(report, container, collection, args.queries)
            bench_inprocess(report, container, args.queries)
            container.close()  # one process owns the Edge shard: hand it to the API
            closed = True
            api = start_api(url, secret_key, workdir)
            bench_http(report, api, args.queries)
        finally:
            if api is not None:
                api.stop()
            if not closed:
                container.close()
    meta["loadavg_end"] = os.getloadavg()
    meta["elapsed_s"] = round(time.perf_counter() - started, 1)
    judge(report)
    print_summary(report, args.tools)
    print(f"\n(run took {meta['elapsed_s']} s; load average {meta['loadavg_start'][0]:.2f} at "
          f"the start, {meta['loadavg_end'][0]:.2f} at the end)")  # fmt: skip
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
