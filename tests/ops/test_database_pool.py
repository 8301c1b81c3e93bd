"""Issue #20: Django's psycopg connection pool behind DATABASE_POOL (violet_refunds.dbpool): the
settings build the pool options (CONN_MAX_AGE 0, as Django requires with a pool), SQLite ignores them,
bad sizes are refused, and on a real PostgreSQL more threads than connections wait for one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from violet_refunds.dbpool import PoolSettings, database_connection_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
POSTGRES = {"ENGINE": "django.db.backends.postgresql", "NAME": "refunds", "HOST": "db", "OPTIONS": {}}
SQLITE = {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}


def test_without_the_pool_connections_persist_with_health_checks():
    built = database_connection_settings(POSTGRES, pool=PoolSettings(enabled=False), conn_max_age=60)
    assert (built["CONN_MAX_AGE"], built["CONN_HEALTH_CHECKS"], built["OPTIONS"]) == (60, True, {})


def test_the_pool_takes_over_persistence():
    built = database_connection_settings(
        POSTGRES, pool=PoolSettings(enabled=True, min_size=4, max_size=32, timeout=5), conn_max_age=60
    )
    assert built["CONN_MAX_AGE"] == 0  # Django: "Pooling doesn't support persistent connections."
    assert built["CONN_HEALTH_CHECKS"] is True
    assert built["OPTIONS"]["pool"] == {"min_size": 4, "max_size": 32, "timeout": 5}
    assert POSTGRES["OPTIONS"] == {}  # the input is not changed


def test_sqlite_ignores_pool_and_persistence():
    built = database_connection_settings(SQLITE, pool=PoolSettings(enabled=True, max_size=64), conn_max_age=60)
    assert built == {**SQLITE, "OPTIONS": {}}


@pytest.mark.parametrize(
    ("pool", "message"),
    [
        (PoolSettings(enabled=True, min_size=0, max_size=8), "DATABASE_POOL_MIN_SIZE (0)"),
        (PoolSettings(enabled=True, min_size=9, max_size=8), "at most DATABASE_POOL_MAX_SIZE (8)"),
        (PoolSettings(enabled=True, timeout=0), "DATABASE_POOL_TIMEOUT (0)"),
    ],
)
def test_impossible_pool_sizes_are_refused_at_start(pool, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        database_connection_settings(POSTGRES, pool=pool, conn_max_age=60)


REPORT = """
import json, django
django.setup()
from django.conf import settings as s
db = s.DATABASES["default"]
print(json.dumps({"ENGINE": db["ENGINE"], "CONN_MAX_AGE": db.get("CONN_MAX_AGE"), "OPTIONS": db.get("OPTIONS")}))
"""

# Under a fresh interpreter holding only these variables: threads share a pool of 2 connections.
THREADS_SHARE_THE_POOL = """
import json, threading, django
django.setup()
from django.db import connection, connections
backends, barrier = set(), threading.Barrier(6)
def work():
    barrier.wait()
    for _ in range(5):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backends.add(cursor.fetchone()[0])
        connections.close_all()  # as at the end of a request or task: back to the pool
threads = [threading.Thread(target=work) for _ in range(6)]
[t.start() for t in threads]
[t.join() for t in threads]
stats = connection.pool.get_stats()
print(json.dumps({"backends": len(backends), "pool_max": stats["pool_max"], "requests": stats["requests_num"]}))
"""


def _run(script, **environment):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DJANGO_SETTINGS_MODULE": "violet_refunds.settings"}
    env.update(environment)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_settings_read_the_pool_from_the_environment():
    built = _run(
        REPORT,
        DATABASE_URL="postgres://refunds@db.internal:5432/refunds",
        DATABASE_POOL="true",
        DATABASE_POOL_MIN_SIZE="3",
        DATABASE_POOL_MAX_SIZE="40",
        DATABASE_POOL_TIMEOUT="2.5",
    )
    assert built["CONN_MAX_AGE"] == 0
    assert built["OPTIONS"]["pool"] == {"min_size": 3, "max_size": 40, "timeout": 2.5}


def test_settings_without_the_pool_keep_persistent_connections():
    built = _run(REPORT, DATABASE_URL="postgres://refunds@db.internal:5432/refunds")
    assert (built["CONN_MAX_AGE"], "pool" in built["OPTIONS"]) == (60, False)


def test_settings_on_sqlite_ignore_the_pool():
    built = _run(REPORT, DATABASE_POOL="true", DATABASE_POOL_MAX_SIZE="40")
    assert built["ENGINE"] == "django.db.backends.sqlite3"
    assert "pool" not in built["OPTIONS"]


@pytest.mark.postgres
@pytest.mark.django_db
def test_threads_beyond_the_pool_wait_for_a_connection_instead_of_opening_their_own():
    params = connection.settings_dict
    host = f"{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 5432}"
    url = f"postgres://{params['USER']}:{params['PASSWORD'] or ''}@{host}/{params['NAME']}"
    seen = _run(
        THREADS_SHARE_THE_POOL,
        DATABASE_URL=url,
        DATABASE_POOL="true",
        DATABASE_POOL_MIN_SIZE="1",
        DATABASE_POOL_MAX_SIZE="2",
    )
    assert seen["pool_max"] == 2
    assert seen["requests"] == 30  # 6 threads x 5 checkouts, all served
    assert 1 <= seen["backends"] <= 2  # never more PostgreSQL backends than the pool's size
