"""What every command shares: settings from the environment and the composition root, each
failing with the setting's name and exit status 2 instead of a traceback."""

from __future__ import annotations

import typer

from infra.container import Container
from infra.observability.logging import configure_logging
from infra.settings import Settings, SettingsError, load_settings


def settings(**overrides: object) -> Settings:
    try:
        loaded = load_settings(**overrides)
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    configure_logging(loaded.log_level, loaded.log_format)
    return loaded


def container(loaded: Settings) -> Container:
    from infra.container import build_container

    try:
        return build_container(loaded)
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def exit_on_signal(signum: int, _: object) -> None:
    """SIGTERM becomes SystemExit, so `finally` blocks close what they opened."""
    raise SystemExit(128 + signum)
