"""Hybrid search. The live index generation holds, per unit, a dense vector and a BM25 sparse
vector (IDF over the collection); one query per kind fetches candidates of both and fuses them
(distribution-based score fusion), with the filters inside the index. If the model cannot
answer, BM25 from the index answers alone; if the index cannot, Postgres full text over
`rm_search` (the same units) does, with a warning: search degrades, it does not fail.
Generations of the first, dense-only layout (until the indexer rebuilds them) and searches
that include deleted items fuse dense vectors with Postgres full text by reciprocal rank."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from psycopg import Connection
from psycopg.rows import dict_row

from projections.search_types import SearchHit, SearchRequest, SearchResult
from projections.vector_index import (
    Generation,
    IndexOwnedElsewhere,
    check_model,
    check_owner,
    live_index,
)
from projections.vector_ports import (
    Embedder,
    Fusion,
    SparseEncoder,
    VectorFilter,
    VectorHit,
    VectorStore,
)

log = structlog.get_logger("projections.search")

# Retired items (a deprecated tool, an archived dataset) are left out unless asked for.
RETIRED = ["deprecated", "archived"]
RRF_K = 60  # the first layout's fusion with Postgres full text: ranks only
# Fusion of the index's dense and BM25 candidates: distribution-based score fusion ranked best
# on both evaluation sets (docs/search-quality.md).
DEFAULT_FUSION = Fusion("dbsf")
MIN_CANDIDATES = 50


class SimilarUnavailable(Exception):
    """No stored vector to start from: no index here, not built yet, or the item not indexed."""


@dataclass
class _Match:
    """One item's best unit in one ranking."""

    kind: str
    id: str
    chunk: int
    score: float


