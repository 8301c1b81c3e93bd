"""Issue #20: process_refund retries database errors (connection refused, too many connections, a
terminated backend) like transient Stripe errors, on a fresh connection, with backoff; a refund never
waits for the 15-minute sweep because of a database hiccup, and nothing moves twice.

On a real PostgreSQL (the backend is really terminated), tasks eager, the sandbox as the oracle."""

import pytest
from django.db import OperationalError, connection, transaction

from refunds.models import RefundEvent, RefundStatus
from refunds.services import engine, steps
from stripe_sandbox import ledger
from tests.reliability.conftest import record
from tests.reliability.matrix import REFUNDS
from tests.reliability.oracle import assert_completed_once, event_kinds
from tests.world import funded_bag

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_inline_stripe_events(settings):
    # The sandbox's webhooks would run engine passes of their own in-process; here only the task's.
    settings.STRIPE_SANDBOX_WEBHOOK_RECEIVER = ""


@pytest.fixture
def retries(monkeypatch):
    """The database retries the task schedules (their countdowns), recorded as they are planned."""
    planned = []
    real = engine.database_retry_plan

    def plan(refund_id, exc, **kwargs):
        result = real(refund_id, exc, **kwargs)
        planned.append((type(exc).__name__, result))
        return result

    monkeypatch.setattr(engine, "database_retry_plan", plan)
    yield planned
    connection.close()  # the teardown starts on a fresh connection whatever a test left behind


def reversal_posts():
    return [call for call in ledger.calls("/v1/transfers/", method="POST") if call.path.endswith("/reversals")]


def _record_and_run(bag):
    with transaction.atomic():  # its commit enqueues process_refund (eager)
        refund = record(bag).refund
    refund.refresh_from_db()
    return refund


def test_a_backend_terminated_after_stripe_said_yes_is_retried_and_nothing_moves_twice(
    monkeypatch, retries, eager_propagates
):
    """The worst moment: Stripe reversed the merchant transfer, then the database connection dies
    before the reversal is recorded. The task retries on a fresh connection, the next pass finds the
    row `unknown:sent`, looks the reversal up at Stripe, records it, and does the other steps once."""
    real = steps._complete_reversal
    terminated = []

    def terminate_then_record(*args, **kwargs):
        if not terminated:
            terminated.append(1)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return real(*args, **kwargs)

    monkeypatch.setattr(steps, "_complete_reversal", terminate_then_record)
    bag = funded_bag()

    refund = _record_and_run(bag)

    assert terminated == [1]
    assert [name for name, _ in retries] in (["OperationalError"], ["InterfaceError"])
    plan = retries[0][1]
    assert plan is not None and 0 < plan.countdown <= 1  # the reliability suite's backoff (max 1 s)
    assert refund.status == RefundStatus.COMPLETED
    assert_completed_once(refund)
    assert len(reversal_posts()) == 2  # one per transfer: none re-sent
    assert len(ledger.calls(REFUNDS, method="POST")) == 1
    assert "found at Stripe after a lost response" in " ".join(
        RefundEvent.objects.filter(refund=refund, kind=RefundEvent.Kind.STEP_SUCCEEDED).values_list(
            "message", flat=True
        )
    )


def test_connections_refused_on_the_first_deliveries_then_the_refund_completes(monkeypatch, retries, eager_propagates):
    """PostgreSQL out of connections ("too many clients") when the task starts, twice: no attempt is
    spent, no Stripe call is made, and the third delivery completes the refund."""
    real = engine.try_exclusive
    refused = []

    def too_many_clients(kind, object_id):
        if len(refused) < 2:
            refused.append(1)
            raise OperationalError("connection failed: FATAL:  sorry, too many clients already")
        return real(kind, object_id)

    monkeypatch.setattr(engine, "try_exclusive", too_many_clients)
    bag = funded_bag()

    refund = _record_and_run(bag)

    assert len(refused) == 2
    assert [name for name, _ in retries] == ["OperationalError", "OperationalError"]
    assert refund.status == RefundStatus.COMPLETED
    assert refund.attempts == 1  # the database errors spent no Stripe attempt
    assert_completed_once(refund)
    kinds = event_kinds(refund)
    assert kinds[-4:] == ["STEP_SUCCEEDED", "STEP_SUCCEEDED", "STEP_SUCCEEDED", "STATUS_CHANGED"]
    assert not {"NOTE", "RETRY_SCHEDULED", "STEP_FAILED"} & set(kinds)  # no interrupted pass, no retry of a step


def test_after_the_retry_limit_the_sweep_takes_over(monkeypatch, retries, settings, eager_propagates):
    """A database that stays down: the task stops retrying after REFUND_DATABASE_RETRY_LIMIT and the
    refund stays PROCESSING, untouched, for the stuck-refund sweep (the database is the queue of record)."""
    settings.REFUND_DATABASE_RETRY_LIMIT = 2

    def always_refused(kind, object_id):
        raise OperationalError("connection failed: server closed the connection unexpectedly")

    monkeypatch.setattr(engine, "try_exclusive", always_refused)
    bag = funded_bag()

    refund = _record_and_run(bag)

    assert [plan is None for _, plan in retries] == [False, False, True]
    assert refund.status == RefundStatus.PROCESSING
    assert refund.attempts == 0
    assert reversal_posts() == [] and ledger.calls(REFUNDS, method="POST") == []
