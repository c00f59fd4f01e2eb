"""`mcp-ledger dev …`: helpers for working on mcp-ledger from a checkout of the repository."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Annotated

import typer

dev_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Development helpers (need a checkout of the repository).",
    no_args_is_help=True,
)

ROOT = Path(__file__).resolve().parent.parent


def _checkout_script(name: str) -> Path:
    script = ROOT / "scripts" / name
    if not script.is_file() or not (ROOT / "scripts" / "kafka-broker" / "pom.xml").is_file():
        typer.echo(
            f"`mcp-ledger dev {name}` needs a checkout of the mcp-ledger repository: "
            f"scripts/{name} and scripts/kafka-broker/pom.xml are not next to this installation "
            f"({ROOT}). "
            "Run it from a checkout (`pip install -e .` there), or run any Kafka yourself "
            "and set KAFKA_BOOTSTRAP_SERVERS.",
            err=True,
        )
        raise typer.Exit(2)
    return script


@dev_app.command()
def kafka(
    port: Annotated[
        int | None, typer.Option(help="PLAINTEXT port on 127.0.0.1 (default 19092)")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Broker data, config and logs (default .cache/kafka-data)")
    ] = None,
) -> None:
    """Run a real Apache Kafka 4.x broker (single-node KRaft) in the foreground.

    Runs scripts/kafka run: the first run resolves the broker's jars from Maven Central (needs
    Java 17+ and Maven), then the bootstrap address is printed (use it as KAFKA_BOOTSTRAP_SERVERS).
    Ctrl-C stops the broker; its data stays in the data folder."""
    script = _checkout_script("kafka")
    env = dict(os.environ)
    if port is not None:
        env["KAFKA_PORT"] = str(port)
    if data_dir is not None:
        env["KAFKA_DATA_DIR"] = str(data_dir.resolve())
    proc = subprocess.Popen([str(script), "run"], env=env)  # noqa: S603 (our own script)
    while True:
        try:
            code = proc.wait()
            break
        except KeyboardInterrupt:  # the broker got the same Ctrl-C: let it shut down cleanly
            continue
    raise typer.Exit(code if code >= 0 else 128 - code)
