"""Slug uniqueness per kind: a tiny aggregate whose id derives from the slug.

It is saved in the same transaction as the aggregate that claims it, so of two concurrent
registrations of one slug the second fails on the index's version and gets a conflict.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID, uuid5

from domain.events import DomainEvent, EventMeta, stamp

SLUG_NAMESPACE = UUID("6f1f6c1e-7d0a-5a7e-9a59-1c0d7a3b2e10")


def slug_index_id(kind: str, slug: str) -> UUID:
    return uuid5(SLUG_NAMESPACE, f"{kind}:{slug}")


@dataclass(frozen=True, kw_only=True)
class SlugClaimed(DomainEvent):
    kind: str
    slug: str
    owner_id: UUID


def claim_slug(kind: str, slug: str, owner_id: UUID, meta: EventMeta) -> SlugClaimed:
    return SlugClaimed(
        **stamp(meta, slug_index_id(kind, slug), 1), kind=kind, slug=slug, owner_id=owner_id
    )
