"""Settings for violet-refunds.

Every value comes from the environment (django-environ) and has an embedded default, so the project
runs with no environment at all: SQLite, tasks executed in-process, the Stripe sandbox, DEBUG on.
Setting DATABASE_URL / REDIS_URL / STRIPE_API_KEY switches to the production shape.
"""

from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from violet_refunds import dbpool, deployment, queues

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if env.bool("DJANGO_READ_DOT_ENV_FILE", default=False):
    environ.Env.read_env(str(BASE_DIR / ".env"))

DEBUG = env.bool("DEBUG", default=True)

# A development key is only acceptable while DEBUG is on; production must bring its own.
_DEV_SECRET_KEY = deployment.DEV_SECRET_KEY
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. With DEBUG off the application refuses to start without an "
            "explicit SECRET_KEY environment variable (a long random string)."
        )
    SECRET_KEY = _DEV_SECRET_KEY

# Fernet keys (urlsafe base64, 32 bytes) for credentials at rest; comma-separated, newest first,
# so a key can be rotated without losing what the older one encrypted.
_DEV_FIELD_ENCRYPTION_KEY = deployment.DEV_FIELD_ENCRYPTION_KEY
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEY", default=[])
if not FIELD_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY is not set. With DEBUG off store credentials cannot be encrypted "
            "with the development key; generate one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`."
        )
    FIELD_ENCRYPTION_KEYS = [_DEV_FIELD_ENCRYPTION_KEY]

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "violet_refunds.apps.VioletAdminConfig",  # django.contrib.admin with the project's AdminSite
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served locally: no external CDN
    "platforms",
    "stripe_events",
    "refunds",
    "payments",
    "notifications",
    "stripe_sandbox",
    "portal",
]

MIDDLEWARE = [
    # First: /healthz, /readyz and /metrics answer any Host (probes reach a pod by its IP) and plain
    # HTTP; they are served here before host validation and the HTTPS redirect (violet_refunds.health).
    "violet_refunds.health.ProbeHostMiddleware",
    # The request id (X-Request-ID, or a new one) in every log line of the request and its tasks.
    "violet_refunds.logs.RequestIdMiddleware",
    # Request latency per view for /metrics (violet_refunds.metrics).
    "violet_refunds.metrics.RequestLatencyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy (nonce per response) for the admin, the portal and the API docs.
    "violet_refunds.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Admin pages in the operator's own time zone (the browser's, from the `tz` cookie).
    "violet_refunds.timezones.OperatorTimeZoneMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A login refused by the login rate limits answers 429 with Retry-After (portal and admin).
    "violet_refunds.throttling.LoginThrottleMiddleware",
    # Last, as django-axes requires: locks out repeated failed logins (portal and admin).
    "axes.middleware.AxesMiddleware",
]

if not DEBUG:
    # Static files straight from gunicorn (compressed, cacheable) after `collectstatic`: no proxy
    # configuration needed. With DEBUG on, runserver serves them from the apps (no collectstatic).
    _after_security = MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1
    MIDDLEWARE.insert(_after_security, "whitenoise.middleware.WhiteNoiseMiddleware")

AUTHENTICATION_BACKENDS = [
    # First: every login (API, portal, admin) counts against the per-IP and per-username rates.
    "violet_refunds.throttling.LoginThrottleBackend",
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Lock a username+IP pair after this many failures for AXES_COOLOFF_HOURS (OWASP ASVS 2.2.1).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.5)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_LOCKOUT_CALLABLE = "violet_refunds.lockout.lockout_response"
# The client's address for axes and the rate limits: REMOTE_ADDR, unless TRUSTED_PROXY_COUNT (the
# number of our own proxies in front, each appending to X-Forwarded-For) says to read that header.
# 0 by default: X-Forwarded-For is written by anyone and is not trusted.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "violet_refunds.throttling.client_ip"

# --- Rate limits (violet_refunds.throttling), "<count>/<s|m|h|d>"; "0" switches one off ---
# Every login attempt (channel API, portal, admin), per client IP and per username.
LOGIN_RATE_PER_IP = env.str("LOGIN_RATE_PER_IP", default="20/m")
LOGIN_RATE_PER_USERNAME = env.str("LOGIN_RATE_PER_USERNAME", default="10/m")
# Per credential, after authentication: a channel app on /v1/, a merchant API key on the notice API.
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="6000/m")
NOTICE_API_RATE_LIMIT = env.str("NOTICE_API_RATE_LIMIT", default="600/m")
# Test events a channel app may ask for (POST /v1/events/webhooks/{id}/test): each one is an outbound POST.
WEBHOOK_TEST_RATE_LIMIT = env.str("WEBHOOK_TEST_RATE_LIMIT", default="10/m")
# Content-Security-Policy (violet_refunds.csp): on whenever DEBUG is off.
CSP_ENABLED = env.bool("CSP_ENABLED", default=not DEBUG)
CSP_REPORT_ONLY = env.bool("CSP_REPORT_ONLY", default=False)
CSP_REPORT_URI = env.str("CSP_REPORT_URI", default="")
# Django 6 makes https the default scheme of URLField forms; opt in now (silences its warning).
FORMS_URLFIELD_ASSUME_HTTPS = True

ROOT_URLCONF = "violet_refunds.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "violet_refunds.wsgi.application"

