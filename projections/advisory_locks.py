"""Every Postgres advisory lock key this project takes, in one place so none collide.

Single-key locks (bigint) and two-key locks (int, int) are separate spaces in Postgres."""

from __future__ import annotations

SCHEMA = 7362841  # migrations of one database run one at a time
PROJECTIONS = 7362842  # appliers share it; a rebuild takes it exclusively
VECTOR_INDEX = 7362843  # one indexer (or the final step of a vector rebuild) at a time
RELAY_CLASS = 7362842  # two-key lock (RELAY_CLASS, hashtext(relay name)): one active relay
