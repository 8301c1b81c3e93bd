"""The services the web benchmark runs on: wrk (installed when missing), PostgreSQL (the throw-away
database, and those a killed run left behind) and Redis (the bench's own queue keys).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bench.tools import ROOT, log


def ensure_wrk() -> str:
    if not shutil.which("wrk"):
        log("wrk is missing: installing it (scripts/ensure-wrk.sh)")
        subprocess.run(["bash", str(ROOT / "scripts" / "ensure-wrk.sh")], check=True, timeout=600)
    version = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False, timeout=10)
    # "wrk debian/4.1.0-3+b2 [epoll] Copyright ...": the name and version are enough.
    return " ".join((version.stdout or version.stderr).split()[:2])


def _psycopg_url(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


def postgres_version(admin_url: str) -> str:
    import psycopg

    with psycopg.connect(_psycopg_url(admin_url), autocommit=True, connect_timeout=5) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def create_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(_psycopg_url(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_stale_databases(admin_url: str, prefix: str) -> list[str]:
    """Databases an earlier run left behind when it was killed outright (its pid is gone)."""
    import psycopg

    with psycopg.connect(_psycopg_url(admin_url), autocommit=True) as conn:
        names = [
            row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [prefix + "_%"])
        ]
        stale = [
            name
            for name in names
            if name.rsplit("_", 1)[1].isdigit() and not Path(f"/proc/{name.rsplit('_', 1)[1]}").exists()
        ]
        for name in stale:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return stale


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(_psycopg_url(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_client(url: str):
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=3)


def delete_queue_keys(redis_url: str, queue: str) -> None:
    client = redis_client(redis_url)
    try:
        keys = [
            key
            for pattern in (queue, f"{queue}\x06*", f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
            for key in client.scan_iter(match=pattern)
        ]
        if keys:
            client.delete(*keys)
    finally:
        client.close()