# PostgreSQL connections (violet_refunds.dbpool, docs/operations.md "Database connections and worker
# pool settings"): persistent per thread (CONN_MAX_AGE, throughput: see bench/), or, with
# DATABASE_POOL=true, Django's psycopg pool of DATABASE_POOL_MIN_SIZE..MAX_SIZE connections per process
# shared by its threads (a thread waits up to DATABASE_POOL_TIMEOUT seconds for one, so more threads
# than PostgreSQL's max_connections wait instead of being refused). Ignored on SQLite.
DATABASES = {
    "default": dbpool.database_connection_settings(
        env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        pool=dbpool.PoolSettings(
            enabled=env.bool("DATABASE_POOL", default=False),
            min_size=env.int("DATABASE_POOL_MIN_SIZE", default=2),
            max_size=env.int("DATABASE_POOL_MAX_SIZE", default=8),
            timeout=env.float("DATABASE_POOL_TIMEOUT", default=10.0),
        ),
        conn_max_age=env.int("CONN_MAX_AGE", default=60),
    ),
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# Every date on a page shows its zone ("2026-12-02 05:27 UTC"): violet_refunds/formats.
FORMAT_MODULE_PATH = ["violet_refunds.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# `manage.py collectstatic` writes here; whitenoise serves it (issue #18).
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed copies (gzip, brotli when installed) next to each file; no manifest, so a page renders
    # whether or not collectstatic ran (tests, make run).
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOGIN_URL = "/portal/login/"
LOGIN_REDIRECT_URL = "/portal/"
LOGOUT_REDIRECT_URL = "/portal/login/"

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")

# --- HTTPS: on by default with DEBUG off, each switch read from the environment, so production passes
# `manage.py check --deploy --fail-level WARNING` (CI runs it, see .ci/run). Off with DEBUG on (make run).
# Redirect plain-HTTP requests to HTTPS; SECURE_REDIRECT_EXEMPT (regexes on the path without its leading
# slash) lets a load balancer's health check reach /healthz over HTTP.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = env.list("SECURE_REDIRECT_EXEMPT", default=[r"^healthz$", r"^readyz$"])
# Strict-Transport-Security on HTTPS responses: one year, subdomains, preload consent (submitting the
# domain to the browsers' preload list stays a separate, manual step).
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
# Behind a TLS-terminating proxy that sets (and overwrites) X-Forwarded-Proto: trust it to say the
# request came over HTTPS. Turn off when clients reach Django directly: they could send the header.
USE_X_FORWARDED_PROTO = env.bool("USE_X_FORWARDED_PROTO", default=not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if USE_X_FORWARDED_PROTO else None
# System checks an operator has decided to live with, e.g. "security.W021" (no HSTS preload).
SILENCED_SYSTEM_CHECKS = env.list("SILENCED_SYSTEM_CHECKS", default=[])

# --- Cache: shared by every process (rate limits) when Redis is there, local memory otherwise ---
CACHE_URL = env.str("CACHE_URL", default="") or env.str("REDIS_URL", default="")
if CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "violet",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "violet"}}

# --- Celery ---
# No REDIS_URL: tasks run in-process (eagerly) so the portal works with nothing but Python.
REDIS_URL = env.str("REDIS_URL", default="")
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
# At-least-once delivery: ack after the task returns, requeue if the worker process dies, reserve
# one message at a time. Tasks are idempotent (unique constraints + Stripe idempotency keys).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
# Redis redelivers unacked messages after this many seconds; every retry countdown stays below it.
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Settling: how soon lost work is found again (see docs/reliability.md, "Acknowledged means processed") ---
# An inbound event still RECEIVED this long after it was stored, or RETRYING this long past its next
# attempt, lost its message (broker down at enqueue, worker killed, Redis flushed): beat re-enqueues it.
INBOUND_EVENT_REQUEUE_AFTER_SECONDS = env.int("INBOUND_EVENT_REQUEUE_AFTER_SECONDS", default=60)
INBOUND_EVENT_REQUEUE_INTERVAL_SECONDS = env.int("INBOUND_EVENT_REQUEUE_INTERVAL_SECONDS", default=30)
# Transient processing failures (database, broker, platform 5xx/timeouts/429) retry automatically:
# waits from the base, doubling, jittered, capped (and always below CELERY_VISIBILITY_TIMEOUT - 60 s),
# until this horizon after the first failure of the streak; then the event is FAILED for an operator.
INBOUND_EVENT_RETRY_BACKOFF_BASE_SECONDS = env.int("INBOUND_EVENT_RETRY_BACKOFF_BASE_SECONDS", default=10)
INBOUND_EVENT_RETRY_BACKOFF_MAX_SECONDS = env.int("INBOUND_EVENT_RETRY_BACKOFF_MAX_SECONDS", default=900)
INBOUND_EVENT_RETRY_HORIZON_SECONDS = env.int("INBOUND_EVENT_RETRY_HORIZON_SECONDS", default=24 * 3600)
# A poison event (its processing kills the worker every time: out of memory, a hard kill) never
# records an outcome, so neither the retry horizon nor a status stops it: after this many processing
# runs started without an outcome it is FAILED for an operator (platforms.services.event_process).
INBOUND_EVENT_MAX_CLAIMS_WITHOUT_OUTCOME = env.int("INBOUND_EVENT_MAX_CLAIMS_WITHOUT_OUTCOME", default=5)
# An event naming an order that is not (yet) a bag waits AWAITING_ORDER: processed again when the bag
# appears (at once on its creation, and by the sweep every interval), and settles after this long
# without one as INBOUND_EVENT_AWAITING_ORDER_EXPIRED_STATUS says (platforms.services).
INBOUND_EVENT_AWAITING_ORDER_EXPIRY_SECONDS = env.int(
    "INBOUND_EVENT_AWAITING_ORDER_EXPIRY_SECONDS", default=7 * 24 * 3600
)
# IGNORED (default): an order never learned is almost always the merchant's own order, not placed
# through the network, so it stays out of triage. FAILED: every expiry is an operator's to look at.
INBOUND_EVENT_AWAITING_ORDER_EXPIRED_STATUS = env.str("INBOUND_EVENT_AWAITING_ORDER_EXPIRED_STATUS", default="IGNORED")
if INBOUND_EVENT_AWAITING_ORDER_EXPIRED_STATUS not in ("IGNORED", "FAILED"):
    raise ImproperlyConfigured(
        "INBOUND_EVENT_AWAITING_ORDER_EXPIRED_STATUS must be IGNORED or FAILED, not "
        f"{INBOUND_EVENT_AWAITING_ORDER_EXPIRED_STATUS!r}."
    )
INBOUND_EVENT_AWAITING_ORDER_SWEEP_INTERVAL_SECONDS = env.int(
    "INBOUND_EVENT_AWAITING_ORDER_SWEEP_INTERVAL_SECONDS", default=300
)
WEBHOOK_RELAY_INTERVAL_SECONDS = env.int("WEBHOOK_RELAY_INTERVAL_SECONDS", default=15)
# An outbound delivery IN_PROGRESS this long lost its worker mid-attempt: the relay makes it due again
# (its bag's later events wait meanwhile). An attempt takes at most the channel timeout plus recording.
WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS = env.int("WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS", default=60)

# --- Platform polling (SFCC Option 1) and the parity check ---
PLATFORM_POLL_INTERVAL_SECONDS = env.int("PLATFORM_POLL_INTERVAL_SECONDS", default=300)
# A store's first poll looks back this far; every poll reads windows of at most 6 h in a row until it
# reaches now (catch-up for new stores and after outages), at most this many windows per run.
SFCC_POLL_FIRST_LOOKBACK_SECONDS = env.int("SFCC_POLL_FIRST_LOOKBACK_SECONDS", default=24 * 3600)
SFCC_POLL_MAX_WINDOWS_PER_RUN = env.int("SFCC_POLL_MAX_WINDOWS_PER_RUN", default=8)
# SFCC merchants' order management systems (issue #25, platforms/oms/): beat reads each connected org's
# refunds (Salesforce Order Management: credit memos) every OMS_DISCOVERY_INTERVAL_SECONDS; an org's
# first run looks back OMS_FIRST_LOOKBACK_SECONDS; a run reads at most OMS_MAX_REFUNDS_PER_RUN (the
# next run goes on from there). At OMS_API_USAGE_MAX_PERCENT of the org's daily API requests
# (Sforce-Limit-Info), or on REQUEST_LIMIT_EXCEEDED, the org is left alone for OMS_LIMIT_BACKOFF_SECONDS.
OMS_DISCOVERY_INTERVAL_SECONDS = env.int("OMS_DISCOVERY_INTERVAL_SECONDS", default=300)
OMS_FIRST_LOOKBACK_SECONDS = env.int("OMS_FIRST_LOOKBACK_SECONDS", default=7 * 24 * 3600)
OMS_MAX_REFUNDS_PER_RUN = env.int("OMS_MAX_REFUNDS_PER_RUN", default=500)
OMS_API_USAGE_MAX_PERCENT = env.int("OMS_API_USAGE_MAX_PERCENT", default=90)
OMS_LIMIT_BACKOFF_SECONDS = env.int("OMS_LIMIT_BACKOFF_SECONDS", default=3600)
# The Salesforce REST API version of /services/data/vXX.X/query (credit memos need 48.0 or later).
SALESFORCE_OM_API_VERSION = env.str("SALESFORCE_OM_API_VERSION", default="62.0")
# Parity check: beat reads the platform's state of bags and records what no webhook or poll told us.
# Bags created or changed within PARITY_CHECK_RECENT_SECONDS are read again once they were last read
# PARITY_CHECK_RECENT_EVERY_SECONDS ago; every other open bag once per PARITY_CHECK_SLOW_ROUND_SECONDS.
PARITY_CHECK_INTERVAL_SECONDS = env.int("PARITY_CHECK_INTERVAL_SECONDS", default=300)
PARITY_CHECK_RECENT_SECONDS = env.int("PARITY_CHECK_RECENT_SECONDS", default=14 * 24 * 3600)
PARITY_CHECK_RECENT_EVERY_SECONDS = env.int("PARITY_CHECK_RECENT_EVERY_SECONDS", default=3600)
PARITY_CHECK_SLOW_ROUND_SECONDS = env.int("PARITY_CHECK_SLOW_ROUND_SECONDS", default=7 * 24 * 3600)
# Platform refunds younger than this are left to their webhook, which is probably on its way.
PARITY_CHECK_GRACE_SECONDS = env.int("PARITY_CHECK_GRACE_SECONDS", default=900)
PARITY_CHECK_BATCH_SIZE = env.int("PARITY_CHECK_BATCH_SIZE", default=200)
# A run stops reading (the rest waits for the next run) after this long: below the task time limits.
PARITY_CHECK_MAX_RUN_SECONDS = env.int("PARITY_CHECK_MAX_RUN_SECONDS", default=120)
# API calls per minute the parity check makes to each platform (all stores together), well under
# each platform's documented limits; calls are spaced evenly. 0 turns the check off for a platform.
PARITY_CHECK_CALLS_PER_MINUTE = {
    platform: env.int(f"PARITY_CHECK_CALLS_PER_MINUTE_{platform}", default=default)
    for platform, default in (
        ("SHOPIFY", 60),  # REST: 2 requests/s per store (leaky bucket of 40)
        ("ECWID", 300),  # 600 requests/min per token
        ("WIX", 100),  # ~200 requests/min per site
        ("SFCC", 60),  # SCAPI admin APIs: per-tenant quotas
        ("BIGCOMMERCE", 150),  # 150 requests/30 s per store on the smallest plans
        ("WOOCOMMERCE", 30),  # the merchant's own WordPress server: be gentle
    )
}

# --- Webhook subscriptions at the platforms (platforms.subscriptions; issue #24) ---
# The public https origin of this service as platforms reach it (e.g. https://refunds.example.com):
# subscriptions are registered to <this>/webhooks/<platform>/<connection public id>/. Empty = no
# subscription can be registered (each sync records that error).
PLATFORM_WEBHOOK_BASE_URL = env.str("PLATFORM_WEBHOOK_BASE_URL", default="")
# Beat compares every connected store's subscriptions with what it needs once per this interval
# (repairing what a platform disabled or removed), at most SUBSCRIPTIONS_SYNC_BATCH_SIZE stores per
# run, every SUBSCRIPTIONS_SYNC_RUN_INTERVAL_SECONDS (the runs spread the stores over the day).
SUBSCRIPTIONS_SYNC_EVERY_SECONDS = env.int("SUBSCRIPTIONS_SYNC_EVERY_SECONDS", default=24 * 3600)
SUBSCRIPTIONS_SYNC_RUN_INTERVAL_SECONDS = env.int("SUBSCRIPTIONS_SYNC_RUN_INTERVAL_SECONDS", default=3600)
SUBSCRIPTIONS_SYNC_BATCH_SIZE = env.int("SUBSCRIPTIONS_SYNC_BATCH_SIZE", default=100)
# A store is "silent" when no webhook arrived for this long although the network placed at least
# STORE_SILENT_MIN_BAGS bags with it in that time (admin triage; the parity check reads it first).
STORE_SILENT_AFTER_SECONDS = env.int("STORE_SILENT_AFTER_SECONDS", default=7 * 24 * 3600)
STORE_SILENT_MIN_BAGS = env.int("STORE_SILENT_MIN_BAGS", default=10)
# Nightly reconciliation (refunds.reconciliation): refunds created in the last RECONCILIATION_DAYS days
# are compared with Stripe at RECONCILIATION_HOUR_UTC:17 UTC; each difference opens one finding.
RECONCILIATION_DAYS = env.int("RECONCILIATION_DAYS", default=7)
RECONCILIATION_HOUR_UTC = env.int("RECONCILIATION_HOUR_UTC", default=3)

# --- Celery topology: one queue per role (violet_refunds.queues; issue #18), each consumed by its own
# workers (README "Production shape", Procfile). Every task of the project is routed here
# (tests/ops/test_celery_topology.py fails on one that is not).
CELERY_TASK_ROUTES = {
    "refunds.tasks.process_refund": {"queue": queues.REFUNDS},
    # Stripe's own events settle refunds; the nightly reconciliation reads Stripe (minutes, once a day).
    "stripe_events.tasks.process_stripe_event": {"queue": queues.REFUNDS},
    "refunds.tasks.reconcile_refunds_nightly": {"queue": queues.REFUNDS},
    "platforms.tasks.process_inbound_event": {"queue": queues.PLATFORMS},
    "platforms.tasks.process_events_awaiting_bag": {"queue": queues.PLATFORMS},
    "platforms.tasks.poll_platform_orders": {"queue": queues.PLATFORMS},
    "platforms.tasks.check_platform_parity": {"queue": queues.PLATFORMS},
    "platforms.tasks.discover_oms_refunds": {"queue": queues.PLATFORMS},
    "platforms.tasks.sync_store_subscriptions": {"queue": queues.PLATFORMS},
    "platforms.tasks.sync_due_store_subscriptions": {"queue": queues.PLATFORMS},
    "platforms.tasks.process_privacy_request": {"queue": queues.PLATFORMS},
    "platforms.tasks.forward_refund": {"queue": queues.PLATFORMS},
    # Daily and possibly long (redacting a day of events): not on periodic, where it would hold up the sweeps.
    "platforms.tasks.apply_data_retention": {"queue": queues.PLATFORMS},
    "notifications.tasks.deliver_webhook": {"queue": queues.NOTIFICATIONS},
    "refunds.tasks.sweep_stuck_refunds": {"queue": queues.PERIODIC},
    "platforms.tasks.requeue_received_events": {"queue": queues.PERIODIC},
    "platforms.tasks.sweep_events_awaiting_order": {"queue": queues.PERIODIC},
    "notifications.tasks.relay_webhook_deliveries": {"queue": queues.PERIODIC},
    "stripe_events.tasks.requeue_stripe_events": {"queue": queues.PERIODIC},
    "stripe_sandbox.tasks.sweep_sandbox": {"queue": queues.PERIODIC},
}

REFUND_SWEEP_INTERVAL_SECONDS = env.int("REFUND_SWEEP_INTERVAL_SECONDS", default=60)
# Every entry carries `expires` equal to its period: a copy queued while no worker ran is dropped
# instead of piling up (the next run finds the same work in the database anyway).
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-refunds": {
        "task": "refunds.tasks.sweep_stuck_refunds",
        "schedule": REFUND_SWEEP_INTERVAL_SECONDS,
        "options": {"expires": REFUND_SWEEP_INTERVAL_SECONDS},
    },
    # Inbound events whose processing message was lost (never processed, or a retry overdue) are
    # re-enqueued from the database. Every half requeue age: an event with a lost message settles
    # within INBOUND_EVENT_REQUEUE_AFTER_SECONDS + this interval. `expires`: a copy queued while no
    # worker ran is dropped instead of piling up (the next run finds the same events anyway).
    "requeue-received-inbound-events": {
        "task": "platforms.tasks.requeue_received_events",
        "schedule": INBOUND_EVENT_REQUEUE_INTERVAL_SECONDS,
        "options": {"expires": INBOUND_EVENT_REQUEUE_INTERVAL_SECONDS},
    },
    # Outbound webhooks: hand due deliveries (new, retries, after a pause) to workers and recover
    # attempts whose worker died; the database is the queue of record, so a lost message costs one
    # interval. `expires` as above.
    "relay-webhook-deliveries": {
        "task": "notifications.tasks.relay_webhook_deliveries",
        "schedule": WEBHOOK_RELAY_INTERVAL_SECONDS,
        "options": {"expires": WEBHOOK_RELAY_INTERVAL_SECONDS},
    },
    # SFCC Option 1: Commerce Cloud cannot report refunds, so cancelled orders are found by polling.
    "poll-platform-orders": {
        "task": "platforms.tasks.poll_platform_orders",
        "schedule": PLATFORM_POLL_INTERVAL_SECONDS,
        "options": {"expires": PLATFORM_POLL_INTERVAL_SECONDS},
    },
    # SFCC merchants with an order management system (issue #25): its refunds, org by org.
    "discover-oms-refunds": {
        "task": "platforms.tasks.discover_oms_refunds",
        "schedule": OMS_DISCOVERY_INTERVAL_SECONDS,
        "options": {"expires": OMS_DISCOVERY_INTERVAL_SECONDS},
    },
    # Events awaiting their order: processed once the bag exists, FAILED past the expiry.
    "sweep-events-awaiting-order": {
        "task": "platforms.tasks.sweep_events_awaiting_order",
        "schedule": INBOUND_EVENT_AWAITING_ORDER_SWEEP_INTERVAL_SECONDS,
        "options": {"expires": INBOUND_EVENT_AWAITING_ORDER_SWEEP_INTERVAL_SECONDS},
    },
    # Webhook subscriptions at the platforms: created, corrected, re-activated (issue #24).
    "sync-store-subscriptions": {
        "task": "platforms.tasks.sync_due_store_subscriptions",
        "schedule": SUBSCRIPTIONS_SYNC_RUN_INTERVAL_SECONDS,
        "options": {"expires": SUBSCRIPTIONS_SYNC_RUN_INTERVAL_SECONDS},
    },
    # Personal data retention, daily (platforms.privacy.retention).
    "apply-data-retention": {
        "task": "platforms.tasks.apply_data_retention",
        "schedule": env.int("RETENTION_INTERVAL_SECONDS", default=24 * 3600),
        "options": {"expires": 3600},
    },
    # Parity check: missed webhooks become refunds (source PARITY_CHECK, counted in the admin triage).
    "check-platform-parity": {
        "task": "platforms.tasks.check_platform_parity",
        "schedule": PARITY_CHECK_INTERVAL_SECONDS,
        "options": {"expires": PARITY_CHECK_INTERVAL_SECONDS},
    },
    # Stripe events whose processing message was lost, as for platform events above.
    "requeue-stripe-events": {
        "task": "stripe_events.tasks.requeue_stripe_events",
        "schedule": INBOUND_EVENT_REQUEUE_INTERVAL_SECONDS,
        "options": {"expires": INBOUND_EVENT_REQUEUE_INTERVAL_SECONDS},
    },
    # Nightly reconciliation with Stripe: every difference becomes an operator finding (refunds.findings).
    "reconcile-refunds-nightly": {
        "task": "refunds.tasks.reconcile_refunds_nightly",
        "schedule": crontab(hour=RECONCILIATION_HOUR_UTC, minute=17),
        "options": {"expires": 3600},
    },
}

