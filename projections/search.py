"""Hybrid search: vector similarity (the live index generation in the vector store) fused with
a lexical match (Postgres full-text over `rm_search`, the same units) by reciprocal rank fusion.
Filters run inside both. If the model or the store cannot answer, the lexical ranking is
returned alone with a warning: search degrades, it does not fail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from psycopg import Connection
from psycopg.rows import dict_row

from projections.search_types import SearchHit, SearchRequest, SearchResult
from projections.vector_index import check_model, check_owner, live_index
from projections.vector_ports import Embedder, VectorFilter, VectorStore

log = structlog.get_logger("projections.search")

# Retired items (a deprecated tool, an archived dataset) are left out unless asked for.
RETIRED = ["deprecated", "archived"]
RRF_K = 60  # the usual constant: ranks matter, raw scores of different scales do not
MIN_CANDIDATES = 50


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
    ) -> None:
        self.embedder = embedder
        self.store = store
        # Why this process has no vector search, when it has none (reported as a warning).
        self.unavailable = unavailable

    def search(self, conn: Connection[Any], req: SearchRequest) -> SearchResult:
        wanted = max(req.limit * 4, MIN_CANDIDATES)
        warnings: list[str] = []
        vector: list[_Match] | None = None
        if req.mode in ("hybrid", "vector"):
            try:
                vector = self._vector(conn, req, wanted)
            except Exception as exc:  # any failure of the model or store: fall back
                reason = f"{type(exc).__name__}: {exc}" if self.unavailable is None else str(exc)
                log.warning("vector_search_unavailable", error=reason)
                warnings.append(f"vector search unavailable, lexical results only ({reason})")
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
        matches: list[_Match] = []
        for kind in req.kinds:
            hits = self.store.query(generation.collection(kind), query, flt, wanted, req.min_score)
            matches += [
                _Match(kind, h.payload["aggregate_id"], int(h.payload["chunk"]), h.score)
                for h in hits
            ]
        matches.sort(key=lambda m: m.score, reverse=True)
        return matches


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
