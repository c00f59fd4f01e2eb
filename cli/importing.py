"""`mcp-ledger import FILE`: parse, validate, and append in batches with a progress bar."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from commands.context import CommandContext
from commands.import_tools import BatchOutcome, import_tools
from commands.inputs import ToolBatch
from domain.errors import InvalidInput
from infra.container import Container


def _load(file: Path) -> Any:
    text = file.read_text()
    if file.suffix.lower() in (".yaml", ".yml"):
        return yaml.safe_load(text)
    return json.loads(text)


def run_import(container: Container, file: Path, batch_size: int, actor: str) -> int:
    try:
        batch = ToolBatch.model_validate(_load(file))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        if isinstance(exc, ValidationError):
            for err in exc.errors()[:20]:
                where = ".".join(str(p) for p in err["loc"])
                typer.echo(f"{where}: {err['msg']}", err=True)
        else:
            typer.echo(f"cannot read {file}: {exc}", err=True)
        return 2
    ctx = CommandContext(actor=actor, correlation_id=f"import-{uuid.uuid4()}")
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns) as progress:
        task = progress.add_task("tools", total=len(batch.tools))

        def advance(outcome: BatchOutcome) -> None:
            if outcome.error is None:
                progress.advance(task, outcome.size)

        outcomes = import_tools(container.deps, batch.tools, ctx, batch_size, advance)
    container.close()
    stored = sum(len(o.results) for o in outcomes)
    failed = next((o for o in outcomes if o.error), None)
    if failed is None:
        typer.echo(f"imported {stored} tools in {len(outcomes)} batches")
        return 0
    typer.echo(f"batch {failed.index} rejected: {failed.error}", err=True)
    if isinstance(failed.error, InvalidInput):
        for e in failed.error.errors[:20]:
            typer.echo(f"  {e.field}: {e.message}", err=True)
    typer.echo(f"{stored} tools in earlier batches were stored", err=True)
    return 1
