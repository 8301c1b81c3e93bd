"""The short chaos soak as a test: soak/run.py with a small N must exit 0 (every invariant holds).

Skipped unless SOAK=1: it takes minutes and needs the machine's cores, and it joins CI only once it
has passed ten runs in a row (the integrator decides). It starts its own redis-server and creates
and drops its own database on the PostgreSQL server at SOAK_POSTGRES_URL (default
postgres://postgres@127.0.0.1:5432/postgres); the test's own database is not used.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent.parent
REFUNDS = int(os.environ.get("SOAK_REFUNDS", "40"))

pytestmark = [
    pytest.mark.soak,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(os.environ.get("SOAK") != "1", reason="the chaos soak runs only with SOAK=1"),
]


def test_short_soak_holds_every_invariant():
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: the soak starts its own (apt-get install redis-server)")
    result = subprocess.run(
        [sys.executable, "soak/run.py", "--refunds", str(REFUNDS), "--seconds", "60", "--settle-seconds", "150"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-80:])
    assert result.returncode == 0, f"soak exited {result.returncode} (soak/report.md has the details):\n{tail}"
