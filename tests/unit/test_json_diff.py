"""The history's JSON Patch: applying it to the old snapshot gives the new one."""

from __future__ import annotations

from typing import Any

import jsonpatch
from hypothesis import given
from hypothesis import strategies as st

from projections.json_diff import json_diff

keys = st.sampled_from(["a", "b", "c/d", "e~f", "", "0"])
scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(keys, documents), st.dictionaries(keys, documents))
def test_patch_turns_before_into_after(before: dict[str, Any], after: dict[str, Any]) -> None:
    patch = json_diff(before, after)
    assert jsonpatch.apply_patch(before, patch) == after
    assert json_diff(after, after) == []


def test_only_changed_leaves_are_replaced() -> None:
    before = {"name": "a", "config": {"region": "eu", "tier": 1}, "tags": ["x"]}
    after = {"name": "a", "config": {"region": "us", "tier": 1}, "tags": ["x", "y"], "new": True}
    assert json_diff(before, after) == [
        {"op": "replace", "path": "/config/region", "value": "us"},
        {"op": "replace", "path": "/tags", "value": ["x", "y"]},
        {"op": "add", "path": "/new", "value": True},
    ]


def test_bool_and_int_are_different_json_values() -> None:
    assert json_diff({"v": 1}, {"v": True}) == [{"op": "replace", "path": "/v", "value": True}]