# --- Operations: health (violet_refunds.health, violet_refunds.beat; issue #18) ---
# Every beat writes a heartbeat to Redis (on its ticks, at least every 10 s); /readyz fails its "beat"
# check when the latest is older than this.
CELERY_BEAT_SCHEDULER = "violet_refunds.beat:HeartbeatScheduler"
READYZ_BEAT_MAX_AGE_SECONDS = env.int("READYZ_BEAT_MAX_AGE_SECONDS", default=60)
# Checks /readyz leaves out (database, migrations, broker, beat, encryption), e.g. "beat" for a web
# readiness probe that should not take every web process out of rotation when beat is down.
READYZ_SKIP_CHECKS = env.list("READYZ_SKIP_CHECKS", default=[])

# --- Personal data retention (platforms.privacy.retention; docs/privacy.md) ---
# Raw inbound webhook bodies and headers are redacted after this many days (events still to be
# processed are kept until they settle); id, topic, outcome, body hash and refund links stay.
RETENTION_INBOUND_EVENT_DAYS = env.int("RETENTION_INBOUND_EVENT_DAYS", default=30)
# Outbound event bodies (once delivered or given up) and channel reply excerpts are cleared after this.
RETENTION_OUTBOUND_DAYS = env.int("RETENTION_OUTBOUND_DAYS", default=30)
# django-axes login records are deleted after this.
RETENTION_LOGIN_LOG_DAYS = env.int("RETENTION_LOGIN_LOG_DAYS", default=90)
# A customer data request's assembled export is cleared this long after it was completed.
RETENTION_PRIVACY_EXPORT_DAYS = env.int("RETENTION_PRIVACY_EXPORT_DAYS", default=30)
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=1000)
# Shopify app client secrets (one per Shopify app of the network): /webhooks/shopify/ verifies the
# app-level compliance webhooks and app/uninstalled with them, as do per-connection URLs whose
# connection is disconnected (shop/redact arrives 48 h after the uninstall wiped its secret).
SHOPIFY_APP_SECRETS = env.list("SHOPIFY_APP_SECRETS", default=[])

