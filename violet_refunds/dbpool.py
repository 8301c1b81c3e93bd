"""The database connection settings of one process: persistent connections, or Django 5.2's psycopg
connection pool (`OPTIONS["pool"]`, psycopg-pool) behind DATABASE_POOL (docs/operations.md,
"Database connections and worker pool settings").

Pure so that settings.py and its tests build the same thing. SQLite (development, tests, the embedded
mode) has neither: every pool and persistence setting is ignored there.
"""

from __future__ import annotations

from dataclasses import dataclass

SQLITE = "django.db.backends.sqlite3"


@dataclass(frozen=True)
class PoolSettings:
    enabled: bool = False
    min_size: int = 2
    max_size: int = 8
    timeout: float = 10.0  # seconds a thread waits for a free connection before an OperationalError


def database_connection_settings(database: dict, *, pool: PoolSettings, conn_max_age: int) -> dict:
    """`database` (one DATABASES entry) with its connection handling applied, as a new dict.

    Without the pool: persistent connections (CONN_MAX_AGE) with health checks. With it: the pool
    keeps the connections, so Django's own persistence must be off (Django refuses CONN_MAX_AGE != 0
    with a pool); health checks make the pool check a connection before handing it out."""
    result = {**database, "OPTIONS": dict(database.get("OPTIONS") or {})}
    if result["ENGINE"] == SQLITE:
        return result
    result["CONN_HEALTH_CHECKS"] = True
    if not pool.enabled:
        result["CONN_MAX_AGE"] = conn_max_age
        return result
    if not 1 <= pool.min_size <= pool.max_size:
        raise ValueError(
            f"DATABASE_POOL_MIN_SIZE ({pool.min_size}) must be at least 1 and at most DATABASE_POOL_MAX_SIZE "
            f"({pool.max_size})."
        )
    if pool.timeout <= 0:
        raise ValueError(f"DATABASE_POOL_TIMEOUT ({pool.timeout}) must be positive.")
    result["CONN_MAX_AGE"] = 0
    result["OPTIONS"]["pool"] = {"min_size": pool.min_size, "max_size": pool.max_size, "timeout": pool.timeout}
    return result
