"""Issue #13, V2: attempts are Stripe attempts.

A delivery of the task before the refund's next_attempt_at does nothing (EARLY: no attempt, no
event, no Stripe call), unless it is the message scheduled for that time; the sweep and an
operator retry schedule their own delivery so it is never early; the sweep never stacks a second
copy of a refund it already re-enqueued. The retry budget still ends a refund whose calls Stripe
definitively refused (429: never executed): FAILED, and the channel is told.
"""

import pytest
from django.db import transaction
from django.utils import timezone

from notifications.models import EventType, WebhookEvent
from refunds.errors import RefundErrorCode
from refunds.models import Refund, RefundEvent, RefundStatus
from refunds.services import refund_process, refund_retry, refund_sweep_stuck
from refunds.services.engine import EARLY
from refunds.tasks import process_refund
from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind
from tests.reliability.conftest import record
from tests.reliability.oracle import assert_completed_once, error_codes, money_at_stripe

pytestmark = pytest.mark.django_db

REFUNDS = "/v1/refunds"


def snapshot(refund: Refund) -> tuple:
    """What a delivery could change: the refund row, its audit trail, its outbox events, Stripe."""
    row = Refund.objects.filter(pk=refund.pk).values().get()
    return (
        row,
        list(RefundEvent.objects.filter(refund=refund).values_list("pk", flat=True)),
        list(WebhookEvent.objects.filter(refund=refund).values_list("pk", flat=True)),
        ledger.call_count(),
    )


@pytest.fixture
def waiting_for_retry(bag):
    """A refund whose first pass hit a 429 on the shopper refund: retry scheduled in the future."""
    ledger.inject_fault(FaultKind.HTTP_429, path=REFUNDS, method="POST")
    refund = record(bag, enqueue=False, external_id="v2").refund
    outcome = refund_process(refund_id=refund.pk)
    refund.refresh_from_db()
    assert outcome.status == RefundStatus.PROCESSING and refund.attempts == 1
    Refund.objects.filter(pk=refund.pk).update(next_attempt_at=timezone.now() + timezone.timedelta(seconds=30))
    refund.refresh_from_db()
    return refund


def test_duplicate_delivery_before_next_attempt_at_changes_nothing(waiting_for_retry, eager_propagates):
    """The issue's refund 939 (attempt 7 ran 0.1 s after "retrying in 32.3 s"): a copy of the message
    (Redis redelivery, a stale retry, a sweep copy) arriving before next_attempt_at is EARLY: no
    attempt counted, no event, no outbox row, no Stripe call. A stale `due` is no pass either. The
    message scheduled for that time runs and completes the refund with one more attempt."""
    refund = waiting_for_retry
    before = snapshot(refund)

    assert process_refund.delay(refund.pk).get() == EARLY
    assert process_refund.delay(refund.pk, due=timezone.now().isoformat()).get() == EARLY
    assert refund_process(refund_id=refund.pk, as_delivery=True).status == EARLY

    assert snapshot(refund) == before
    process_refund.delay(refund.pk, due=refund.next_attempt_at.isoformat())  # the scheduled one
    assert_completed_once(refund)
    refund.refresh_from_db()
    assert refund.attempts == 2
    assert [c.status_code for c in ledger.calls(REFUNDS, method="POST")] == [429, 200]


def test_a_due_delivery_runs_whatever_it_carries(waiting_for_retry, eager_propagates):
    """Once next_attempt_at has passed, any copy runs (the clock decides); the first completes the
    refund and later copies find it final."""
    refund = waiting_for_retry
    Refund.objects.filter(pk=refund.pk).update(next_attempt_at=timezone.now() - timezone.timedelta(seconds=1))
    process_refund.delay(refund.pk)
    assert_completed_once(refund)
    calls = ledger.call_count()
    assert process_refund.delay(refund.pk).get() == RefundStatus.COMPLETED
    assert ledger.call_count() == calls


