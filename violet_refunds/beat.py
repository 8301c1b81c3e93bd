"""Celery beat's heartbeat: the scheduler writes the time of its latest tick to Redis, so /readyz
can tell a running beat from a dead one (nothing else notices: a dead beat stops every sweep, the
webhook relay and the inbound requeue without a single error).

Installed for every beat through settings (CELERY_BEAT_SCHEDULER).
"""

from __future__ import annotations

import logging
import time

import redis
from celery.beat import PersistentScheduler
from django.conf import settings

logger = logging.getLogger(__name__)

HEARTBEAT_KEY = "violet:beat:heartbeat"
# A beat writes at most this often (and ticks at least this often so that it does write).
HEARTBEAT_INTERVAL_SECONDS = 10.0
# The key outlives any sensible max age, then disappears with a beat gone for good.
HEARTBEAT_KEY_TTL_SECONDS = 24 * 3600


def heartbeat_client() -> redis.Redis | None:
    """The Redis of the broker (the heartbeat lives beside the queues), or None without a broker."""
    url = settings.REDIS_URL
    if not url:
        return None
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


def heartbeat_write(now: float | None = None) -> None:
    client = heartbeat_client()
    if client is None:
        return
    with client:
        client.set(HEARTBEAT_KEY, f"{time.time() if now is None else now:.3f}", ex=HEARTBEAT_KEY_TTL_SECONDS)


def heartbeat_age_seconds(now: float | None = None) -> float | None:
    """Seconds since beat's last heartbeat; None when there is none. Raises redis.RedisError."""
    client = heartbeat_client()
    if client is None:
        return None
    with client:
        value = client.get(HEARTBEAT_KEY)
    if value is None:
        return None
    return (time.time() if now is None else now) - float(value)


class HeartbeatScheduler(PersistentScheduler):
    """The default persistent scheduler, plus a heartbeat written on its ticks."""

    _last_heartbeat = 0.0

    def tick(self, *args, **kwargs):
        interval = super().tick(*args, **kwargs)
        now = time.monotonic()
        if now - self._last_heartbeat >= HEARTBEAT_INTERVAL_SECONDS:
            try:
                heartbeat_write()
                self._last_heartbeat = now
            except redis.RedisError as exc:
                # The broker is down: beat cannot publish either; /readyz will say so.
                logger.warning("beat heartbeat not written: %s", exc)
        return min(interval, HEARTBEAT_INTERVAL_SECONDS)