class Searcher:
    def __init__(
        self,
        embedder: Embedder | None,
        store: VectorStore | None,
        unavailable: str | None = None,
        sparse: SparseEncoder | None = None,
        fusion: Fusion = DEFAULT_FUSION,
    ) -> None:
        self.embedder = embedder
        self.store = store
        # Why this process has no vector search, when it has none (reported as a warning).
        self.unavailable = unavailable
        self.sparse = sparse
        self.fusion = fusion

    def search(
        self, conn: Connection[Any], req: SearchRequest, *, index_current: bool = True
    ) -> SearchResult:
        """`index_current=False`: the caller asked for a position the vector index has not
        reached, so Postgres full text (as fresh as the read models) ranks with the vectors."""
        wanted = max(req.limit * 4, MIN_CANDIDATES)
        warnings: list[str] = []
        try:
            generation = self._hybrid_generation(conn, req) if index_current else None
        except Exception as exc:  # no usable index here: the Postgres path says why
            generation = None
            if req.mode != "lexical":
                warnings.append(self._unavailable(exc))
        if generation is not None:
            try:
                ranked, mode = self._in_index(generation, req, wanted, warnings)
                return SearchResult(_details(conn, _best(ranked, req.limit)), mode, warnings)
            except Exception as exc:  # the store failed: Postgres full text still answers
                warnings.append(self._unavailable(exc))
                lexical = _lexical(conn, req, wanted)
                return SearchResult(_details(conn, _best(lexical, req.limit)), "lexical", warnings)
        return self._with_postgres(conn, req, wanted, warnings)

    def similar(
        self, conn: Connection[Any], kind: str, aggregate_id: str, req: SearchRequest
    ) -> SearchResult:
        """The items nearest to one item's stored vector (its first unit), under the same
        filters as a search (`req.q` is unused); the item itself is left out."""
        if self.embedder is None or self.store is None:
            raise SimilarUnavailable(self.unavailable or "no vector index in this process")
        live = live_index(conn)
        if live is None:
            raise SimilarUnavailable("the vector index has not been built yet")
        generation, owner = live
        try:
            check_owner(owner, self.store)
        except IndexOwnedElsewhere as exc:
            raise SimilarUnavailable(str(exc)) from None
        points = self.store.points_of(generation.collection(kind), [aggregate_id])
        first = min(points, key=lambda p: int(p.payload.get("chunk", 0)), default=None)
        if first is None or first.vector is None:
            raise SimilarUnavailable(f"the {kind} is not in the vector index (yet)")
        base = _vector_filter(req)
        flt = VectorFilter(
            equals=base.equals,
            any_of=base.any_of,
            all_tags=base.all_tags,
            none_of={**base.none_of, "aggregate_id": [aggregate_id]},
        )
        vector = list(first.vector)
        store = self.store
        wanted = max(req.limit * 4, MIN_CANDIDATES)
        matches = self._collect(
            generation, req, lambda c: store.query(c, vector, flt, wanted, req.min_score)
        )
        return SearchResult(_details(conn, _best(matches, req.limit)), "vector", [])

    def _unavailable(self, exc: Exception) -> str:
        reason = f"{type(exc).__name__}: {exc}" if self.unavailable is None else str(exc)
        log.warning("vector_search_unavailable", error=reason)
        return f"vector search unavailable, lexical results only ({reason})"

    def _hybrid_generation(self, conn: Connection[Any], req: SearchRequest) -> Generation | None:
        """The live generation when it holds BM25 beside the vectors, so one index answers;
        None for the first (dense-only) layout and for searches of deleted items (the index
        holds live items only), which Postgres full text answers."""
        if self.store is None or self.sparse is None or req.include_deleted:
            return None
        live = live_index(conn)
        if live is None:
            return None
        generation, owner = live
        check_owner(owner, self.store)
        return generation if generation.hybrid else None

    def _in_index(
        self, generation: Generation, req: SearchRequest, wanted: int, warnings: list[str]
    ) -> tuple[list[_Match], str]:
        """Dense and BM25 fused in one query per kind; BM25 alone when the model cannot
        answer (or for `lexical`); dense alone for `vector`."""
        assert self.store is not None
        assert self.sparse is not None
        flt = _vector_filter(req)
        dense: list[float] | None = None
        if req.mode != "lexical":
            try:
                dense = self._embed(generation, req.q)
            except Exception as exc:  # the model is down: BM25 from the index still answers
                if req.mode == "vector":
                    raise
                warnings.append(self._unavailable(exc))
        if req.mode == "vector" and dense is not None:
            return self._collect(generation, req, lambda c: self.store.query(  # type: ignore[union-attr]
                c, dense, flt, wanted, req.min_score)), "vector"  # fmt: skip
        words = self.sparse.query(req.q)
        if dense is None:
            return self._collect(generation, req, lambda c: self.store.query_sparse(  # type: ignore[union-attr]
                c, words, flt, wanted)), "lexical"  # fmt: skip
        fused = self._collect(generation, req, lambda c: self.store.query_hybrid(  # type: ignore[union-attr]
            c, dense, words, flt, wanted, fusion=self.fusion))  # fmt: skip
        return fused, "hybrid"

    def _embed(self, generation: Generation, text: str) -> list[float]:
        if self.embedder is None:
            raise RuntimeError(self.unavailable or "no embedding model in this process")
        check_model(generation, self.embedder)
        return list(self.embedder.embed([text])[0].tolist())

    def _collect(
        self,
        generation: Generation,
        req: SearchRequest,
        ask: Callable[[str], list[VectorHit]],
    ) -> list[_Match]:
        matches: list[_Match] = []
        for kind in req.kinds:
            matches += [
                _Match(kind, h.payload["aggregate_id"], int(h.payload["chunk"]), h.score)
                for h in ask(generation.collection(kind))
            ]
        matches.sort(key=lambda m: m.score, reverse=True)
        return matches

    def _with_postgres(
        self, conn: Connection[Any], req: SearchRequest, wanted: int, warnings: list[str]
    ) -> SearchResult:
        """The first layout (and deleted items): dense vectors fused with Postgres full text."""
        vector: list[_Match] | None = None
        if req.mode in ("hybrid", "vector"):
            try:
                vector = self._vector(conn, req, wanted)
            except Exception as exc:  # any failure of the model or store: fall back
                message = self._unavailable(exc)
                if message not in warnings:
                    warnings.append(message)
        if req.mode == "vector" and vector is not None:
            ranked, mode = _best(vector, req.limit), "vector"
        else:
            lexical = _lexical(conn, req, wanted)
            if vector is None:
                ranked, mode = _best(lexical, req.limit), "lexical"
            else:
                ranked, mode = _fuse([lexical, vector], req.limit), "hybrid"
        return SearchResult(_details(conn, ranked), mode, warnings)

    def _vector(self, conn: Connection[Any], req: SearchRequest, wanted: int) -> list[_Match]:
        if self.embedder is None or self.store is None:
            raise RuntimeError(self.unavailable or "no vector index in this process")
        live = live_index(conn)
        if live is None:
            raise RuntimeError("the vector index has not been built yet")
        generation, owner = live
        check_model(generation, self.embedder)
        check_owner(owner, self.store)
        query = self.embedder.embed([req.q])[0].tolist()
        flt = _vector_filter(req)
        store = self.store
        return self._collect(
            generation, req, lambda c: store.query(c, query, flt, wanted, req.min_score)
        )


