"""Kafka fixtures: a real Apache Kafka broker named by KAFKA_BOOTSTRAP_SERVERS.

scripts/test provides one (it runs `scripts/kafka start`, a single-node KRaft broker resolved
from Maven Central); point KAFKA_BOOTSTRAP_SERVERS at any other broker to use that instead.
The broker is shared and keeps its data between runs: tests name their topics and groups uniquely.
"""

from __future__ import annotations

import os
import uuid

import pytest


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """`host:port[,host:port]` of a running Kafka broker; the session stops if there is none."""
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if not servers:
        pytest.exit(
            "no Kafka broker for the tests: run ./scripts/test (it starts one) "
            "or set KAFKA_BOOTSTRAP_SERVERS",
            returncode=2,
        )
    return servers


@pytest.fixture
def kafka_unique_name() -> str:
    """A name no other test run uses (topics and consumer groups outlive a run)."""
    return f"t-{os.getpid()}-{uuid.uuid4().hex[:8]}"
