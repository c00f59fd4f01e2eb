"""The text that search sees, in units: what each kind's units hold is in its module in
`projections/kinds`; here are the unit, the schema parameters as text, and the chunks of a
document (split at headings and paragraphs, with a size cap and an overlap). The lexical and the
vector index are built from the same units, so both rank the same text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

CHUNK_CHARS = 1200  # ~250 tokens: what MiniLM reads before it truncates
OVERLAP_CHARS = 200
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*\S)\s*#*\s*$")


@dataclass(frozen=True)
class Unit:
    """One searchable piece of an item: chunk 0 for tools and datasets."""

    chunk: int
    heading: str | None
    text: str


def schema_params(schema: Any) -> list[str]:
    """A JSON Schema's top-level parameters as text: `name: description` (or the name)."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return []
    out = []
    for name, spec in props.items():
        described = spec.get("description") if isinstance(spec, dict) else None
        out.append(f"{name}: {described}" if isinstance(described, str) else str(name))
    return out


def _sections(content: str) -> list[tuple[str | None, list[str]]]:
    """(heading, paragraphs) in order; text before the first heading has heading None."""
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    paragraph: list[str] = []

    def close_paragraph() -> None:
        if paragraph:
            sections[-1][1].append(" ".join(paragraph))
            paragraph.clear()

    for line in content.splitlines():
        heading = _HEADING.match(line)
        if heading:
            close_paragraph()
            sections.append((heading.group(1), []))
        elif line.strip():
            paragraph.append(line.strip())
        else:
            close_paragraph()
    close_paragraph()
    return [s for s in sections if s[1] or s[0]]


def _split_long(paragraph: str, cap: int) -> list[str]:
    """A paragraph over the cap is cut at sentence ends, else at spaces, else hard."""
    pieces: list[str] = []
    rest = paragraph
    while len(rest) > cap:
        window = rest[:cap]
        cut = max(window.rfind(". "), window.rfind("? "), window.rfind("! "))
        if cut < cap // 2:
            cut = window.rfind(" ")
        cut = cut + 1 if cut >= cap // 2 else cap
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return pieces


def _tail(text: str, size: int) -> str:
    if len(text) <= size:
        return text
    cut = text.find(" ", len(text) - size)
    return text[cut + 1 :] if cut != -1 else text[-size:]


def chunk_document(
    doc: dict[str, Any], cap: int = CHUNK_CHARS, overlap: int = OVERLAP_CHARS
) -> list[Unit]:
    """Chunks that never cross a heading, hold whole paragraphs where they fit, stay under
    `cap` characters of body, and start with the end of the previous chunk of the same section
    (`overlap` characters) so a sentence cut at a boundary is still found whole."""
    units: list[Unit] = []
    title = doc["title"]
    for heading, paragraphs in _sections(doc.get("content") or ""):
        pieces = [p for para in paragraphs for p in _split_long(para, cap)]
        body = ""
        for piece in pieces:
            if body and len(body) + 1 + len(piece) > cap:
                units.append(_unit(len(units), title, heading, body))
                body = _tail(body, overlap) + " " + piece
            else:
                body = f"{body} {piece}".strip()
        if body or heading:
            units.append(_unit(len(units), title, heading, body))
    return units or [_unit(0, title, None, "")]


def _unit(index: int, title: str, heading: str | None, body: str) -> Unit:
    # The title (and heading) travel with every chunk: a chunk alone must say what it is about.
    prefix = f"{title}. {heading}." if heading else f"{title}."
    return Unit(index, heading, f"{prefix} {body}".strip())