# --- Refund engine ---
# A refund PROCESSING longer than this is considered stuck (lost message, dead worker) and re-enqueued.
REFUND_STUCK_AFTER_SECONDS = env.int("REFUND_STUCK_AFTER_SECONDS", default=900)
# Bounded retries for transient Stripe errors (connection, 429, 5xx, 409).
REFUND_MAX_ATTEMPTS = env.int("REFUND_MAX_ATTEMPTS", default=8)
REFUND_RETRY_BACKOFF_BASE_SECONDS = env.float("REFUND_RETRY_BACKOFF_BASE_SECONDS", default=2.0)
REFUND_RETRY_BACKOFF_MAX_SECONDS = env.int("REFUND_RETRY_BACKOFF_MAX_SECONDS", default=600)
# Look-ups of a step whose outcome is unknown have no budget; they wait as long again as the outcome
# has been unknown, up to this (and always below CELERY_VISIBILITY_TIMEOUT).
REFUND_LOOKUP_BACKOFF_MAX_SECONDS = env.int("REFUND_LOOKUP_BACKOFF_MAX_SECONDS", default=900)
# A database error in process_refund (connection refused, too many connections, a restart) is retried
# with the same backoff as a transient Stripe error this many times; then the stuck-refund sweep.
REFUND_DATABASE_RETRY_LIMIT = env.int("REFUND_DATABASE_RETRY_LIMIT", default=12)

