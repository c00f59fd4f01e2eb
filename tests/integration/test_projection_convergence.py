"""Convergence: whatever order, duplication or re-delivery the events arrive in, the read models
end equal to the state replayed from the store (real Postgres, the real runner and projections).

Kafka keeps order per aggregate only, delivers at least once, and a restarted consumer resumes
from its last committed offset; the deliveries below are harsher than that (any permutation,
even within one aggregate, which the runner heals from the store)."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands import datasets, tools
from commands.context import CommandContext
from commands.errors import CommandError
from domain.errors import DomainError
from projections.records import EventRecord
from projections.verify import replayed_states
from tests.conftest import tool_body

TOOL_STEPS = st.sampled_from(["update", "activate", "deprecate", "delete", "restore"])
DATASET_STEPS = st.sampled_from(["describe", "columns", "archive", "unarchive", "delete"])


def _ctx() -> CommandContext:
    return CommandContext(actor="prop", correlation_id=f"prop-{uuid.uuid4().hex[:8]}")


def _run_tool_step(deps: Any, ref: str, step: str, n: int) -> None:
    actions = {
        "update": lambda: tools.update_tool(
            deps, ref, {"version": f"1.{n}.0", "description": f"rev {n}"}, _ctx()
        ),
        "activate": lambda: tools.activate_tool(deps, ref, _ctx()),
        "deprecate": lambda: tools.deprecate_tool(deps, ref, _ctx()),
        "delete": lambda: tools.delete_tool(deps, ref, _ctx()),
        "restore": lambda: tools.restore_tool(deps, ref, _ctx()),
    }
    # Refused commands append nothing; that is part of what is checked.
    with contextlib.suppress(DomainError, CommandError):
        actions[step]()


def _run_dataset_step(deps: Any, ref: str, step: str, n: int) -> None:
    actions = {
        "describe": lambda: datasets.describe_dataset(deps, ref, {"name": f"Set {n}"}, _ctx()),
        "columns": lambda: datasets.change_dataset_columns(
            deps,
            ref,
            [{"name": f"c{i}", "type": "text", "nullable": True} for i in range(n % 4)],
            _ctx(),
        ),
        "archive": lambda: datasets.archive_dataset(deps, ref, _ctx()),
        "unarchive": lambda: datasets.unarchive_dataset(deps, ref, _ctx()),
        "delete": lambda: datasets.delete_dataset(deps, ref, _ctx()),
    }
    with contextlib.suppress(DomainError, CommandError):
        actions[step]()


def _dataset_body() -> dict[str, Any]:
    return {
        "slug": f"set-{uuid.uuid4().hex[:12]}",
        "name": "Orders",
        "description": "One row per order",
        "source": {"kind": "csv", "uri": "s3://bucket/orders.csv"},
        "columns": [{"name": "id", "type": "bigint", "nullable": False}],
        "owner": "data",
    }


def _history(conn: Any, aggregate_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[int]]:
    rows = conn.execute(
        "SELECT aggregate_id, version FROM rm_history WHERE aggregate_id = ANY(%s) "
        "ORDER BY aggregate_id, version",
        (aggregate_ids,),
    ).fetchall()
    out: dict[uuid.UUID, list[int]] = {}
    for r in rows:
        out.setdefault(r["aggregate_id"], []).append(r["version"])
    return out


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tool_steps=st.lists(st.lists(TOOL_STEPS, max_size=6), min_size=1, max_size=3),
    dataset_steps=st.lists(DATASET_STEPS, max_size=5),
    data=st.data(),
)
def test_read_models_converge_under_any_delivery(
    container: Any, tool_steps: list[list[str]], dataset_steps: list[str], data: st.DataObject
) -> None:
    deps, side = container.deps, container.read_side
    ids = []
    for steps in tool_steps:
        ref = str(tools.register_tool(deps, tool_body(), _ctx()).id)
        ids.append(ref)
        for n, step in enumerate(steps, 1):
            _run_tool_step(deps, ref, step, n)
    dataset_ref = str(datasets.register_dataset(deps, _dataset_body(), _ctx()).id)
    ids.append(dataset_ref)
    for n, step in enumerate(dataset_steps, 1):
        _run_dataset_step(deps, dataset_ref, step, n)

    wanted = {uuid.UUID(i) for i in ids}
    stored = [r for r in side.records_after(0, 1_000_000) if r.aggregate_id in wanted]

    # A harsh delivery: any order, some events twice, then a "restart" re-delivering a suffix.
    order = data.draw(st.permutations(stored), label="order")
    dupes = data.draw(st.lists(st.sampled_from(stored), max_size=len(stored)), label="dupes")
    restart_from = data.draw(st.integers(0, len(stored)), label="restart_from")
    delivery: list[EventRecord] = [*order, *dupes, *stored[restart_from:]]
    chunk = data.draw(st.integers(1, max(len(delivery), 1)), label="chunk")

    with side.connection() as conn:
        for start in range(0, len(delivery), chunk):
            part = delivery[start : start + chunk]
            outcome = side.runner.apply(conn, part, ("convergence-test", part[-1].position))
            assert outcome.dead_lettered == 0, outcome.failures

        expected = replayed_states(stored)
        rows = {
            r["id"]: r
            for table in ("rm_tools", "rm_datasets")
            for r in conn.execute(
                f"SELECT id, aggregate_version, doc FROM {table} WHERE id = ANY(%s)",
                (list(wanted),),
            ).fetchall()
        }
        history = _history(conn, list(wanted))
    for aggregate_id, (_, state) in expected.items():
        row = rows[aggregate_id]
        assert row["aggregate_version"] == state.aggregate_version
        assert row["doc"] == state.fields()
        # Every version exactly once, none skipped, none applied twice.
        assert history[aggregate_id] == list(range(1, state.aggregate_version + 1))
