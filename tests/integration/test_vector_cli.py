"""`mcp-ledger rebuild vectors` and `status` as a user runs them: real subprocesses, a database
of their own (the session app owns the session database's index), the real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from infra.search.vector_store import EdgeVectorStore
from tests.conftest import ROOT, _server_url, _with_db, tool_body


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture
def own_db(secret_key: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    server = _server_url()
    name = f"ledger_v_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield {
        **os.environ,
        "DATABASE_URL": _with_db(server, name),
        "MCP_LEDGER_SECRET_KEY": secret_key,
        "MCP_LEDGER_DATA_DIR": str(tmp_path / "data"),
        "MCP_LEDGER_LOG_LEVEL": "warning",
    }
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_rebuild_vectors_builds_a_new_index_and_switches(own_db, tmp_path: Path) -> None:
    tools = [tool_body(description=f"Tool number {i} for reports") for i in range(5)]
    (tmp_path / "tools.json").write_text(json.dumps(tools))
    assert _cli(own_db, "import", str(tmp_path / "tools.json")).returncode == 0
    assert _cli(own_db, "rebuild").returncode == 0

    first = _cli(own_db, "rebuild", "vectors")
    assert first.returncode == 0, first.stderr
    assert "5 points for 5 live search units; it is now the live index" in first.stdout
    status = json.loads(_cli(own_db, "status", "--json").stdout)["vectors"]
    assert status["model"] == "all-MiniLM-L6-v2-onnx-int8"
    assert status["dimension"] == 384
    assert status["generation"] in first.stdout

    second = _cli(own_db, "rebuild", "vectors")
    assert second.returncode == 0, second.stderr
    again = json.loads(_cli(own_db, "status", "--json").stdout)["vectors"]
    assert again["generation"] != status["generation"]
    names = {p.name for p in (tmp_path / "data" / "vectors").iterdir() if p.is_dir()}
    assert all(again["generation"] in n for n in names), names  # the old one was dropped


def test_rebuild_vectors_refuses_an_index_another_process_owns(own_db, tmp_path: Path) -> None:
    owner = EdgeVectorStore(tmp_path / "data" / "vectors")
    try:
        result = _cli(own_db, "rebuild", "vectors")
    finally:
        owner.close()
    assert result.returncode == 2
    assert "in use by pid" in result.stderr


def test_rebuild_vectors_with_a_model_but_no_endpoint_says_what_is_missing(own_db) -> None:
    result = _cli(own_db, "rebuild", "vectors", "--model", "text-embedding-3-small")
    assert result.returncode == 2
    assert "MCP_LEDGER_EMBEDDING_URL" in result.stderr
    assert _cli(own_db, "rebuild", "history", "--model", "x").returncode == 2