# --- Forwarding channel refunds to the merchant's platform (issue 14, refunds.services.forwarding) ---
# Sends to an unreachable platform before the forwarding waits for an operator (triage: retry
# forwarding, or move the money without the platform). Waits between sends double from the base up
# to the max, and always stay below CELERY_VISIBILITY_TIMEOUT - 60 s.
FORWARDING_MAX_ATTEMPTS = env.int("FORWARDING_MAX_ATTEMPTS", default=6)
FORWARDING_RETRY_BACKOFF_BASE_SECONDS = env.float("FORWARDING_RETRY_BACKOFF_BASE_SECONDS", default=30.0)
FORWARDING_RETRY_BACKOFF_MAX_SECONDS = env.int("FORWARDING_RETRY_BACKOFF_MAX_SECONDS", default=900)
# A channel cancellation whose platform answer was lost and whose order could not be read back is
# answered 503 cancellation_outcome_unknown with this Retry-After (platforms.cancellation).
CANCELLATION_RETRY_AFTER_SECONDS = env.int("CANCELLATION_RETRY_AFTER_SECONDS", default=30)
# A platform that cancels as a background job (Shopify orderCancel) may show the order open right
# after a lost answer: it is read this many times, waiting the base (doubling, each wait at most 5 s)
# in between, before the answer is that 503 (never a CANCELLATION_FAILURE). The channel's request
# waits for these reads: 3 reads at 0.5 s add 1.5 s at most.
CANCELLATION_READBACK_ATTEMPTS = env.int("CANCELLATION_READBACK_ATTEMPTS", default=3)
CANCELLATION_READBACK_BACKOFF_SECONDS = env.float("CANCELLATION_READBACK_BACKOFF_SECONDS", default=0.5)
# Sender of the "mirror this refund" e-mails to merchants whose platform cannot be written to.
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="refunds@violet.localhost")

