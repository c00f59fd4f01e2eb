"""Read-side commands: projector, rebuild, verify, status, and the dead-letter queue."""

from __future__ import annotations

import json
import signal
import threading
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cli import common
from infra.container import Container
from infra.settings import Settings
from projections.rebuild import rebuild as rebuild_projections
from projections.rebuild import stream_log
from projections.verify import differences

PROJECTIONS = ("current_state", "history", "vectors")
dlq_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Inspect and replay dead-lettered events.",
    no_args_is_help=True,
)


def _container() -> Any:
    return common.container(common.settings())


def projector(
    source: Annotated[
        str | None,
        typer.Option(
            help="log: follow the event store in-process; kafka: run the Faust worker on the "
            "relay's topics (default: kafka if KAFKA_BOOTSTRAP_SERVERS is set, else log)"
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve /metrics and /health/live on this port (default: "
            "MCP_LEDGER_METRICS_PORT; unset: none)"
        ),
    ] = None,
) -> None:
    """Keep the read models up to date, from Kafka or the event store's log (until SIGTERM:
    the batch in hand is applied and its checkpoint committed, then it exits 0)."""
    settings = common.settings()
    chosen = _projector_source(source, settings)
    container = common.container(settings)
    stop_metrics = _serve_metrics(metrics_port or settings.metrics_port, container)
    stop_indexer = _start_indexer(settings, container)
    try:
        if chosen == "kafka":
            _run_kafka_projector(settings, container)
        else:
            _follow_log(container)
    finally:
        stop_indexer()
        stop_metrics()
        container.close()


def _serve_metrics(port: int | None, container: Container) -> Any:
    """The projector's /metrics: projection lag, dead letters, vector backlog, usage drops."""
    if not port:
        return lambda: None
    from infra.observability.collectors import (
        ReadSideCollector,
        UsageCollector,
        process_registry,
        serve_metrics,
    )

    registry = process_registry(
        ReadSideCollector(container.read_side), UsageCollector(container.usage)
    )
    return serve_metrics(port, registry)


def _start_indexer(settings: Settings, container: Container) -> Any:
    """With a shared Qdrant server the projector keeps the vector index: a thread drains the
    vector outbox that the current-state projection fills."""
    if settings.qdrant_url is None or not settings.vectors:
        return lambda: None
    from infra.search.wiring import start_search

    indexer = start_search(container.search_parts(), container.settings, follow_log=True)
    if indexer is None:
        return lambda: None
    stop = threading.Event()
    worker = threading.Thread(target=indexer.run, args=(stop,), name="vectors")
    worker.start()

    def finish() -> None:
        stop.set()
        worker.join(timeout=30)

    return finish


def _projector_source(source: str | None, settings: Any) -> str:
    chosen = source or ("kafka" if settings.kafka_bootstrap_servers else "log")
    if chosen not in ("log", "kafka"):
        typer.echo(f"unknown source '{chosen}'; expected log or kafka", err=True)
        raise typer.Exit(2)
    if chosen == "kafka" and not settings.kafka_bootstrap_servers:
        typer.echo("KAFKA_BOOTSTRAP_SERVERS: missing; --source kafka needs a broker", err=True)
        raise typer.Exit(2)
    return chosen


def _run_kafka_projector(settings: Settings, container: Container) -> None:
    from kafka.errors import KafkaError

    from infra.kafka.projector import run_projector
    from infra.kafka.topics import TopicError

    try:
        run_projector(settings, container)
    except (KafkaError, TopicError) as exc:
        typer.echo(f"projector: Kafka failed: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None


def _follow_log(container: Container) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    container.read_side.follower.run(stop)


def rebuild(
    projection: Annotated[
        str | None,
        typer.Argument(help="current_state, history (default: both) or vectors"),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="vectors only: build the index with this embedding model instead"),
    ] = None,
) -> None:
    """Drop and rebuild read models from the event store, with progress; then verify them.
    `rebuild vectors` builds a new vector index beside the live one and switches to it when
    it is complete."""
    if projection is not None and projection not in PROJECTIONS:
        typer.echo(f"unknown projection '{projection}'; expected one of {', '.join(PROJECTIONS)}")
        raise typer.Exit(2)
    if projection == "vectors":
        _rebuild_vectors(model)
        return
    if model is not None:
        typer.echo("--model applies to `rebuild vectors` only", err=True)
        raise typer.Exit(2)
    container = _container()
    side = container.read_side
    chosen = [p for p in side.runner.projections if projection in (None, p.name)]
    total = container.store.head()
    columns = (TextColumn("rebuilding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns) as bar, side.connection() as conn:
        task = bar.add_task("events", total=total)
        head = rebuild_projections(conn, chosen, side.records_after, lambda n: bar.advance(task, n))
        bar.update(task, completed=total)
        problems = differences(conn, stream_log(side.records_after))
    container.close()
    names = ", ".join(p.name for p in chosen)
    if problems:
        typer.echo(f"rebuilt {names} to position {head}, but verification found differences:")
        for line in problems:
            typer.echo(f"  {line}")
        raise typer.Exit(1)
    typer.echo(f"rebuilt {names} to position {head}; verified equal to the replayed store")


def _rebuild_vectors(model: str | None) -> None:
    from infra.search.sparse import Bm25Encoder
    from infra.search.vector_store import VectorStoreError
    from infra.search.wiring import build_embedder, build_vector_store
    from projections.vector_index import VectorIndexer, live_units

    settings = common.settings()
    container = common.container(settings)
    try:
        embedder = build_embedder(settings, model)
        store = build_vector_store(settings)
    except (VectorStoreError, ValueError) as exc:
        container.close()
        typer.echo(f"rebuild vectors: {exc}", err=True)
        raise typer.Exit(2) from None
    indexer = VectorIndexer(store, embedder, container.read_side.connection, sparse=Bm25Encoder())
    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns) as bar:
            task = bar.add_task("items", total=None)
            generation, count = indexer.rebuild(
                lambda done, total: bar.update(task, completed=done, total=total)
            )
        with container.read_side.connection() as conn:
            expected = live_units(conn)
    finally:
        store.close()
        container.close()
    typer.echo(
        f"built vector index {generation.name} with {generation.model} "
        f"({generation.dimension} dimensions): {count} points for {expected} live search "
        "units; it is now the live index"
    )
    if count != expected:
        typer.echo(
            "the point count differs from the live units: changes made during the rebuild "
            "are queued for the indexer; run `mcp-ledger status` to watch it"
        )
    if embedder.model != (settings.embedding_model or embedder.model):
        typer.echo(f"set MCP_LEDGER_EMBEDDING_MODEL={embedder.model} for the serving processes")


def verify() -> None:
    """Compare the read models with the state replayed from the event store."""
    container = _container()
    side = container.read_side
    with side.connection() as conn:
        problems = differences(conn, stream_log(side.records_after))
    container.close()
    for line in problems:
        typer.echo(line)
    if problems:
        raise typer.Exit(1)
    typer.echo("read models equal the replayed store")


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable")] = False,
) -> None:
    """Store head, relay position, each projection's position and lag, dead-letter counts."""
    container = _container()
    with container.read_side.connection() as conn:
        report = container.read_side.status(conn)
    container.close()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    console = Console()
    console.print(f"event store head: {report['head']}")
    relay = report["relay"]
    console.print(f"relay position: {relay if relay is not None else 'no relay has run'}")
    table = Table("projection", "source", "position", "lag", "dead letters")
    for p in report["projections"]:
        table.add_row(
            p["name"], p["source"], str(p["position"]), str(p["lag"]), str(p["dead_letters"])
        )
    console.print(table)
    v = report["vectors"]
    if v["generation"] is None:
        console.print("vector index: not built yet (a serving process or the projector builds it)")
    else:
        console.print(
            f"vector index: {v['generation']} ({v['model']}, {v['dimension']} dimensions), "
            f"{v['pending']} changes waiting to be indexed"
        )


@dlq_app.command("list")
def dlq_list(limit: Annotated[int, typer.Option(help="How many to show")] = 50) -> None:
    """Dead-lettered events and the events parked behind them."""
    container = _container()
    with container.read_side.connection() as conn:
        rows = conn.execute(
            "SELECT projection, aggregate_id, version, position, event_type, status, error "
            "FROM projection_dead_letters WHERE status <> 'resolved' "
            "ORDER BY projection, aggregate_id, version LIMIT %s",
            (limit,),
        ).fetchall()
    container.close()
    if not rows:
        typer.echo("no dead letters")
        return
    table = Table("projection", "aggregate", "version", "position", "type", "status", "error")
    for r in rows:
        cells = (r["aggregate_id"], r["version"], r["position"], r["event_type"], r["status"])
        table.add_row(r["projection"], *map(str, cells), r["error"][:80])
    Console().print(table)


@dlq_app.command("retry")
def dlq_retry(
    projection: Annotated[str | None, typer.Option(help="Only this projection")] = None,
) -> None:
    """Re-apply dead-lettered events (and those parked behind them) in order."""
    container = _container()
    with container.read_side.connection() as conn:
        outcome = container.read_side.runner.retry_dead_letters(conn, projection)
    container.close()
    typer.echo(f"applied {outcome.applied}, still failing {outcome.dead_lettered}")
    if outcome.dead_lettered:
        raise typer.Exit(1)
