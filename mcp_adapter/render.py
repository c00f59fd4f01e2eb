"""Compact markdown renderings of the tools' answers (the text content beside the structured
content), short enough for an agent's context."""

from __future__ import annotations

import json
from typing import Any

from mcp_adapter import models
from mcp_adapter.shapes import input_summary

MAX_TEXT = 400
MAX_PATCH_OPS = 20


def _cut(text: str | None, limit: int = MAX_TEXT) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _at(position: int) -> str:
    return f"_read-model position {position}_"


def _params(params: list[models.Param]) -> str:
    if not params:
        return "no parameters"
    return ", ".join(f"`{p.name}`{'' if p.required else '?'}: {p.type}" for p in params)


def _tags(tags: list[str]) -> str:
    return f" [{', '.join(tags)}]" if tags else ""


def tool(answer: models.ToolAnswer) -> str:
    t = answer.tool
    when = " (from history)" if answer.historic else ""
    lines = [
        f"## {t.name} (`{t.slug}`) v{t.semver}{when}",
        f"{t.status} · {t.category}{_tags(t.tags)} · registry version {t.version} · "
        f"by {t.author} · changed {t.updated_at.isoformat()}",
        "",
        _cut(t.description),
    ]
    if t.deleted_at is not None:
        lines.append(f"**deleted** at {t.deleted_at.isoformat()}")
    lines += ["", f"Inputs: {_params(input_summary(t.input_schema))}", "", _at(answer.position)]
    return "\n".join(lines)


def _tool_line(t: models.ToolSummary) -> str:
    return (
        f"- `{t.slug}` {t.name} v{t.semver} ({t.status}, {t.category}){_tags(t.tags)}: "
        f"{_cut(t.description, 160)}"
    )


def tool_page(page: models.ToolPage) -> str:
    lines = [f"{len(page.items)} tools" + (" (more: pass next_cursor)" if page.next_cursor else "")]
    lines += [_tool_line(t) for t in page.items]
    return "\n".join([*lines, "", _at(page.position)])


def tool_search(result: models.ToolSearch) -> str:
    lines = [f"{len(result.items)} tools ({result.mode} search)"]
    for h in result.items:
        lines.append(
            f"- `{h.slug}` {h.name} (score {h.score:.3f}, {h.status}, v{h.semver or '?'}): "
            f"{_cut(h.description, 160)}; inputs: {_params(h.inputs)}"
        )
    lines += [f"> {w}" for w in result.warnings]
    return "\n".join([*lines, "", _at(result.position)])


def _patch(patch: list[dict[str, Any]]) -> list[str]:
    lines = []
    for op in patch[:MAX_PATCH_OPS]:
        value = "" if "value" not in op else " " + _cut(json.dumps(op["value"]), 120)
        lines.append(f"  - {op.get('op')} `{op.get('path')}`{value}")
    if len(patch) > MAX_PATCH_OPS:
        lines.append(f"  - … {len(patch) - MAX_PATCH_OPS} more operations")
    return lines


def tool_history(history: models.ToolHistory) -> str:
    lines = [f"History of `{history.slug}`: {len(history.items)} versions"]
    for v in history.items:
        why = f" — {_cut(v.reason, 120)}" if v.reason else ""
        lines.append(
            f"- v{v.version} {v.event_type} by {v.actor} at {v.occurred_at.isoformat()}{why}"
        )
    if history.next_after_version is not None:
        lines.append(f"(more: pass after_version={history.next_after_version})")
    return "\n".join([*lines, "", _at(history.position)])


def tool_diff(diff: models.ToolDiff) -> str:
    head = f"`{diff.slug}` v{diff.from_version} → v{diff.to_version}: {len(diff.patch)} changes"
    return "\n".join([head, *_patch(diff.patch), "", _at(diff.position)])


def document(answer: models.DocumentAnswer) -> str:
    d = answer.document
    link = f" · documents {d.link.get('kind')} {d.link.get('id')}" if d.link else ""
    body = d.content if len(d.content) <= 2000 else d.content[:2000] + "\n…"
    lines = [f"## {d.title}", f"{d.content_type}{_tags(d.tags)} · version {d.version}{link}"]
    return "\n".join([*lines, "", body, "", _at(answer.position)])


def document_search(result: models.DocumentSearch) -> str:
    lines = [f"{len(result.items)} documents ({result.mode} search)"]
    for h in result.items:
        passage = _cut((h.chunk or {}).get("text"), 200)
        lines.append(
            f"- {h.title} (`{h.id}`, score {h.score:.3f}){': ' + passage if passage else ''}"
        )
    lines += [f"> {w}" for w in result.warnings]
    return "\n".join([*lines, "", _at(result.position)])


def dataset_page(page: models.DatasetPage) -> str:
    lines = [
        f"{len(page.items)} datasets" + (" (more: pass next_cursor)" if page.next_cursor else "")
    ]
    lines += [
        f"- `{d.slug}` {d.name} ({d.status}, owner {d.owner}, {d.columns} columns){_tags(d.tags)}: "
        f"{_cut(d.description, 160)}"
        for d in page.items
    ]
    return "\n".join([*lines, "", _at(page.position)])


def dataset(answer: models.DatasetAnswer) -> str:
    d = answer.dataset
    lines = [
        f"## {d.name} (`{d.slug}`)",
        f"{d.status} · owner {d.owner}{_tags(d.tags)} · version {d.version} · "
        f"source {d.source.get('kind', '?')}",
        "",
        _cut(d.description),
        "",
        "| column | type | nullable | description |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {c.name} | {c.type} | {'yes' if c.nullable else 'no'} | {_cut(c.description, 120)} |"
        for c in d.columns
    ]
    if d.profile:
        lines += ["", f"Profile: {_cut(json.dumps(d.profile), 300)}"]
    return "\n".join([*lines, "", _at(answer.position)])


def changes(result: models.Changes) -> str:
    lines = [f"{len(result.items)} changes; continue from position {result.next_position}"]
    lines += [
        f"- @{c.event_position} {c.kind} `{c.ref}` v{c.version} {c.event_type} by {c.actor}"
        for c in result.items
    ]
    if result.more:
        lines.append("(more available)")
    return "\n".join([*lines, "", _at(result.position)])


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g} ms"


def usage(stats: models.UsageStats) -> str:
    head = f"Usage over {stats.window}" + (f" of `{stats.tool}`" if stats.tool else "")
    lat = stats.latency_ms
    lines = [
        f"{head}: {stats.calls} calls, {stats.errors} errors; p50 {_ms(lat.p50)}, "
        f"p95 {_ms(lat.p95)} ({stats.source})"
    ]
    lines += [
        f"- `{t.tool}`: {t.calls} calls, {t.errors} errors, p50 {_ms(t.latency_ms.p50)}, "
        f"p95 {_ms(t.latency_ms.p95)}"
        for t in stats.top_tools
    ]
    return "\n".join(lines)


def error(info: models.ErrorInfo) -> str:
    where = f" ({_at(info.position)})" if info.position is not None else ""
    return f"**{info.code}**: {info.message}{where}"