def _vector_filter(req: SearchRequest) -> VectorFilter:
    equals: dict[str, Any] = {}
    for key in ("status", "category", "owner"):
        if getattr(req, key) is not None:
            equals[key] = getattr(req, key)
    if req.linked_to is not None:
        equals["link_id"] = req.linked_to
    none_of = {} if req.include_deprecated or req.status else {"status": RETIRED}
    return VectorFilter(equals=equals, none_of=none_of, all_tags=tuple(req.tags))


def _lexical(conn: Connection[Any], req: SearchRequest, wanted: int) -> list[_Match]:
    where = ["s.kind = ANY(%(kinds)s)", "s.tsv @@ q.query"]
    if not req.include_deleted:
        where.append("NOT s.deleted")
    if not (req.include_deprecated or req.status):
        where.append("(s.status IS NULL OR s.status <> ALL(%(retired)s))")
    for key in ("status", "category", "owner"):
        if getattr(req, key) is not None:
            where.append(f"s.{key} = %({key})s")
    if req.tags:
        where.append("s.tags @> %(tags)s::text[]")
    if req.linked_to is not None:
        where.append("s.link_id::text = %(linked_to)s")
    # Any of the words may match (plainto_tsquery would demand all): a request in plain
    # language rarely repeats every word of the text it should find.
    sql = f"""
        WITH q AS (SELECT replace(plainto_tsquery('english', %(q)s)::text, ' & ', ' | ')
            AS text)
        SELECT s.kind, s.id::text AS id, s.chunk, ts_rank(s.tsv, q.query, 1) AS score
        FROM rm_search s, (SELECT CASE WHEN text = '' THEN NULL ELSE text::tsquery END
            AS query FROM q) q
        WHERE {" AND ".join(where)}
        ORDER BY score DESC, s.id LIMIT %(limit)s"""  # noqa: S608 - fixed fragments only
    params = {**req.__dict__, "kinds": list(req.kinds), "tags": list(req.tags),
              "limit": wanted, "retired": RETIRED}  # fmt: skip
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql, params).fetchall()
    return [_Match(r["kind"], r["id"], r["chunk"], float(r["score"])) for r in rows]


def _best(matches: Sequence[_Match], limit: int) -> list[_Match]:
    """Each item once, at its best unit, best first."""
    seen: dict[str, _Match] = {}
    for m in matches:
        if m.id not in seen:
            seen[m.id] = m
    return list(seen.values())[:limit]


def _fuse(rankings: Sequence[Sequence[_Match]], limit: int) -> list[_Match]:
    """Reciprocal rank fusion over items; an item's unit is its best-ranked one anywhere."""
    scores: dict[str, float] = {}
    unit: dict[str, tuple[int, _Match]] = {}
    for ranking in rankings:
        for rank, m in enumerate(_best(ranking, len(ranking)), 1):
            scores[m.id] = scores.get(m.id, 0.0) + 1.0 / (RRF_K + rank)
            if m.id not in unit or rank < unit[m.id][0]:
                unit[m.id] = (rank, m)
    order = sorted(scores, key=lambda i: scores[i], reverse=True)[:limit]
    return [_Match(unit[i][1].kind, i, unit[i][1].chunk, scores[i]) for i in order]


def _details(conn: Connection[Any], ranked: Sequence[_Match]) -> list[SearchHit]:
    if not ranked:
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT s.id::text AS id, s.kind, s.chunk, s.slug, s.name, s.description,
                s.heading, s.body, s.status, s.category, s.tags, s.version
            FROM rm_search s JOIN unnest(%s::uuid[], %s::int[]) AS w(id, chunk)
                ON s.id = w.id AND s.chunk = w.chunk""",
            ([m.id for m in ranked], [m.chunk for m in ranked]),
        ).fetchall()
    by_id = {r["id"]: r for r in rows}
    hits = []
    for m in ranked:
        r = by_id.get(m.id)
        if r is None:  # changed since it was ranked (a new revision has fewer chunks)
            continue
        chunk = (
            {"index": r["chunk"], "heading": r["heading"], "text": r["body"]}
            if r["kind"] == "document"
            else None
        )
        hits.append(
            SearchHit(kind=r["kind"], id=r["id"], slug=r["slug"], name=r["name"],
                      description=r["description"], score=round(m.score, 6),
                      version=r["version"], status=r["status"], category=r["category"],
                      tags=list(r["tags"]), chunk=chunk)
        )  # fmt: skip
    return hits
