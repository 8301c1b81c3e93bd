"""Exclusive processing without holding a database transaction open.

On PostgreSQL a session-level advisory lock marks "this refund is being worked on": no row lock is
held during the (slow) Stripe calls, and if the worker process dies its connection closes and the
lock disappears with it, so a redelivered message can take over at once. SQLite (development, one
process, tasks in-process) has no such lock and needs none.
"""

from contextlib import contextmanager

from django.db import connection

# Keeps our keys apart from any other advisory-lock user of the same database.
_NAMESPACE = {"refund": 0x5652_0001, "bag": 0x5652_0002}


def _key(kind: str, object_id: int) -> int:
    return (_NAMESPACE[kind] << 32) | (object_id & 0xFFFF_FFFF)


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