# --- Outbound HTTP on a user's behalf (channel webhooks, platform APIs, Wix connect) ---
# Only public addresses are contacted (violet_refunds.outbound). CIDRs listed here are allowed
# although private, e.g. "127.0.0.1/32" for a local test receiver in development. Empty by default,
# DEBUG or not.
OUTBOUND_ALLOWED_PRIVATE_NETWORKS = env.list("OUTBOUND_ALLOWED_PRIVATE_NETWORKS", default=[])

# --- Platform API hosts (staging, sandboxes, test servers; issue #15 item 6) ---
# Defaults are the platforms' production hosts. Patterns take the placeholders shown. WooCommerce has
# none: each store's own URL is its API host.
SHOPIFY_ADMIN_API_URL = env.str("SHOPIFY_ADMIN_API_URL", default="https://{shop_domain}/admin/api/{api_version}")
# The Shopify Admin API version of every call (REST, GraphQL, webhook subscriptions; issue #24).
SHOPIFY_API_VERSION = env.str("SHOPIFY_API_VERSION", default="2025-01")
ECWID_API_BASE_URL = env.str("ECWID_API_BASE_URL", default="https://app.ecwid.com/api/v3")
WIX_API_BASE_URL = env.str("WIX_API_BASE_URL", default="https://www.wixapis.com")
# Issue 14: record channel refunds on Wix (Refund Payments with externalRefund: true). Off by default:
# the API is a Developer Preview and part of the request is unconfirmed (platforms/adapters/wix.py),
# and a wrong guess would end every Wix channel refund FAILED; off, the merchant is told to mirror it.
WIX_REFUND_WRITES = env.bool("WIX_REFUND_WRITES", default=False)
# Issue 14: cancel Wix orders on a channel's cancellation (Cancel Order, Wix's own example request).
# Off: the network cancels and refunds, and the merchant is told.
WIX_CANCEL_WRITES = env.bool("WIX_CANCEL_WRITES", default=True)
BIGCOMMERCE_API_BASE_URL = env.str("BIGCOMMERCE_API_BASE_URL", default="https://api.bigcommerce.com/stores")
SFCC_API_URL = env.str("SFCC_API_URL", default="https://{short_code}.api.commercecloud.salesforce.com")
SFCC_TOKEN_URL = env.str("SFCC_TOKEN_URL", default="https://account.demandware.com/dwsso/oauth2/access_token")

# --- App-level platform webhooks (/webhooks/ecwid/, /webhooks/wix/; issue #15 item 1) ---
# Ecwid and Wix send every store's (site's) webhooks to the app's one URL, signed with the app's own
# secret, never a per-store one. One entry per app of the network; empty = that endpoint is a 404.
# Ecwid: the app's client_secret. Wix: the app's webhook public key (PEM; "\n" may stand for the line
# breaks in an environment variable).
ECWID_CLIENT_SECRETS = env.list("ECWID_CLIENT_SECRETS", default=[])
WIX_APP_PUBLIC_KEYS = [key.replace("\\n", "\n") for key in env.list("WIX_APP_PUBLIC_KEYS", default=[])]

# --- Outbound webhooks to channels ---
# A channel must answer within this many seconds (spec: ~10 s); slower is a failed attempt.
NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS = env.float("NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS", default=10.0)

# Seconds an attempt may take beyond the channel's timeout (connect, reading the reply's start,
# recording the outcome, a database hiccup) before it may be taken for interrupted.
WEBHOOK_DELIVERY_STUCK_MARGIN_SECONDS = 15


def _check_settling(values: dict[str, float]) -> None:
    """Refuse to start with settling settings that cannot work (clear message, at import of settings,
    so web, workers and beat all refuse)."""
    for name in (
        "INBOUND_EVENT_REQUEUE_AFTER_SECONDS",
        "INBOUND_EVENT_REQUEUE_INTERVAL_SECONDS",
        "INBOUND_EVENT_RETRY_BACKOFF_BASE_SECONDS",
        "INBOUND_EVENT_RETRY_BACKOFF_MAX_SECONDS",
        "INBOUND_EVENT_RETRY_HORIZON_SECONDS",
        "WEBHOOK_RELAY_INTERVAL_SECONDS",
        "WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS",
    ):
        if values[name] <= 0:
            raise ImproperlyConfigured(f"{name} must be a positive number of seconds, got {values[name]}.")
    minimum = values["NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS"] + WEBHOOK_DELIVERY_STUCK_MARGIN_SECONDS
    if values["WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS"] <= minimum:
        raise ImproperlyConfigured(
            f"WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS ({values['WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS']}) must be "
            f"greater than NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS ({values['NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS']:g}) "
            f"+ {WEBHOOK_DELIVERY_STUCK_MARGIN_SECONDS} s: an attempt still waiting for the channel would be "
            f"taken for interrupted and sent twice. Use more than {minimum:g}."
        )
    if values["INBOUND_EVENT_RETRY_HORIZON_SECONDS"] < values["INBOUND_EVENT_RETRY_BACKOFF_BASE_SECONDS"]:
        raise ImproperlyConfigured(
            "INBOUND_EVENT_RETRY_HORIZON_SECONDS must be at least INBOUND_EVENT_RETRY_BACKOFF_BASE_SECONDS: "
            "otherwise a transient failure is never retried."
        )


