#!/usr/bin/env python3
"""Validate the second search-quality evaluation set (tools.jsonl + queries.jsonl).

Same file formats as bench/search_eval/, with two more query kinds (`typo`, `two_jobs`) and a
different catalogue. Also checks that this set shares no slug or tool name with the first set,
so that a ranking tuned on one set is really tested on the other.

Standard library only. Prints a summary by kind and by domain and exits 1 if any problem is found.

    python3 bench/search_eval_2/check.py
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
TOOLS_PATH = HERE / "tools.jsonl"
QUERIES_PATH = HERE / "queries.jsonl"
FIRST_SET = HERE.parent / "search_eval"
FIRST_SET_TOOLS = FIRST_SET / "tools.jsonl"

MIN_TOOLS = 240
MIN_QUERIES = 350
MIN_CATEGORIES = 28
MIN_PER_KIND = {
    "paraphrase": 60,
    "task": 60,
    "keyword": 60,
    "typo": 50,
    "two_jobs": 30,
    "filter": 5,
}

KINDS = ("paraphrase", "task", "keyword", "typo", "two_jobs", "filter")


def _first_checker() -> ModuleType:
    """The first set's checker: the file formats and their rules are the same."""
    spec = importlib.util.spec_from_file_location("search_eval_check", FIRST_SET / "check.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


first = _first_checker()
Problems = first.Problems


def check_independent(tools: dict[str, dict], problems: Problems) -> None:
    """No slug or tool name may be shared with the first evaluation set."""
    if not FIRST_SET_TOOLS.exists():
        print(f"note: {FIRST_SET_TOOLS} not found, skipping the overlap check")
        return
    first = [json.loads(line) for line in FIRST_SET_TOOLS.read_text().splitlines() if line.strip()]
    first_slugs = {t.get("slug") for t in first}
    first_names = {" ".join(str(t.get("name", "")).lower().split()) for t in first}
    for slug, tool in tools.items():
        if slug in first_slugs:
            problems.add(f"tools.jsonl ({slug})", "slug also used in the first set")
        if " ".join(tool["name"].lower().split()) in first_names:
            problems.add(
                f"tools.jsonl ({slug})", f"name {tool['name']!r} also used in the first set"
            )


def main() -> int:
    problems = Problems()
    tools = first.check_tools(first.load_jsonl(TOOLS_PATH, problems), problems)
    queries = first.check_queries(first.load_jsonl(QUERIES_PATH, problems), tools, problems, KINDS)
    for q in queries:
        if q["kind"] == "two_jobs" and len(set(q["relevant"])) < 2:
            problems.add(f"queries.jsonl ({q['query']!r})", "a two_jobs query needs two tools")
    check_independent(tools, problems)

    categories = Counter(t["category"] for t in tools.values())
    statuses = Counter(t["status"] for t in tools.values())
    kinds = Counter(q["kind"] for q in queries)
    multi = sum(1 for q in queries if len(q["relevant"]) > 1)
    covered = {s for q in queries for s in q["relevant"]}

    if len(tools) < MIN_TOOLS:
        problems.add("tools.jsonl", f"{len(tools)} tools, need at least {MIN_TOOLS}")
    if len(queries) < MIN_QUERIES:
        problems.add("queries.jsonl", f"{len(queries)} queries, need at least {MIN_QUERIES}")
    if len(categories) < MIN_CATEGORIES:
        problems.add("tools.jsonl", f"{len(categories)} categories, need at least {MIN_CATEGORIES}")
    for kind, minimum in MIN_PER_KIND.items():
        if kinds.get(kind, 0) < minimum:
            problems.add("queries.jsonl", f"{kinds.get(kind, 0)} {kind} queries, need {minimum}")
    for slug in sorted(set(tools) - covered):
        problems.add(f"tools.jsonl ({slug})", "not relevant to any query")

    # Queries per domain: a query counts once for each category among its relevant tools.
    per_domain: dict[str, Counter] = {cat: Counter() for cat in categories}
    cross_domain = 0
    for q in queries:
        cats = {tools[s]["category"] for s in q["relevant"] if s in tools}
        cross_domain += len(cats) > 1
        for cat in cats:
            per_domain[cat][q["kind"]] += 1
            per_domain[cat]["all"] += 1

    active, draft = statuses.get("active", 0), statuses.get("draft", 0)
    print(f"tools:       {len(tools)}  (active {active}, draft {draft})")
    print(f"domains:     {len(categories)}")
    short = {
        "paraphrase": "para",
        "task": "task",
        "keyword": "kw",
        "typo": "typo",
        "two_jobs": "two",
        "filter": "filt",
    }
    header = " ".join(f"{short[k]:>5}" for k in KINDS)
    print(f"    {'domain':<17} {'tools':>5} {'qs':>4}  {header}")
    for cat, n in sorted(categories.items()):
        row = " ".join(f"{per_domain[cat].get(k, 0):>5}" for k in KINDS)
        print(f"    {cat:<17} {n:>5} {per_domain[cat]['all']:>4}  {row}")
    print(f"queries:     {len(queries)}")
    for kind in KINDS:
        n = kinds.get(kind, 0)
        share = 100 * n / len(queries) if queries else 0
        print(f"    {kind:<12} {n:>4}  ({share:.0f}%)")
    print(f"queries with >1 relevant: {multi}")
    print(f"queries spanning >1 domain: {cross_domain}")
    print(f"tools relevant to at least one query: {len(covered)} of {len(tools)}")
    return int(first.report(problems))


if __name__ == "__main__":
    sys.exit(main())
