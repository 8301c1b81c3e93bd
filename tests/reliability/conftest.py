"""Fixtures for the reliability suite: funded bags, eager processing that surfaces exceptions, small
retry settings, simulated crashes in-process, and the real-worker machinery (see workers.py)."""

import pytest
from django.db import transaction

from refunds.models import RefundSource
from refunds.services import refund_record
from tests.world import funded_bag
from violet_refunds.celery import app as celery_app


class SimulatedCrash(BaseException):
    """In-process stand-in for SIGKILL at a crash point: nothing after it runs, no handler catches it
    (BaseException, like the worker dying), and the database keeps only what was committed."""


@pytest.fixture(autouse=True)
def _engine_settings(settings):
    # Enough attempts to see backoff at work, few enough that "retries exhausted" is quick.
    settings.REFUND_MAX_ATTEMPTS = 5
    settings.REFUND_RETRY_BACKOFF_BASE_SECONDS = 0.1
    settings.REFUND_RETRY_BACKOFF_MAX_SECONDS = 1
    settings.STRIPE_SANDBOX_LATENCY_MS = 0


@pytest.fixture
def eager_propagates():
    """Eager tasks raise instead of hiding a bug in an EagerResult."""
    previous = celery_app.conf.task_eager_propagates
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_eager_propagates = previous


@pytest.fixture
def bag(db):
    """$113.00: sub_total 10000 (2 x 5000), shipping 500, tax 800; 10% commission on the sub_total,
    so the channel's transfer is 1000 and the merchant's 10300."""
    return funded_bag()


def record(bag, *, enqueue=True, **kwargs):
    """refund_record as an entry point calls it; its on-commit enqueue runs (eagerly) when enqueue."""
    kwargs.setdefault("source", RefundSource.CHANNEL_API)
    kwargs.setdefault("actor", "test")
    return refund_record(bag=bag, enqueue=enqueue, **kwargs)


@pytest.fixture
def record_and_run(django_capture_on_commit_callbacks, eager_propagates):
    """Record a refund and run what its commit enqueues (process_refund, eagerly, retries included)."""

    def run(bag, **kwargs):
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            result = record(bag, **kwargs)
        result.refund.refresh_from_db()
        return result.refund

    return run


@pytest.fixture
def crash_at(monkeypatch):
    """Make the engine 'die' at a named crash point (in-process), `times` times."""

    def install(name: str, times: int = 1):
        state = {"left": times}

        def crash_point(point: str) -> None:
            if point == name and state["left"] > 0:
                state["left"] -= 1
                raise SimulatedCrash(point)

        monkeypatch.setattr("refunds.services.steps.crash_point", crash_point)
        return state

    return install


@pytest.fixture
def start_worker(transactional_db, require_postgres, redis_url, tmp_path):
    """Start real Celery workers on the test database and Redis (this process publishes to the same
    broker meanwhile). Redis's DB is purged before and after; every worker is killed at the end."""
    import redis

    from tests.reliability.workers import LiveBroker, Worker, worker_environment

    broker_db = redis.Redis.from_url(redis_url)
    broker_db.flushdb()
    started: list[Worker] = []

    def start(**env) -> Worker:
        worker = Worker(worker_environment(redis_url, **env), tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker.start()

    with LiveBroker(redis_url):
        try:
            yield start
        finally:
            for worker in started:
                worker.stop()
    broker_db.flushdb()
    broker_db.close()