_check_settling(
    {
        "INBOUND_EVENT_REQUEUE_AFTER_SECONDS": INBOUND_EVENT_REQUEUE_AFTER_SECONDS,
        "INBOUND_EVENT_REQUEUE_INTERVAL_SECONDS": INBOUND_EVENT_REQUEUE_INTERVAL_SECONDS,
        "INBOUND_EVENT_RETRY_BACKOFF_BASE_SECONDS": INBOUND_EVENT_RETRY_BACKOFF_BASE_SECONDS,
        "INBOUND_EVENT_RETRY_BACKOFF_MAX_SECONDS": INBOUND_EVENT_RETRY_BACKOFF_MAX_SECONDS,
        "INBOUND_EVENT_RETRY_HORIZON_SECONDS": INBOUND_EVENT_RETRY_HORIZON_SECONDS,
        "WEBHOOK_RELAY_INTERVAL_SECONDS": WEBHOOK_RELAY_INTERVAL_SECONDS,
        "WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS": WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS,
        "NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS": NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS,
    }
)

# --- Stripe ---
# Empty: the stateful sandbox (stripe_sandbox) is the SDK's transport. Set: the real Stripe API
# (sk_test_/rk_test_: test mode, sk_live_/rk_live_: real money; the admin header says which).
STRIPE_API_KEY = env.str("STRIPE_API_KEY", default="")
# With DEBUG off an empty STRIPE_API_KEY refuses to start unless this says the sandbox is meant
# (a staging deployment, the soak harness, the benchmarks).
STRIPE_SANDBOX_ALLOWED = env.bool("STRIPE_SANDBOX_ALLOWED", default=False)
# The Stripe API version sent on every call (Stripe-Version header), pinned here rather than through
# the SDK: the version stripe-python 16.1.0 is built for (stripe/_api_version.py). Change it on purpose,
# together with the SDK; `manage.py check` warns while the two differ.
STRIPE_API_VERSION = env.str("STRIPE_API_VERSION", default="2026-10-28.endive")
# Every idempotency key sent to Stripe is "<prefix>:<our key>" (payments.gateway), so deployments that
# share one Stripe account (staging, CI, laptops on one test account) never collide. Default: the
# DEPLOYMENT_ID, else the database name. Our stored keys stay unprefixed. Changing it while refunds
# are PROCESSING is safe for money (a step whose outcome is unknown is looked up by metadata before
# anything is sent again) but should be done with no refund in flight.
DEPLOYMENT_ID = env.str("DEPLOYMENT_ID", default="")
STRIPE_IDEMPOTENCY_PREFIX = env.str("STRIPE_IDEMPOTENCY_PREFIX", default="") or deployment.default_idempotency_prefix(
    DATABASES["default"], DEPLOYMENT_ID
)
for _problem in (
    deployment.api_version_problem(STRIPE_API_VERSION),
    deployment.idempotency_prefix_problem(STRIPE_IDEMPOTENCY_PREFIX),
):
    if _problem:
        raise ImproperlyConfigured(_problem)
# The sandbox in its own process (python -m stripe_sandbox.http_server), e.g. http://127.0.0.1:12111:
# the SDK then talks HTTP to it instead of calling it in-process (benchmarks: its CPU is not ours).
# Only without STRIPE_API_KEY: a real key is never sent anywhere but Stripe.
STRIPE_SANDBOX_URL = env.str("STRIPE_SANDBOX_URL", default="")
if _problem := deployment.sandbox_url_problem(STRIPE_API_KEY, STRIPE_SANDBOX_URL):
    raise ImproperlyConfigured(_problem)
# Simulated per-call latency of the sandbox, in milliseconds (benchmarks).
STRIPE_SANDBOX_LATENCY_MS = env.int("STRIPE_SANDBOX_LATENCY_MS", default=0)
# Webhooks the sandbox emits (stripe_sandbox.events), signed like Stripe's with this secret. Delivered
# to STRIPE_SANDBOX_WEBHOOK_URL (HTTP POST) if set, else in-process to the callable at the dotted path
# STRIPE_SANDBOX_WEBHOOK_RECEIVER (receiver(payload: bytes, headers: dict)), else not at all. The
# default receiver, while the sandbox is in use (no STRIPE_API_KEY), is stripe_events': it ingests the
# event through the same path as /webhooks/stripe/<endpoint>/, for an endpoint holding this secret
# (created on first use).
STRIPE_SANDBOX_WEBHOOK_SECRET = env.str("STRIPE_SANDBOX_WEBHOOK_SECRET", default="whsec_sandbox_development_only")
STRIPE_SANDBOX_WEBHOOK_URL = env.str("STRIPE_SANDBOX_WEBHOOK_URL", default="")
STRIPE_SANDBOX_WEBHOOK_RECEIVER = env.str(
    "STRIPE_SANDBOX_WEBHOOK_RECEIVER",
    default="" if STRIPE_API_KEY else "stripe_events.sandbox.sandbox_webhook_receive",
)
# While the sandbox is in use, beat settles refunds whose time came and retries failed deliveries.
STRIPE_SANDBOX_SWEEP_INTERVAL_SECONDS = env.int("STRIPE_SANDBOX_SWEEP_INTERVAL_SECONDS", default=15)
if not STRIPE_API_KEY:
    CELERY_BEAT_SCHEDULE["sweep-stripe-sandbox"] = {
        "task": "stripe_sandbox.tasks.sweep_sandbox",
        "schedule": STRIPE_SANDBOX_SWEEP_INTERVAL_SECONDS,
        "options": {"expires": STRIPE_SANDBOX_SWEEP_INTERVAL_SECONDS},
    }
