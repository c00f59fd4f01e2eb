#!/usr/bin/env python3
"""Validate the search-quality evaluation dataset (tools.jsonl + queries.jsonl).

Standard library only. Prints a summary and exits 1 if any problem is found.

    python3 bench/search_eval/check.py
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOOLS_PATH = HERE / "tools.jsonl"
QUERIES_PATH = HERE / "queries.jsonl"

MIN_TOOLS = 300
MIN_QUERIES = 150
MIN_CATEGORIES = 25

TOOL_FIELDS = {
    "slug": str,
    "name": str,
    "description": str,
    "long_description": str,
    "category": str,
    "tags": list,
    "input_schema": dict,
    "version": str,
    "author": str,
    "status": str,
}
QUERY_FIELDS = {"query": str, "relevant": list, "kind": str}
KINDS = ("paraphrase", "keyword", "task", "filter")
STATUSES = ("active", "draft")
JSON_TYPES = {"string", "number", "integer", "boolean", "array", "object", "null"}

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
CATEGORY_RE = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")  # same rule as domain/validation.py
AUTHOR_RE = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
ABBREVIATIONS = re.compile(r"\b(e\.g|i\.e|etc|vs|approx|no)\.", re.IGNORECASE)
SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


def load_jsonl(path: Path, problems: Problems) -> list[tuple[int, dict]]:
    rows: list[tuple[int, dict]] = []
    if not path.exists():
        problems.add(path.name, "file not found")
        return rows
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                problems.add(f"{path.name}:{lineno}", "blank line")
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.add(f"{path.name}:{lineno}", f"invalid JSON ({exc.msg})")
                continue
            if not isinstance(obj, dict):
                problems.add(f"{path.name}:{lineno}", "line is not a JSON object")
                continue
            rows.append((lineno, obj))
    return rows


def check_fields(obj: dict, spec: dict[str, type], where: str, problems: Problems) -> bool:
    ok = True
    missing = [k for k in spec if k not in obj]
    extra = [k for k in obj if k not in spec]
    if missing:
        problems.add(where, f"missing fields {missing}")
        ok = False
    if extra:
        problems.add(where, f"unexpected fields {extra}")
    for key, typ in spec.items():
        if key in obj and not isinstance(obj[key], typ):
            problems.add(where, f"{key} must be {typ.__name__}, got {type(obj[key]).__name__}")
            ok = False
    return ok


def sentence_count(text: str) -> int:
    return len(SENTENCE_END.findall(ABBREVIATIONS.sub("abbr", text.strip())))


def check_schema(schema: dict, where: str, problems: Problems) -> None:
    if schema.get("type") != "object":
        problems.add(where, 'input_schema.type must be "object"')
    props = schema.get("properties")
    if not isinstance(props, dict):
        problems.add(where, "input_schema.properties must be an object")
        return
    if not 1 <= len(props) <= 6:
        problems.add(where, f"input_schema has {len(props)} properties, expected 1-6")
    for name, prop in props.items():
        if not isinstance(prop, dict):
            problems.add(where, f"property {name!r} must be an object")
            continue
        if prop.get("type") not in JSON_TYPES:
            problems.add(where, f"property {name!r} has no valid JSON Schema type")
        if not isinstance(prop.get("description"), str) or not prop["description"].strip():
            problems.add(where, f"property {name!r} needs a description")
        if "enum" in prop and not (isinstance(prop["enum"], list) and prop["enum"]):
            problems.add(where, f"property {name!r} has an empty or invalid enum")
    required = schema.get("required")
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        problems.add(where, "input_schema.required must be a list of strings")
    else:
        unknown = [r for r in required if r not in props]
        if unknown:
            problems.add(where, f"required names {unknown} are not properties")
        if len(set(required)) != len(required):
            problems.add(where, "input_schema.required repeats a name")


def check_tools(rows: list[tuple[int, dict]], problems: Problems) -> dict[str, dict]:
    by_slug: dict[str, dict] = {}
    for lineno, tool in rows:
        where = f"tools.jsonl:{lineno}"
        if not check_fields(tool, TOOL_FIELDS, where, problems):
            continue
        slug = tool["slug"]
        where = f"tools.jsonl:{lineno} ({slug})"
        if not (3 <= len(slug) <= 63 and SLUG_RE.fullmatch(slug)):
            problems.add(
                where, "slug must be 3-63 chars of [a-z0-9-], not starting/ending with '-'"
            )
        if "--" in slug:
            problems.add(where, "slug contains '--'")
        if slug in by_slug:
            problems.add(where, "duplicate slug")
        by_slug[slug] = tool
        if not tool["name"].strip() or len(tool["name"]) > 200:
            problems.add(where, "name must be 1-200 characters")
        if not tool["description"].strip() or len(tool["description"]) > 300:
            problems.add(
                where, f"description must be 1-300 characters (has {len(tool['description'])})"
            )
        if not 1 <= sentence_count(tool["description"]) <= 2:
            problems.add(where, "description should be one or two sentences")
        n = sentence_count(tool["long_description"])
        if not 2 <= n <= 5:
            problems.add(where, f"long_description should be 2-5 sentences (found {n})")
        if not CATEGORY_RE.fullmatch(tool["category"]):
            problems.add(where, f"category {tool['category']!r} is not slug-like")
        tags = tool["tags"]
        if not 2 <= len(tags) <= 6:
            problems.add(where, f"expected 2-6 tags, got {len(tags)}")
        if len(set(tags)) != len(tags):
            problems.add(where, "tags repeat")
        for tag in tags:
            if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
                problems.add(where, f"bad tag {tag!r}")
        check_schema(tool["input_schema"], where, problems)
        if not SEMVER_RE.fullmatch(tool["version"]):
            problems.add(where, f"version {tool['version']!r} is not semver")
        if not AUTHOR_RE.fullmatch(tool["author"]):
            problems.add(where, f"author {tool['author']!r} should look like 'payments-team'")
        if tool["status"] not in STATUSES:
            problems.add(where, f"status must be one of {STATUSES}")
    names = Counter(t["name"].lower() for t in by_slug.values())
    for name, count in names.items():
        if count > 1:
            problems.add("tools.jsonl", f"tool name {name!r} used {count} times")
    return by_slug


def check_queries(
    rows: list[tuple[int, dict]],
    tools: dict[str, dict],
    problems: Problems,
    kinds: tuple[str, ...] = KINDS,
) -> list[dict]:
    good: list[dict] = []
    seen: set[str] = set()
    for lineno, q in rows:
        where = f"queries.jsonl:{lineno}"
        if not check_fields(q, QUERY_FIELDS, where, problems):
            continue
        text = q["query"].strip()
        if not text:
            problems.add(where, "empty query")
        key = " ".join(text.lower().split())
        if key in seen:
            problems.add(where, f"duplicate query {text!r}")
        seen.add(key)
        if q["kind"] not in kinds:
            problems.add(where, f"kind must be one of {kinds}")
        rel = q["relevant"]
        if not rel:
            problems.add(where, "relevant is empty")
        if len(set(rel)) != len(rel):
            problems.add(where, "relevant repeats a slug")
        for slug in rel:
            if not isinstance(slug, str) or slug not in tools:
                problems.add(where, f"relevant slug {slug!r} is not in tools.jsonl")
                continue
            tool = tools[slug]
            # The query must not simply be the tool's slug or name.
            if key in (slug.replace("-", " "), " ".join(tool["name"].lower().split())):
                problems.add(where, f"query just repeats the name/slug of {slug}")
        good.append(q)
    return good


def main() -> int:
    problems = Problems()
    tools = check_tools(load_jsonl(TOOLS_PATH, problems), problems)
    queries = check_queries(load_jsonl(QUERIES_PATH, problems), tools, problems)

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

    active, draft = statuses.get("active", 0), statuses.get("draft", 0)
    print(f"tools:       {len(tools)}  (active {active}, draft {draft})")
    print(f"categories:  {len(categories)}")
    for cat, n in sorted(categories.items()):
        print(f"    {cat:<20} {n}")
    print(f"queries:     {len(queries)}")
    for kind in KINDS:
        n = kinds.get(kind, 0)
        share = 100 * n / len(queries) if queries else 0
        print(f"    {kind:<12} {n:>4}  ({share:.0f}%)")
    print(f"queries with >1 relevant: {multi}")
    print(f"tools relevant to at least one query: {len(covered)} of {len(tools)}")
    return report(problems)


def report(problems: Problems) -> int:
    """Lists the problems (exit status 1), or says OK (0)."""
    if problems.items:
        print(f"\n{len(problems.items)} problem(s):", file=sys.stderr)
        for item in problems.items:
            print(f"  - {item}", file=sys.stderr)
        return 1
    print("\nOK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
