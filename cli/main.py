"""`mcp-ledger`: run the registry, migrate the store, import tools."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import structlog
import typer

from cli import common, read_side
from cli.client import datasets_app, tools_app
from cli.dev import dev_app
from cli.keys import keys_app
from cli.mcp import mcp as mcp_server
from cli.ops import ops_app
from cli.relay import relay
from infra.settings import Settings

app = typer.Typer(
    rich_markup_mode="markdown",
    help="mcp-ledger: an event-sourced registry of MCP tools, datasets and documents.",
    no_args_is_help=True,
    add_completion=False,
)
log = structlog.get_logger("cli")


def _serve(
    settings: Settings, host: str, port: int, *, follow_log: bool, with_mcp: bool = False
) -> None:
    import uvicorn

    from api.app import create_app

    # SIGTERM becomes SystemExit, so `finally` closes the container (and stops the embedded
    # Postgres) whether it arrives during start-up or after uvicorn's graceful shutdown, when
    # uvicorn re-raises the signal it caught.
    signal.signal(signal.SIGTERM, common.exit_on_signal)
    if follow_log:  # this process keeps the read models itself, from the log
        settings = settings.model_copy(update={"read_feed": "log"})
    container = common.container(settings)
    try:
        mode = "embedded" if settings.embedded else "server"
        log.info("starting", mode=mode, host=host, port=port, data_dir=str(settings.data_dir))
        app_ = create_app(container, follow_log=follow_log, mcp_host=host if with_mcp else None)
        try:
            uvicorn.run(
                app_,
                host=host,
                port=port,
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=settings.shutdown_timeout,
                proxy_headers=False,  # X-Forwarded-For: MCP_LEDGER_TRUSTED_PROXIES only
            )
        except SystemExit as exc:
            # uvicorn re-raises the SIGTERM it caught once it has stopped accepting, drained
            # the requests in flight (up to MCP_LEDGER_SHUTDOWN_TIMEOUT) and run the lifespan's
            # shutdown: a clean stop, so exit 0.
            if exc.code != 128 + signal.SIGTERM:
                raise
            log.info("stopped", signal="SIGTERM")
    finally:
        container.close()


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the embedded Postgres keeps its data")
    ] = None,
) -> None:
    """Run everything in one process on the embedded default (a real Postgres under
    ./.mcp-ledger unless DATABASE_URL is set). API at http://HOST:PORT/api/v1, docs at /docs."""
    overrides = {"data_dir": data_dir} if data_dir else {}
    _serve(common.settings(**overrides), host, port, follow_log=True, with_mcp=True)


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    follow_log: Annotated[
        bool, typer.Option(help="Also run the projections in this process (no Kafka)")
    ] = False,
) -> None:
    """Run the HTTP API (commands and queries, and the MCP server at /mcp) against DATABASE_URL
    (embedded if unset). The read models are kept by `mcp-ledger projector`, or pass
    --follow-log to keep them here."""
    _serve(common.settings(), host, port, follow_log=follow_log, with_mcp=True)


@app.command()
def migrate(
    to: Annotated[
        str, typer.Option(help="Target revision: an id, head (the default) or base")
    ] = "head",
    show: Annotated[
        bool, typer.Option("--status", help="Show the revisions and the database's, then exit")
    ] = False,
) -> None:
    """Upgrade the database schema to the newest revision (or to --to REV, downgrading where
    the revisions allow it). Each run is one transaction: a failure leaves the schema as it
    was. Safe to run again."""
    from infra.postgres.schema import SchemaError, current_revision, migrate_to, revisions

    settings = common.settings()
    from infra.postgres.embedded import open_database

    url, close = open_database(settings.database_url, settings.data_dir)
    try:
        if show:
            current = current_revision(url)
            for r in revisions():
                mark = "*" if r.id == current else " "
                typer.echo(f"{mark} {r.id}  {r.doc.splitlines()[0] if r.doc else ''}")
            typer.echo(f"database: {current or 'none (empty, or made before versioning)'}")
            return
        try:
            before, after = migrate_to(url, to)
        except SchemaError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        moved = "unchanged" if before == after else f"{before or 'none'} -> {after or 'base'}"
        typer.echo(f"migrated: {moved} (at {after or 'base'})")
    finally:
        close()


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="JSON or YAML: a list of tools or {tools: [...]}")],
    batch_size: Annotated[int | None, typer.Option(help="Tools per transaction")] = None,
    actor: Annotated[str, typer.Option(help="Recorded as the events' actor")] = "cli-import",
) -> None:
    """Bulk-register tools from FILE, appended in all-or-nothing batches, with progress."""
    from cli.importing import run_import

    settings = common.settings()
    code = run_import(
        common.container(settings), file, batch_size or settings.import_batch_size, actor
    )
    raise typer.Exit(code)


app.command("relay")(relay)
app.command("mcp")(mcp_server)


app.command()(read_side.projector)
app.command()(read_side.rebuild)
app.command()(read_side.verify)
app.command()(read_side.status)
app.add_typer(tools_app, name="tools")
app.add_typer(datasets_app, name="datasets")
app.add_typer(read_side.dlq_app, name="dlq")
app.add_typer(ops_app)  # backup, restore
app.add_typer(keys_app, name="keys")
app.add_typer(dev_app, name="dev", help="Development helpers: a Kafka broker (needs a checkout)")


if __name__ == "__main__":  # `python -m cli.main`, used by tests and benchmarks
    app(prog_name="mcp-ledger")
