"""Search quality on the labelled evaluation sets (bench/search_eval/, bench/search_eval_2/):
Recall@5 and nDCG@10 of the registry's lexical (BM25 in the index), vector and hybrid rankings,
of the other fusions it could run, of the previous layout (dense + Postgres full text), and of
plain BM25 (bm25s) over the same texts, through the real pipeline (import → current state →
rm_search → vector indexer → searcher) with the real model and an embedded Qdrant.

    .venv/bin/python bench/search_quality.py [--set NAME|all] [--write-doc] [--json PATH]

Uses $DATABASE_URL (a server: a fresh database is created and dropped) or scripts/postgres.
`--write-doc` rewrites the results table in docs/search-quality.md."""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.write_path import check_local, fresh_database, log, server_url
from commands.context import CommandContext
from commands.import_tools import import_tools
from commands.inputs import RegisterTool
from infra.container import Container, build_container
from infra.settings import load_settings
from projections.search import Searcher
from projections.search_types import SearchRequest
from projections.vector_index import VectorIndexer
from projections.vector_ports import Embedder, Fusion

ROOT = Path(__file__).resolve().parent.parent
SETS = ("search_eval", "search_eval_2")
EVAL = ROOT / "bench" / SETS[0]
DOC = ROOT / "docs" / "search-quality.md"
MODES = ("lexical", "vector", "hybrid")
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def recall_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant)


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, slug in enumerate(ranked[:k]) if slug in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal


def populate(container: Container, tools: list[dict[str, Any]]) -> None:
    ctx = CommandContext(actor="bench", correlation_id="search-quality")
    outcomes = import_tools(container.deps, [RegisterTool(**t) for t in tools], ctx, 500)
    if any(not getattr(o, "ok", True) for o in outcomes):
        raise SystemExit(f"import failed: {outcomes}")
    container.read_side.follower.catch_up()


def index(container: Container, embedder: Embedder | None = None) -> VectorIndexer:
    parts = container.search_parts()
    assert parts.store is not None, parts.searcher.unavailable
    model = embedder or parts.embedder
    assert model is not None
    indexer = VectorIndexer(parts.store, model, container.read_side.connection, sparse=parts.sparse)
    if embedder is None:
        indexer.prepare()
        t0 = time.perf_counter()
        n = indexer.catch_up()
        log(f"indexed {n} items in {time.perf_counter() - t0:.1f} s")
    else:
        t0 = time.perf_counter()
        _, n = indexer.rebuild()
        elapsed = time.perf_counter() - t0
        log(f"rebuilt the index with {embedder.model}: {n} points in {elapsed:.1f} s")
    return indexer


def ranked_slugs(searcher: Searcher, conn: Any, query: str, mode: str) -> list[str]:
    req = SearchRequest(q=query, kinds=("tool",), limit=10, mode=mode)
    result = searcher.search(conn, req)
    if result.mode != mode:
        raise SystemExit(f"{mode} search ran as {result.mode}: {result.warnings}")
    return [h.slug or "" for h in result.items]


def variants(container: Container) -> dict[str, tuple[Searcher, str]]:
    """Every ranking compared, by name: (searcher, mode). `lexical`, `vector` and `hybrid` are
    what the registry runs; the others are the fusions it could run instead and the layout
    before this one (dense vectors fused with Postgres full text)."""
    parts = container.search_parts()
    base = container.searcher

    def fused(fusion: Fusion) -> Searcher:
        return Searcher(base.embedder, base.store, sparse=parts.sparse, fusion=fusion)

    postgres = Searcher(base.embedder, base.store)  # no BM25: the first layout's ranking
    return {
        "lexical": (base, "lexical"),
        "vector": (base, "vector"),
        "hybrid": (base, "hybrid"),
        "rrf k=2": (fused(Fusion("rrf", k=2)), "hybrid"),
        "rrf k=60": (fused(Fusion("rrf", k=60)), "hybrid"),
        "rrf k=2, dense 2:1": (fused(Fusion("rrf", k=2, weights=(2.0, 1.0))), "hybrid"),
        "rrf k=2, bm25 2:1": (fused(Fusion("rrf", k=2, weights=(1.0, 2.0))), "hybrid"),
        "postgres fts": (postgres, "lexical"),
        "dense + postgres fts": (postgres, "hybrid"),
    }


def bm25s_baseline(container: Container, queries: list[dict[str, Any]]) -> list[list[str]]:
    """Plain BM25 (the bm25s library, English stop words, Snowball stemmer) over the same unit
    texts the index holds: the floor the hybrid ranking must clear."""
    import bm25s
    import Stemmer

    with container.read_side.connection() as conn:
        rows = conn.execute(
            "SELECT slug, body FROM rm_search WHERE kind = 'tool' AND chunk = 0 ORDER BY slug"
        ).fetchall()
    slugs, texts = [r["slug"] for r in rows], [r["body"] for r in rows]
    stemmer = Stemmer.Stemmer("english")
    model = bm25s.BM25()
    model.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
                show_progress=False)  # fmt: skip
    tokens = bm25s.tokenize(
        [q["query"] for q in queries], stopwords="en", stemmer=stemmer, show_progress=False
    )
    found, _ = model.retrieve(tokens, k=10, show_progress=False)
    return [[slugs[int(i)] for i in row] for row in found]


