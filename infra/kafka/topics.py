"""The Kafka topics the relay writes: one per aggregate kind, versioned, plus a dead-letter topic.
Created at relay start when missing, with explicit settings rather than broker defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from projections.kinds import KINDS

log = structlog.get_logger("relay")

# Each kind's topic suffix comes from the registry of kinds.
KIND_TOPICS = {name: kind.topic for name, kind in KINDS.items()}
DEAD_LETTER = "deadletter.v1"
# Broker-side limit above the producer's max_request_size: room for batch overhead.
_BATCH_OVERHEAD = 65_536
_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class TopicSpec:
    prefix: str = "mcp-ledger"
    partitions: int = 3
    replication: int = 1
    max_message_bytes: int = 8_388_608

    def for_kind(self, kind: str) -> str | None:
        suffix = KIND_TOPICS.get(kind)
        return f"{self.prefix}.{suffix}" if suffix else None

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.{DEAD_LETTER}"

    def names(self) -> list[str]:
        return [*(f"{self.prefix}.{s}" for s in KIND_TOPICS.values()), self.dead_letter]

    def configs(self) -> dict[str, str]:
        return {
            "cleanup.policy": "delete",
            # The topics are a full replay of the registry; analytics consumers may start late.
            "retention.ms": "-1",
            "min.insync.replicas": str(min(2, self.replication)),
            "max.message.bytes": str(self.max_message_bytes + _BATCH_OVERHEAD),
        }


def ensure_topics(admin: Any, spec: TopicSpec) -> list[str]:
    """Creates the missing topics; returns their names. Existing topics are left as they are
    (a different partition count is logged: changing it would reorder keys)."""
    existing = set(admin.list_topics())
    missing = [name for name in spec.names() if name not in existing]
    if missing:
        new = {
            name: {
                "num_partitions": spec.partitions,
                "replication_factor": spec.replication,
                "configs": spec.configs(),
            }
            for name in missing
        }
        result = admin.create_topics(new, raise_errors=False, wait_for_metadata=True)
        _raise_on_errors(result)
        log.info("relay.topics_created", topics=missing, partitions=spec.partitions)
    _warn_on_partition_mismatch(admin, spec, [n for n in spec.names() if n in existing])
    return missing


class TopicError(RuntimeError):
    """A topic could not be created (bad replication factor, no permission, ...)."""


def _raise_on_errors(result: dict[str, Any]) -> None:
    # Another relay creating the same topic at the same moment is fine.
    for topic in result.get("topics", []):
        if topic.get("error_code") not in (0, _TOPIC_ALREADY_EXISTS):
            raise TopicError(
                f"creating topic {topic.get('name')}: "
                f"{topic.get('error_message') or 'error code ' + str(topic.get('error_code'))}"
            )


def _warn_on_partition_mismatch(admin: Any, spec: TopicSpec, names: list[str]) -> None:
    if not names:
        return
    for topic in admin.describe_topics(names):
        count = len(topic.get("partitions") or [])
        if count != spec.partitions:
            log.warning(
                "relay.topic_partitions_differ",
                topic=topic.get("name"),
                partitions=count,
                configured=spec.partitions,
            )
