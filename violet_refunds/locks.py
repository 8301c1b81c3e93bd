"""Exclusive processing without holding a database transaction open.

On PostgreSQL a session-level advisory lock marks "this refund is being worked on": no row lock is
held during the (slow) Stripe calls, and if the worker process dies its connection closes and the
lock disappears with it, so a redelivered message can take over at once. SQLite (development, one
process, tasks in-process) has no such lock and needs none across processes; a nested attempt by the
same thread is refused on every database.
"""

import threading
from contextlib import contextmanager

from django.db import connection

# One signed 64-bit advisory-lock key per (kind, id): the top byte marks our keys (apart from any
# other advisory-lock user of the same database), the next byte the kind, the low 48 bits the id.
# Ids are never folded: an id that does not fit is refused rather than sharing a lock with another.
_OWNER = 0x56
_KINDS = {"refund": 1, "bag": 2, "store_connection": 3, "forwarding": 4}
_ID_BITS = 48
# PostgreSQL's session-level advisory locks are re-entrant: the same connection taking the same key
# again gets it. The keys this thread holds, so a nested attempt (a Stripe event delivered in-process
# by the sandbox while the engine holds the refund) is refused like another process's would be.
_held = threading.local()


def _key(kind: str, object_id: int) -> int:
    if not 0 < object_id < (1 << _ID_BITS):
        raise ValueError(f"{kind} id {object_id} does not fit an advisory-lock key")
    return (_OWNER << 56) | (_KINDS[kind] << _ID_BITS) | object_id


@contextmanager
def try_exclusive(kind: str, object_id: int):
    """Yields True when this process holds the lock for (kind, id), False when another one does."""
    key = _key(kind, object_id)
    held: set = _held.__dict__.setdefault("keys", set())
    if key in held:
        yield False
        return
    if connection.vendor != "postgresql":
        # No other process to exclude, but the same thread must not re-enter: the sandbox delivers
        # its events in-process while the engine's pass is calling it (make run's embedded mode).
        held.add(key)
        try:
            yield True
        finally:
            held.discard(key)
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        acquired = cursor.fetchone()[0]
    if acquired:
        held.add(key)
    try:
        yield acquired
    finally:
        if acquired:
            held.discard(key)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
