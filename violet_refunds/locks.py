"""Exclusive processing without holding a database transaction open.

On PostgreSQL a session-level advisory lock marks "this refund is being worked on": no row lock is
held during the (slow) Stripe calls, and if the worker process dies its connection closes and the
lock disappears with it, so a redelivered message can take over at once. SQLite (development, one
process, tasks in-process) has no such lock and needs none.
"""

from contextlib import contextmanager

from django.db import connection

# One signed 64-bit advisory-lock key per (kind, id): the top byte marks our keys (apart from any
# other advisory-lock user of the same database), the next byte the kind, the low 48 bits the id.
# Ids are never folded: an id that does not fit is refused rather than sharing a lock with another.
_OWNER = 0x56
_KINDS = {"refund": 1, "bag": 2, "store_connection": 3}
_ID_BITS = 48


def _key(kind: str, object_id: int) -> int:
    if not 0 < object_id < (1 << _ID_BITS):
        raise ValueError(f"{kind} id {object_id} does not fit an advisory-lock key")
    return (_OWNER << 56) | (_KINDS[kind] << _ID_BITS) | object_id


@contextmanager
def try_exclusive(kind: str, object_id: int):
    """Yields True when this process holds the lock for (kind, id), False when another one does."""
    if connection.vendor != "postgresql":
        yield True
        return
    key = _key(kind, object_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
