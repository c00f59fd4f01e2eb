"""Read the mcp-ledger tool events from Kafka as a consumer group and print them.

Needs only kafka-python (`pip install kafka-python`), not mcp-ledger itself:

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python examples/consume_tools.py
    python examples/consume_tools.py --bootstrap 127.0.0.1:9092 --group my-team --topic \
        mcp-ledger.tools.v1 --max-idle 10

Every message is a CloudEvent in Kafka binary mode: the key is the tool id, the value the event
data as JSON (schemas/<ce_type>.json), the attributes are `ce_*` headers. Delivery is at least
once, so the loop skips a ce_id it has already handled; offsets are committed after the events
are handled, so a crash re-reads rather than loses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import OrderedDict
from typing import Any

from kafka import KafkaConsumer


class SeenIds:
    """The last N ce_ids handled. A re-sent event arrives soon after the original (the same
    relay batch), so a bounded memory is enough for an example; a real consumer keeps the
    highest ce_sequence per ce_subject next to its own data instead."""

    def __init__(self, size: int = 100_000) -> None:
        self.size, self.ids = size, OrderedDict[str, None]()

    def first_time(self, ce_id: str) -> bool:
        if ce_id in self.ids:
            return False
        self.ids[ce_id] = None
        if len(self.ids) > self.size:
            self.ids.popitem(last=False)
        return True


def summary(ce_type: str, data: dict[str, Any]) -> str:
    if ce_type.endswith(".ToolRegistered.v1"):
        return f"slug={data['slug']} version={data['version']} status={data['status']}"
    if ce_type.endswith(".ToolUpdated.v1"):
        return "changed " + ", ".join(sorted(data["changes"]))
    if ce_type.endswith(".ToolStatusChanged.v1"):
        return f"{data['old_status']} -> {data['new_status']}"
    return ""


def handle(message: Any, seen: SeenIds) -> None:
    headers = {name: (value or b"").decode() for name, value in message.headers}
    if not seen.first_time(headers["ce_id"]):
        return  # a re-send of an event already handled
    data = json.loads(message.value)
    event = headers["ce_type"].split(".")[-2]
    print(
        f"#{headers['ce_position']:>8} {headers['ce_time']} {event:<18} "
        f"tool={headers['ce_subject']} v{headers['ce_sequence']} "
        f"by={headers['ce_actor']} {summary(headers['ce_type'], data)}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--topic", default="mcp-ledger.tools.v1")
    parser.add_argument("--group", default="mcp-ledger-example")
    parser.add_argument("--max-idle", type=float, default=None, help="stop after N idle seconds")
    args = parser.parse_args()
    if not args.bootstrap:
        parser.error("set KAFKA_BOOTSTRAP_SERVERS or pass --bootstrap HOST:PORT")
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap.split(","),
        group_id=args.group,
        auto_offset_reset="earliest",  # a new group starts from the first event
        enable_auto_commit=False,  # commit only what was handled
    )
    seen, last_event = SeenIds(), time.monotonic()
    try:
        while args.max_idle is None or time.monotonic() - last_event < args.max_idle:
            batches = consumer.poll(timeout_ms=1000)
            for messages in batches.values():
                for message in messages:
                    handle(message, seen)
            if batches:
                consumer.commit()
                last_event = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
