"""Search quality on the labelled evaluation set (bench/search_eval/): Recall@5 and nDCG@10 of
lexical-only, vector-only and hybrid ranking, through the real pipeline (import → current state
→ rm_search → vector indexer → searcher) with the real model and an embedded Qdrant.

    .venv/bin/python bench/search_quality.py [--write-doc] [--json PATH]

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
from projections.vector_ports import Embedder

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "bench" / "search_eval"
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


def evaluate(
    container: Container, searcher: Searcher, queries: list[dict[str, Any]]
) -> dict[str, dict[str, float]]:
    """Mean Recall@5 and nDCG@10 per mode, overall and per query kind."""
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, int] = defaultdict(int)
    with container.read_side.connection() as conn:
        for q in queries:
            relevant = set(q["relevant"])
            counts["all"] += 1
            counts[q["kind"]] += 1
            for mode in MODES:
                req = SearchRequest(q=q["query"], kinds=("tool",), limit=10, mode=mode)
                result = searcher.search(conn, req)
                if result.mode != mode:
                    raise SystemExit(f"{mode} search ran as {result.mode}: {result.warnings}")
                ranked = [h.slug or "" for h in result.items]
                for group in ("all", q["kind"]):
                    sums[group][f"{mode}.recall@5"] += recall_at(ranked, relevant, 5)
                    sums[group][f"{mode}.ndcg@10"] += ndcg_at(ranked, relevant, 10)
    return {g: {k: v / counts[g] for k, v in m.items()} | {"n": counts[g]} for g, m in sums.items()}


def time_queries(fn: Callable[[], Any], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1000


def table(results: dict[str, dict[str, float]], title: str) -> str:
    lines = [
        f"**{title}**",
        "",
        "| queries | n | " + " | ".join(f"{m} R@5 | {m} nDCG@10" for m in MODES) + " |",
        "| --- | ---: | " + " | ".join("---: | ---:" for _ in MODES) + " |",
    ]
    for group in ["all", *sorted(g for g in results if g != "all")]:
        r = results[group]
        cells = " | ".join(f"{r[f'{m}.recall@5']:.3f} | {r[f'{m}.ndcg@10']:.3f}" for m in MODES)
        lines.append(f"| {group} | {int(r['n'])} | {cells} |")
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    DOC.write_text(doc[:start] + "\n" + text + "\n" + doc[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-doc", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    tools = load_jsonl(EVAL / "tools.jsonl")
    queries = load_jsonl(EVAL / "queries.jsonl")
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
            searcher = container.searcher
            results = evaluate(container, searcher, queries)
        finally:
            container.close()
    for group, r in sorted(results.items()):
        for key, value in sorted(r.items()):
            print(f"search_quality.{group}.{key} {value:.4f}")
    text = table(results, f"{len(tools)} tools, {len(queries)} queries, model "
                          f"{searcher.embedder.model if searcher.embedder else '-'}")  # fmt: skip
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.write_doc:
        write_doc(text)
    hybrid = results["all"]
    beats = all(
        hybrid[f"hybrid.{metric}"] > hybrid[f"{m}.{metric}"]
        for m in ("lexical", "vector")
        for metric in ("recall@5", "ndcg@10")
    )
    print(f"hybrid beats both lexical and vector on both metrics: {'yes' if beats else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