def test_sweep_run_twice_enqueues_once(waiting_for_retry, monkeypatch, settings, eager_propagates):
    """The retry message sat behind a backlog past REFUND_STUCK_AFTER_SECONDS: the sweep re-enqueues
    the refund once and marks it; a second sweep run before that delivery (and one nested inside the
    enqueue, as a concurrent run would) enqueues nothing. The sweep's own message is not early; the
    old retry message arriving afterwards is a no-op."""
    settings.REFUND_STUCK_AFTER_SECONDS = 60
    refund = waiting_for_retry
    assert refund_sweep_stuck() == []  # scheduled in the future: not stuck
    overdue = timezone.now() - timezone.timedelta(minutes=5)
    Refund.objects.filter(pk=refund.pk).update(next_attempt_at=overdue)
    sent = []

    def capture(refund_id, countdown=None, due=None):
        sent.append((refund_id, due))
        assert refund_sweep_stuck() == []  # a run overlapping this one

    monkeypatch.setattr("refunds.services.repairs.enqueue_processing", capture)
    assert refund_sweep_stuck() == [refund.pk]
    assert refund_sweep_stuck() == []
    refund.refresh_from_db()
    assert sent == [(refund.pk, refund.next_attempt_at)]
    assert RefundEvent.objects.filter(refund=refund, kind=RefundEvent.Kind.REQUEUED).count() == 1

    process_refund.delay(refund.pk, due=sent[0][1].isoformat())  # the sweep's message
    assert_completed_once(refund)
    calls = ledger.call_count()
    process_refund.delay(refund.pk, due=overdue.isoformat())  # the old retry message, finally
    assert ledger.call_count() == calls
    refund.refresh_from_db()
    assert refund.attempts == 2


def test_operator_retry_delivery_is_not_early(bag, django_capture_on_commit_callbacks, eager_propagates):
    """An operator retry schedules its own delivery (next_attempt_at now, carried by the message)."""
    ledger.inject_fault(FaultKind.HTTP_429, times=1000, path=REFUNDS, method="POST")
    refund = record(bag, enqueue=False, external_id="v2-retry").refund
    process_refund.delay(refund.pk)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED
    ledger.clear_faults()

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        refund_retry(refund=refund, note="Stripe is back")

    assert_completed_once(refund)


def test_429_on_every_call_ends_failed_and_tells_the_channel(bag, settings, eager_propagates):
    """A 429 is refused before Stripe executes anything: the budget counts those calls, and when it is
    spent the refund ends FAILED (RETRIES_EXHAUSTED) without any look-up pass, and the channel gets
    REFUND_FAILED. Every call was one attempt; nothing moved for the shopper."""
    budget = settings.REFUND_MAX_ATTEMPTS
    ledger.inject_fault(FaultKind.HTTP_429, times=1000, path=REFUNDS, method="POST")
    refund = record(bag, enqueue=False, external_id="v2-429").refund

    process_refund.delay(refund.pk)
    refund.refresh_from_db()

    assert refund.status == RefundStatus.FAILED and refund.attempts == budget
    assert error_codes(refund) == [RefundErrorCode.RETRIES_EXHAUSTED]
    assert [c.status_code for c in ledger.calls(REFUNDS, method="POST")] == [429] * budget
    assert ledger.calls(REFUNDS, method="GET") == []  # nothing could exist: no look-up
    assert RefundEvent.objects.filter(refund=refund, kind=RefundEvent.Kind.RETRY_SCHEDULED).count() == budget - 1
    assert not RefundEvent.objects.filter(refund=refund, kind=RefundEvent.Kind.LOOKUP_SCHEDULED).exists()
    assert money_at_stripe(bag).refunds == []
    assert WebhookEvent.objects.filter(refund=refund, event_type=EventType.REFUND_FAILED).count() == 1
    assert refund.outcome_unknown_since is None


def test_pending_rechecks_are_not_attempts(bag):
    """Re-reading a refund Stripe holds as pending sends nothing that could move money: the pass that
    made the calls is the only attempt, however many re-reads follow."""
    ledger.inject_fault(FaultKind.REFUND_FAILS_ASYNC, path=REFUNDS, method="POST")
    refund = record(bag, enqueue=False, external_id="v2-pending").refund
    from stripe_sandbox.models import SandboxRefund

    assert refund_process(refund_id=refund.pk).detail == "pending at Stripe"
    SandboxRefund.objects.update(fails_on_next_read=False)
    for _ in range(4):
        assert refund_process(refund_id=refund.pk).detail == "pending at Stripe"
    refund.refresh_from_db()
    assert refund.attempts == 1
    SandboxRefund.objects.update(status="succeeded")
    refund_process(refund_id=refund.pk)
    assert_completed_once(refund)
    refund.refresh_from_db()
    assert refund.attempts == 1