# The network's own Stripe account currency ("platform currency" in the API's refund object).
PLATFORM_CURRENCY = env.str("PLATFORM_CURRENCY", default="USD")

# --- Production guardrails (violet_refunds.deployment): with DEBUG off, refuse to start on the Stripe
# sandbox (unless STRIPE_SANDBOX_ALLOWED), without a broker, on SQLite, or with the development keys.
# `manage.py check --deploy` reports the same problems (violet.E001-E005, violet_refunds.checks).
if not DEBUG:
    _production_problems = deployment.production_problems(
        secret_key=SECRET_KEY,
        field_encryption_keys=FIELD_ENCRYPTION_KEYS,
        stripe_api_key=STRIPE_API_KEY,
        stripe_sandbox_allowed=STRIPE_SANDBOX_ALLOWED,
        redis_url=REDIS_URL,
        database_engine=DATABASES["default"]["ENGINE"],
    )
    if _production_problems:
        raise ImproperlyConfigured(deployment.refusal_message(_production_problems))

# --- API ---
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # Deny by default: no authenticator and a permission that needs one; every view opts in to how it
    # authenticates, and a public view says so (AllowAny).
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["violet_refunds.permissions.IsAuthenticatedRequest"],
    "DEFAULT_THROTTLE_CLASSES": ["violet_refunds.throttling.CredentialRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "violet_refunds.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "violet-refunds channel API",
    "DESCRIPTION": "Refunds of orders placed through the network, as seen by the channel (app).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Stable enum names in the schema (without them two `status` enums collide and get hash suffixes).
    "ENUM_NAME_OVERRIDES": {
        "StatusEnum": "refunds.models.RefundStatus",
        "WebhookEventTypeEnum": "notifications.models.EventType",
        "WebhookSubscribableEventTypeEnum": "notifications.models.SUBSCRIBABLE_EVENT_TYPES",
        "WebhookStatusEnum": "notifications.models.WebhookEndpoint.Status",
        "WebhookSettableStatusEnum": "notifications.serializers.SETTABLE_WEBHOOK_STATUSES",
        "WebhookDeliveryStatusEnum": "notifications.models.DeliveryStatus",
    },
}
API_TOKEN_TTL_SECONDS = env.int("API_TOKEN_TTL_SECONDS", default=86400)
API_REFRESH_TOKEN_TTL_SECONDS = env.int("API_REFRESH_TOKEN_TTL_SECONDS", default=30 * 86400)

# --- Tests ---
# CI sets REQUIRE_SERVICES=1: tests that need PostgreSQL or Redis fail (never skip) without them.
REQUIRE_SERVICES = env.bool("REQUIRE_SERVICES", default=False)

# --- Error tracking and mail to operators (violet_refunds.sentry; issue #18) ---
# SENTRY_DSN switches sentry-sdk on (Django, Celery and Redis integrations); every event is scrubbed of
# our, channels' and stores' secrets before it leaves (violet_refunds.sentry.scrub_event).
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default=DEPLOYMENT_ID)
SENTRY_RELEASE = env.str("SENTRY_RELEASE", default="")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)
if SENTRY_DSN:
    from violet_refunds import sentry

    sentry.init(
        dsn=SENTRY_DSN,
        environment=SENTRY_ENVIRONMENT,
        release=SENTRY_RELEASE,
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
    )


# Who receives the mail of a production 500 (Django's mail_admins), comma-separated: "Ops <ops@x.com>"
# or a bare address.
def _admin(entry: str) -> tuple[str, str]:
    name, _, address = entry.strip().rpartition("<")
    return (name.strip() or address.rstrip(">").strip(), address.rstrip(">").strip())


ADMINS = [_admin(entry) for entry in env.list("ADMINS", default=[])]
# The sender of mail to operators (errors) and to merchants (password reset).
SERVER_EMAIL = env.str("SERVER_EMAIL", default="violet-refunds@localhost")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default=SERVER_EMAIL)
# EMAIL_URL configures the mail backend in one variable (django-environ): smtp+tls://user:pass@host:587,
# smtps://... (SSL), consolemail://, dummymail://. Without it EMAIL_BACKEND (console) stays.
EMAIL_URL = env.str("EMAIL_URL", default="")
if EMAIL_URL:
    _email = env.email_url("EMAIL_URL")
    EMAIL_BACKEND = _email["EMAIL_BACKEND"]
    EMAIL_HOST = _email.get("EMAIL_HOST", "localhost")
    EMAIL_PORT = _email.get("EMAIL_PORT", 25)
    EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
    EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)

# --- Metrics (/metrics, observability; issue #18) ---
# Who may scrape: a bearer token, or client addresses (CIDRs, after TRUSTED_PROXY_COUNT). Neither set:
# nobody (401). Several processes per machine: PROMETHEUS_MULTIPROC_DIR (read by prometheus-client
# from the environment) adds up the counters of every gunicorn worker and Celery process on it.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])

# --- Logs (violet_refunds.logs; issue #18): JSON lines with DEBUG off, plain text with DEBUG on ---
# Every line carries the request id (X-Request-ID or a new one; also in the tasks a request enqueues)
# and the ids of the refund, bag, app, store connection, task and Stripe request in hand.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG else "json")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'plain' or 'json', got {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "violet_refunds.logs.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "violet_refunds.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        # stripe-python logs every request at INFO; our own events say what matters.
        "stripe": {"level": env.str("STRIPE_LOG_LEVEL", default="WARNING")},
    },
}
