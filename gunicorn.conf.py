"""gunicorn configuration of the web process (Procfile: `gunicorn violet_refunds.wsgi -c gunicorn.conf.py`).

Every value can be overridden from the environment (names below) or on the command line.
"""

import os

# PORT is what most platforms hand the web process; GUNICORN_BIND wins when set.
bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
# Threads serve the I/O-bound requests (database, Redis); a few processes use the cores.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# A request that takes longer is a bug or a stuck dependency: the worker is replaced.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Recycle workers now and then (memory held by a long-lived process), not all at once.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "200"))
# Addresses whose X-Forwarded-* headers gunicorn trusts (the proxy in front).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# Access log on stdout, with the request id the application returned (X-Request-ID).
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(M)sms request_id=%({x-request-id}o)s'
errorlog = "-"


def child_exit(server, worker):
    """With PROMETHEUS_MULTIPROC_DIR, a dead worker's live gauges must stop counting (its counters and
    histograms stay: they are totals)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
