"""The text search indexes: chunking invariants (hypothesis), tool and dataset units, fusion."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.kinds.tool import units as tool_units
from projections.search import _fuse, _Match
from projections.search_text import CHUNK_CHARS, OVERLAP_CHARS
from projections.search_text import chunk_document as document_units
from tests.budget import examples

words = st.text(alphabet="abcdefghij ", min_size=1, max_size=400).map(str.strip).filter(bool)
paragraphs = st.lists(words, min_size=1, max_size=6).map(" ".join)
sections = st.lists(
    st.tuples(st.one_of(st.none(), st.from_regex(r"[A-Z][a-z]{2,10}", fullmatch=True)),
              st.lists(paragraphs, min_size=0, max_size=5)),
    min_size=1, max_size=5,
)  # fmt: skip


def markdown(parts: list[tuple[str | None, list[str]]]) -> str:
    out = []
    for heading, paras in parts:
        if heading:
            out.append(f"## {heading}")
        out += paras
    return "\n\n".join(out)


@settings(max_examples=examples(150), deadline=None)
@given(sections)
def test_chunks_are_capped_cover_every_word_and_never_cross_a_heading(parts) -> None:
    content = markdown(parts)
    units = document_units({"title": "T", "content": content})
    assert [u.chunk for u in units] == list(range(len(units)))
    headings = [h for h, _ in parts if h]
    for u in units:
        prefix = f"T. {u.heading}." if u.heading else "T."
        assert u.text.startswith(prefix)
        body = u.text[len(prefix) :].strip()
        assert len(body) <= CHUNK_CHARS + OVERLAP_CHARS + 1
        assert u.heading is None or u.heading in headings
    indexed = " ".join(u.text for u in units)
    for word in set(re.findall(r"[a-j]+", content)):
        assert word in indexed


def test_a_long_paragraph_is_split_at_sentences_with_overlap() -> None:
    sentence = "The refund is issued to the original card within five days. "
    units = document_units({"title": "T", "content": sentence * 60})
    assert len(units) > 2
    assert all(len(u.text) <= CHUNK_CHARS + OVERLAP_CHARS + 10 for u in units)
    # the next chunk starts with the end of the previous one
    tail = units[0].text[-40:]
    assert tail in units[1].text


def test_a_tool_unit_carries_name_tags_category_parameters_and_long_text() -> None:
    [unit] = tool_units({
        "name": "Lookup", "description": "Finds things.", "category": "geo", "tags": ["maps"],
        "input_schema": {"properties": {"lat": {"type": "number", "description": "latitude"},
                                        "zoom": {"type": "integer"}}},
        "long_description": "Uses the planet index.",
    })  # fmt: skip
    for part in ("Lookup", "Finds things.", "geo", "maps", "lat: latitude", "zoom", "planet"):
        assert part in unit.text


@given(
    st.lists(st.sampled_from("abcdefgh"), unique=True),
    st.lists(st.sampled_from("abcdefgh"), unique=True),
)
def test_fusion_ranks_each_item_once_and_rewards_agreement(lexical, vector) -> None:
    def ranking(ids: list[str]) -> list[_Match]:
        return [_Match("tool", i, 0, 1.0 / (n + 1)) for n, i in enumerate(ids)]

    fused = _fuse([ranking(lexical), ranking(vector)], 10)
    ids = [m.id for m in fused]
    assert len(ids) == len(set(ids)) == len(set(lexical) | set(vector))
    scores = [m.score for m in fused]
    assert scores == sorted(scores, reverse=True)
    # an item first in both rankings is first overall
    if lexical and vector and lexical[0] == vector[0]:
        assert ids[0] == lexical[0]