def evaluate_searcher(
    container: Container, searcher: Searcher, queries: list[dict[str, Any]]
) -> dict[str, dict[str, float]]:
    """Mean Recall@5 and nDCG@10 of one searcher's three modes (for comparing models)."""
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, int] = defaultdict(int)
    with container.read_side.connection() as conn:
        for q in queries:
            relevant = set(q["relevant"])
            for group in ("all", q["kind"]):
                counts[group] += 1
            for mode in MODES:
                ranked = ranked_slugs(searcher, conn, q["query"], mode)
                for group in ("all", q["kind"]):
                    sums[group][f"{mode}.recall@5"] += recall_at(ranked, relevant, 5)
                    sums[group][f"{mode}.ndcg@10"] += ndcg_at(ranked, relevant, 10)
    return {g: {k: v / counts[g] for k, v in m.items()} | {"n": counts[g]} for g, m in sums.items()}


def evaluate(container: Container, queries: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean Recall@5 and nDCG@10 of every ranking, overall and per query kind."""
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, int] = defaultdict(int)
    runs = variants(container)
    baseline = bm25s_baseline(container, queries)
    with container.read_side.connection() as conn:
        for q, plain in zip(queries, baseline, strict=True):
            relevant = set(q["relevant"])
            counts["all"] += 1
            counts[q["kind"]] += 1
            rankings = {"bm25s": plain}
            for name, (searcher, mode) in runs.items():
                rankings[name] = ranked_slugs(searcher, conn, q["query"], mode)
            for name, ranked in rankings.items():
                for group in ("all", q["kind"]):
                    sums[group][f"{name}.recall@5"] += recall_at(ranked, relevant, 5)
                    sums[group][f"{name}.ndcg@10"] += ndcg_at(ranked, relevant, 10)
    return {g: {k: v / counts[g] for k, v in m.items()} | {"n": counts[g]} for g, m in sums.items()}


def time_queries(fn: Callable[[], Any], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1000


def table(results: dict[str, dict[str, float]], title: str) -> str:
    """Every ranking over all queries; then the registry's three modes per query kind."""
    names = [
        "bm25s",
        *(
            k.removesuffix(".ndcg@10")
            for k in results["all"]
            if k.endswith(".ndcg@10") and k != "bm25s.ndcg@10"
        ),
    ]
    lines = [f"**{title}**", "", "| ranking | R@5 | nDCG@10 |", "| --- | ---: | ---: |"]
    for name in names:
        r = results["all"]
        lines.append(f"| {name} | {r[f'{name}.recall@5']:.3f} | {r[f'{name}.ndcg@10']:.3f} |")
    modes = ("bm25s", *MODES)
    lines += [
        "",
        "| queries | n | " + " | ".join(f"{m} nDCG@10" for m in modes) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in modes) + " |",
    ]
    for group in ["all", *sorted(g for g in results if g != "all")]:
        r = results[group]
        cells = " | ".join(f"{r[f'{m}.ndcg@10']:.3f}" for m in modes)
        lines.append(f"| {group} | {int(r['n'])} | {cells} |")
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    DOC.write_text(doc[:start] + "\n" + text + "\n" + doc[end:])


def run_set(name: str) -> tuple[dict[str, dict[str, float]], str]:
    folder = ROOT / "bench" / name
    tools = load_jsonl(folder / "tools.jsonl")
    queries = load_jsonl(folder / "queries.jsonl")
    server = server_url()
    check_local(server)
    with fresh_database(server) as url, tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            database_url=url, secret_key=Fernet.generate_key().decode(),
            data_dir=Path(tmp), read_feed="log",
        )  # fmt: skip
        container = build_container(settings)
        try:
            populate(container, tools)
            index(container)
            model = container.searcher.embedder
            results = evaluate(container, queries)
        finally:
            container.close()
    title = (f"{name}: {len(tools)} tools, {len(queries)} queries, "
             f"model {model.model if model else '-'}")  # fmt: skip
    return results, title


def verdict(name: str, results: dict[str, dict[str, float]]) -> bool:
    r = results["all"]
    hybrid = r["hybrid.ndcg@10"]
    best_single = max(r["lexical.ndcg@10"], r["vector.ndcg@10"])
    ratio = hybrid / r["bm25s.ndcg@10"]
    ok = hybrid >= best_single
    print(f"search_quality.{name}.hybrid_over_best_single {hybrid - best_single:+.4f} "
          f"({'MET' if ok else 'MISS'}: hybrid >= max(lexical, vector))")  # fmt: skip
    print(f"search_quality.{name}.hybrid_over_bm25s {ratio:.3f}x "
          f"({'MET' if ratio >= 1.2 else 'MISS'}: target 1.2x)")  # fmt: skip
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=[*SETS, "all"], default="all")
    parser.add_argument("--write-doc", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    texts, everything = [], {}
    for name in SETS if args.set == "all" else [args.set]:
        results, title = run_set(name)
        everything[name] = results
        for group, r in sorted(results.items()):
            for key, value in sorted(r.items()):
                print(f"search_quality.{name}.{group}.{key} {value:.4f}")
        verdict(name, results)
        texts.append(table(results, title))
        print(texts[-1])
    if args.json:
        args.json.write_text(json.dumps(everything, indent=2))
    if args.write_doc:
        write_doc("\n\n".join(texts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
