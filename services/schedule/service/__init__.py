"""Use cases of the schedule service, one module per resource: typed command in, load, domain rules, store and
outbox in one transaction. Authorization: the route declares the roles; the one ownership check a resource
needs (a responder acts only for themself) is made here, through `Principal.require_self_or_admin`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from shared.errors import Conflict


@contextmanager
def unique(conflict: str) -> Iterator[None]:
    """Turn a unique-constraint violation inside the block into a 409 saying `conflict`."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(conflict) from exc
