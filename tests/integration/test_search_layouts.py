"""The index layouts: a generation of the first layout (dense vectors only, ranked with
Postgres full text) keeps answering, and the indexer rebuilds it as a hybrid one (dense + BM25
in the index) on its own; searches then rank in the index, and a deleted tool leaves both the
dense and the BM25 side."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from commands import tools
from commands.context import CommandContext
from commands.inputs import RegisterTool
from projections.search_types import SearchRequest
from projections.vector_index import VectorIndexer, live_index, live_units
from tests.conftest import tool_body
from tests.kafka_pipeline_support import fresh_database

CTX = CommandContext(actor="layouts", correlation_id="layouts")


@pytest.fixture(scope="module")
def world(secret_key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from infra.container import build_container
    from infra.settings import load_settings

    with fresh_database("layout") as url:
        settings = load_settings(
            database_url=url, secret_key=secret_key,
            data_dir=tmp_path_factory.mktemp("layouts"), read_feed="log",
        )  # fmt: skip
        container = build_container(settings)
        yield container, container.search_parts()
        container.close()


def register(container: Any, description: str) -> str:
    body = tool_body(description=description)
    tools.register_tool(container.deps, RegisterTool(**body).given(), CTX)
    container.read_side.follower.catch_up()
    return str(body["slug"])


def search(container: Any, q: str, **kw: Any) -> Any:
    with container.read_side.connection() as conn:
        return container.searcher.search(conn, SearchRequest(q=q, kinds=("tool",), **kw))


def test_a_dense_generation_answers_and_is_rebuilt_as_hybrid(world) -> None:
    container, parts = world
    tide = register(container, "High and low tide times for a harbour")
    register(container, "Current weather conditions for a city")
    dense = VectorIndexer(parts.store, parts.embedder, container.read_side.connection)
    generation = dense.prepare()
    dense.catch_up()
    assert generation.layout == "dense"
    first = search(container, "when is high water in the port")
    assert first.mode == "hybrid"  # dense vectors fused with Postgres full text
    assert first.items[0].slug == tide

    stop = threading.Event()
    hybrid = VectorIndexer(
        parts.store, parts.embedder, container.read_side.connection, sparse=parts.sparse
    )
    worker = threading.Thread(target=hybrid.run, args=(stop,))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with container.read_side.connection() as conn:
                live = live_index(conn)
            if live and live[0].layout == "hybrid":
                break
            time.sleep(0.1)
    finally:
        stop.set()
        worker.join(30)
    with container.read_side.connection() as conn:
        upgraded = live_index(conn)
        units = live_units(conn)
    assert upgraded is not None
    assert upgraded[0].layout == "hybrid"
    assert upgraded[0].name != generation.name
    count = parts.store.count(upgraded[0].collection("tool"))
    assert count == units
    assert not (parts.store.root / generation.collection("tool")).exists()  # old one dropped

    again = search(container, "when is high water in the port")
    assert again.mode == "hybrid"
    assert again.items[0].slug == tide
    lexical = search(container, "harbour tide", mode="lexical")
    assert lexical.mode == "lexical"
    assert [h.slug for h in lexical.items] == [tide]  # BM25 from the index: shared words only

    # Deleted: gone from both sides of the index.
    tools.delete_tool(container.deps, tide, CTX)
    container.read_side.follower.catch_up()
    hybrid.generation = None
    hybrid.catch_up()
    assert tide not in [h.slug for h in search(container, "harbour tide", mode="lexical").items]
    assert tide not in [h.slug for h in search(container, "tide times").items]
