"""Settings of the benchmark server: the product's settings, unchanged, plus the bench-only baselines.

One gunicorn configuration serves the product and the baselines side by side, so a ratio compares
the product's code with the bare stack (Django + DRF + PostgreSQL) under the same middleware,
database settings and worker processes. What differs from production is listed here and nowhere else:
- ROOT_URLCONF adds the baseline views under /bench/ (the product's URLs are included unchanged);
- the `bench` app holds the baselines' unmanaged models (their tables are made with raw SQL by
  bench/run.py, never by a product migration);
- webhook processing messages (every task, whatever its production route) go to a queue of the
  bench's own, so no real worker picks them up.
"""

from violet_refunds.settings import *  # noqa: F403
from violet_refunds.settings import INSTALLED_APPS, env

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
ROOT_URLCONF = "bench.baseline_urls"
CELERY_TASK_DEFAULT_QUEUE = env.str("BENCH_CELERY_QUEUE", default="violet-bench-ingest")
# Every task on that queue, whatever its role's queue in production (CELERY_TASK_ROUTES).
CELERY_TASK_ROUTES = {"*": {"queue": CELERY_TASK_DEFAULT_QUEUE}}
# The secret the signed-insert baseline checks (the product's is each store connection's own).
BENCH_BASELINE_HMAC_SECRET = env.str("BENCH_BASELINE_HMAC_SECRET", default="bench-baseline-secret")
