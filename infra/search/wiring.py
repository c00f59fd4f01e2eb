"""Builds search from settings: the embedding model, the vector store, the searcher and the
vector indexer.

Who owns the vector index:
- embedded (no QDRANT_URL): a Qdrant Edge shard under `<data dir>/vectors`, which one process
  owns. The process that serves queries (`up`, `api`, `mcp`) opens it, runs the indexer and
  answers from it; any other process that tries gets a clear "in use" error and serves lexical
  results with a warning.
- server (QDRANT_URL): a Qdrant server shared by every process. The projector (or `up` /
  `api --follow-log`, which run the projections themselves) runs the indexer; API and MCP
  processes only query."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import structlog
from psycopg import Connection

from infra.search.sparse import Bm25Encoder
from infra.settings import Settings
from projections.search import Searcher
from projections.vector_index import VectorIndexer
from projections.vector_ports import Embedder, SparseEncoder, VectorStore

log = structlog.get_logger("search")
Connect = Callable[[], AbstractContextManager[Connection[Any]]]


@dataclass
class SearchParts:
    searcher: Searcher
    embedder: Embedder | None = None
    store: VectorStore | None = None
    indexer: VectorIndexer | None = None
    sparse: SparseEncoder | None = None

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def build_embedder(settings: Settings, model: str | None = None) -> Embedder:
    """The configured model; `model` names another one (a rebuild for a model switch)."""
    from infra.search.embeddings import MINILM, HttpEmbedder, MiniLmOnnx

    if settings.embedding_provider == "minilm" and model in (None, MINILM):
        return MiniLmOnnx(batch_size=settings.embedding_batch_size)
    if not settings.embedding_url:
        raise ValueError(
            f"model {model!r} is served by an OpenAI-compatible endpoint: set "
            "MCP_LEDGER_EMBEDDING_URL (and MCP_LEDGER_EMBEDDING_API_KEY if it needs one)"
        )
    return HttpEmbedder(
        settings.embedding_url,
        model or settings.embedding_model or "",
        settings.embedding_api_key,
        dimension=settings.embedding_dimensions,
        batch_size=settings.embedding_batch_size,
        timeout=settings.embedding_timeout,
    )


def build_vector_store(settings: Settings) -> VectorStore:
    from infra.search.vector_store import EdgeVectorStore, QdrantServerStore

    if settings.qdrant_url:
        return QdrantServerStore(settings.qdrant_url, settings.qdrant_api_key)
    return EdgeVectorStore(settings.data_dir / "vectors")


def build_search(settings: Settings, connect: Connect) -> SearchParts:
    """Search for a process that serves queries: vector + lexical when the model and the index
    can be opened here, lexical with a stated reason otherwise."""
    if not settings.vectors:
        return SearchParts(Searcher(None, None, "vector search is off (MCP_LEDGER_VECTORS=off)"))
    try:
        embedder = build_embedder(settings)
        store = build_vector_store(settings)
    except Exception as exc:  # search still answers, lexically, and says why
        reason = f"vector index unavailable in this process: {exc}"
        log.error("vector_index_unavailable", error=str(exc))
        return SearchParts(Searcher(None, None, reason))
    sparse = Bm25Encoder()
    indexer = VectorIndexer(
        store, embedder, connect, batch_size=max(64, settings.embedding_batch_size), sparse=sparse
    )
    searcher = Searcher(query_embedder(settings, embedder), store, sparse=sparse)
    return SearchParts(searcher, embedder, store, indexer, sparse)


def query_embedder(settings: Settings, indexing: Embedder) -> Embedder:
    """The model instance that embeds queries. For the local model, a second ONNX session with
    one thread: a single short query gains nothing from a second core, and it measured 2-3x
    faster per query on this 2-core machine under load (docs/search-quality.md), while the
    indexer's batches keep both cores."""
    from infra.search.embeddings import MiniLmOnnx

    if isinstance(indexing, MiniLmOnnx):
        return MiniLmOnnx(batch_size=settings.embedding_batch_size, threads=1)
    return indexing


def runs_indexer(settings: Settings, *, follow_log: bool) -> bool:
    """Whether a serving process indexes: it owns an embedded index, or it runs the projections
    itself (then nobody else feeds a shared one)."""
    return settings.vectors and (settings.qdrant_url is None or follow_log)


def start_search(
    parts: SearchParts, settings: Settings, *, follow_log: bool
) -> VectorIndexer | None:
    """Opens search for a serving process (`parts` is built on first use: the model loads
    now, not on the first query) and returns the indexer this process must run, if any,
    prepared."""
    if parts.indexer is None or not runs_indexer(settings, follow_log=follow_log):
        return None
    from projections.vector_index import IndexMismatch, IndexOwnedElsewhere

    try:
        parts.indexer.prepare()
    except IndexMismatch as exc:
        log.error("vector_index_mismatch", error=str(exc))
        return None
    except IndexOwnedElsewhere as exc:
        # Not fatal: the owner may be stopping. The indexer retries, and takes over once the
        # owner has released the index or its lease has run out.
        log.error("vector_index_owned_elsewhere", error=str(exc))
    return parts.indexer
