"""How many examples each property test tries. `scripts/test` (the whole suite, CI) runs the
full budgets; a developer's quick `pytest tests/unit` runs a tenth of them (at least 10), so
the unit tier stays fast. MCP_LEDGER_HYPOTHESIS_SCALE sets the fraction."""

from __future__ import annotations

import os

from hypothesis import settings

SCALE = float(os.environ.get("MCP_LEDGER_HYPOTHESIS_SCALE", "0.1"))


def examples(full: int) -> int:
    return max(10, round(full * SCALE))


settings.register_profile("scaled", max_examples=examples(100))
settings.load_profile("scaled")
