"""`mcp-ledger keys`: create, list and revoke API keys (only a hash of each is stored)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli import common
from infra.security.api_keys import ROLES, KeyError_, key_store

keys_app = typer.Typer(
    rich_markup_mode="markdown",
    help="API keys (sent as `Authorization: Bearer KEY`): create, list and revoke them.",
    no_args_is_help=True,
)


def _keys() -> tuple[Any, Any]:

    container = common.container(common.settings())
    return container, key_store(container.read_side)


@keys_app.command("create")
def create(
    role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}")],
    name: Annotated[str, typer.Option(help="Who or what uses the key (shown in audits)")],
) -> None:
    """Create a key and print it once: only its hash is stored. The key goes to stdout alone
    (e.g. KEY=$(mcp-ledger keys create ...)); the rest to stderr."""
    if role not in ROLES:
        typer.echo(f"unknown role {role!r}; expected one of {', '.join(ROLES)}", err=True)
        raise typer.Exit(2)
    container, keys = _keys()
    try:
        info, key = keys.create(name, role, by="cli")
    except KeyError_ as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    finally:
        container.close()
    typer.echo(key)
    typer.echo(
        f"created {info.role} key {info.id} ({info.name}); it is shown only now: store it "
        "in a secret manager",
        err=True,
    )


@keys_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable")] = False,
    include_revoked: Annotated[bool, typer.Option(help="Also show revoked keys")] = True,
) -> None:
    """Every key's id, name, role, creation, last use and revocation; never a secret."""
    container, keys = _keys()
    try:
        items = keys.list(include_revoked=include_revoked)
    finally:
        container.close()
    if as_json:
        typer.echo(json.dumps([k.to_json() for k in items], indent=2))
        return
    if not items:
        typer.echo("no API keys")
        return
    table = Table("id", "name", "role", "created", "last used", "revoked")

    def when(t: Any) -> str:
        return t.strftime("%Y-%m-%d %H:%M:%S") if t else "-"

    for k in items:
        table.add_row(
            k.id, k.name, k.role, when(k.created_at), when(k.last_used_at), when(k.revoked_at)
        )
    Console(width=120).print(table)


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (see `keys list`)")]) -> None:
    """Revoke a key: every process refuses it from the next request on (401)."""
    container, keys = _keys()
    try:
        info = keys.revoke(key_id, by="cli")
    except KeyError_ as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    finally:
        container.close()
    typer.echo(f"revoked key {info.id} ({info.name}, {info.role})")
