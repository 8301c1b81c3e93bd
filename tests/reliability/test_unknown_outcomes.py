"""Issue #13, V1: an unknown Stripe outcome is never final.

A step whose call was sent without a definitive answer (response lost, 5xx, timeout, worker killed
mid-call) keeps its refund PROCESSING until a look-up at Stripe settles it, however long Stripe's
look-ups keep failing and whatever the retry budget says; then the engine records what Stripe
holds. The channel never hears REFUND_FAILED for money that moved. The Stripe sandbox is the oracle
(tests/reliability/oracle.py) and `reconcile_refunds` must find nothing to report.
"""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from notifications.models import EventType, WebhookEvent
from payments.gateway import get_gateway
from payments.models import Recipient, ShopperRefund, TransferReversal
from refunds.errors import RefundErrorCode
from refunds.models import Refund, RefundEvent, RefundStatus
from refunds.selectors import refunds_outcome_unknown_queryset
from refunds.services import refund_process
from refunds.services.steps import outcome_unknown
from refunds.tasks import process_refund
from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind
from tests.reliability.conftest import SimulatedCrash, record
from tests.reliability.oracle import assert_completed_once, error_codes, money_at_stripe, step_rows, transfer_of

pytestmark = pytest.mark.django_db

REFUNDS = "/v1/refunds"


def reconcile_exit_code(refund: Refund) -> int:
    try:
        call_command("reconcile_refunds", "--refund", str(refund.pk), stdout=StringIO(), stderr=StringIO())
    except CommandError as exc:
        return exc.returncode
    return 0


def deliver_scheduled(refund: Refund):
    """The message the engine scheduled for this refund, delivered (eagerly: its own follow-ups run too)."""
    refund.refresh_from_db()
    process_refund.delay(refund.pk, due=refund.next_attempt_at.isoformat())
    refund.refresh_from_db()


def step(refund: Refund):
    outcome = refund_process(refund_id=refund.pk)
    refund.refresh_from_db()
    return outcome


def refund_failed_events(refund: Refund) -> int:
    return WebhookEvent.objects.filter(refund=refund, event_type=EventType.REFUND_FAILED).count()


def kinds(refund: Refund, kind: str) -> int:
    return RefundEvent.objects.filter(refund=refund, kind=kind).count()


def test_shopper_refund_lost_on_the_last_call_then_lookups_fail_stays_processing(bag, settings, eager_propagates):
    """The issue's refund 270: 500s use up the budget, the last call's response is lost after Stripe
    refunded the shopper, then every look-up gets a 503 for more than REFUND_MAX_ATTEMPTS passes.
    Before: FAILED "Stripe kept failing after 8 attempts" and REFUND_FAILED to the channel. Now:
    PROCESSING with the outcome unknown (visible), no new call, no attempt counted for a look-up,
    no final event; once a look-up works, COMPLETED with Stripe's refund recorded, books clean."""
    budget = settings.REFUND_MAX_ATTEMPTS
    ledger.inject_fault(FaultKind.HTTP_500, times=budget - 1, path=REFUNDS, method="POST")
    ledger.inject_fault(FaultKind.RESPONSE_LOST, path=REFUNDS, method="POST")
    refund = record(bag, enqueue=False, external_id="v1-shopper").refund

    while refund.attempts < budget:
        assert step(refund).status == RefundStatus.PROCESSING
    assert len(money_at_stripe(bag).refunds) == 1  # Stripe refunded the shopper; we do not know yet
    shopper, _ = step_rows(refund)
    assert outcome_unknown(shopper) and shopper.gateway_refund_id is None
    assert refund.outcome_unknown_since is not None
    assert list(refunds_outcome_unknown_queryset()) == [refund]

    ledger.inject_fault(FaultKind.HTTP_503, times=budget + 3, path=REFUNDS, method="GET")
    for _ in range(budget + 3):
        outcome = step(refund)
        assert outcome.status == RefundStatus.PROCESSING and outcome.retry_in > 0
        assert 0 < outcome.retry_in < settings.CELERY_VISIBILITY_TIMEOUT
        assert refund.status == RefundStatus.PROCESSING and refund.attempts == budget
        assert refund.outcome_unknown_since is not None
    assert refund_failed_events(refund) == 0
    assert error_codes(refund) == []
    assert kinds(refund, RefundEvent.Kind.LOOKUP_SCHEDULED) == budget + 4  # after the lost answer, then each 503
    assert ledger.call_count(REFUNDS, method="POST") == budget  # never sent again while unknown

    deliver_scheduled(refund)  # Stripe answers the look-up

    stripe = assert_completed_once(refund)
    assert len(stripe.refunds) == 1 and stripe.refunded_sum == stripe.charge_refunded == refund.amount
    assert ledger.call_count(REFUNDS, method="POST") == budget
    assert refund.attempts == budget and refund.outcome_unknown_since is None
    assert refund_failed_events(refund) == 0
    assert WebhookEvent.objects.filter(refund=refund, event_type=EventType.REFUND_COMPLETED).count() == 1
    assert reconcile_exit_code(refund) == 0


def test_merchant_reversal_lost_then_lookups_fail_stays_processing(bag, settings, eager_propagates):
    """The same for a merchant reversal: Stripe reversed the transfer, the answer was lost, then the
    reversal look-ups fail for more than REFUND_MAX_ATTEMPTS passes. The refund waits (no attempt
    counted, the shopper not refunded meanwhile); then the reversal is found and recorded, the
    shopper refunded, COMPLETED, cent-exact."""
    budget = settings.REFUND_MAX_ATTEMPTS
    merchant = transfer_of(bag, Recipient.MERCHANT)
    reversals_path = f"/v1/transfers/{merchant.gateway_transfer_id}/reversals"
    ledger.inject_fault(FaultKind.RESPONSE_LOST, path=reversals_path, method="POST")
    refund = record(bag, enqueue=False, external_id="v1-merchant").refund

    assert step(refund).status == RefundStatus.PROCESSING
    ledger.inject_fault(FaultKind.HTTP_503, times=budget + 3, path=reversals_path, method="GET")
    for _ in range(budget + 3):
        assert step(refund).status == RefundStatus.PROCESSING
        assert refund.attempts == 1 and refund.outcome_unknown_since is not None
    _, reversals = step_rows(refund)
    assert outcome_unknown(reversals[Recipient.MERCHANT])
    assert reversals[Recipient.DEVELOPER].status == TransferReversal.Status.COMPLETE
    stripe = money_at_stripe(bag)
    assert len(stripe.merchant_reversals) == 1 and stripe.refunds == []  # shopper waits for the answer
    assert refund_failed_events(refund) == 0

    deliver_scheduled(refund)

    stripe = assert_completed_once(refund)
    assert len(stripe.merchant_reversals) == 1 and stripe.merchant_reversed == merchant.amount
    assert ledger.call_count(reversals_path, method="POST") == 1
    merchant.refresh_from_db()
    assert merchant.reversed_amount == merchant.amount
    assert refund.attempts == 2  # the lost reversal's pass and the pass that refunded the shopper
    assert refund_failed_events(refund) == 0
    assert reconcile_exit_code(refund) == 0


def test_budget_spent_with_a_reversal_found_fails_only_what_stripe_does_not_hold(bag, settings, eager_propagates):
    """FAILED means Stripe holds nothing live for the failed step. The merchant reversal's calls use
    up the budget, the last one made at Stripe with its answer lost: the look-up records the
    reversal (money that moved is never left unrecorded), and only then, the shopper refund never
    having been sent, the refund is FAILED (RETRIES_EXHAUSTED) with every Stripe object on our books."""
    budget = settings.REFUND_MAX_ATTEMPTS
    merchant = transfer_of(bag, Recipient.MERCHANT)
    reversals_path = f"/v1/transfers/{merchant.gateway_transfer_id}/reversals"
    ledger.inject_fault(FaultKind.HTTP_500, times=budget - 1, path=reversals_path, method="POST")
    ledger.inject_fault(FaultKind.RESPONSE_LOST, path=reversals_path, method="POST")
    refund = record(bag, enqueue=False, external_id="v1-spent").refund

    process_refund.delay(refund.pk)
    refund.refresh_from_db()

    assert refund.status == RefundStatus.FAILED
    assert error_codes(refund) == [RefundErrorCode.RETRIES_EXHAUSTED]
    shopper, reversals = step_rows(refund)
    assert reversals[Recipient.MERCHANT].status == TransferReversal.Status.COMPLETE
    stripe = money_at_stripe(bag)
    assert [(r.stripe_id, r.amount) for r in stripe.merchant_reversals] == [
        (reversals[Recipient.MERCHANT].gateway_reversal_id, reversals[Recipient.MERCHANT].amount)
    ]
    assert stripe.refunds == [] and shopper.attempts == 0  # nothing live for the failed step
    assert kinds(refund, RefundEvent.Kind.LOOKUP_SCHEDULED) == 1
    assert reconcile_exit_code(refund) == 0


def test_poison_guard_looks_up_instead_of_failing(bag, crash_at, monkeypatch, settings):
    """The `attempts > REFUND_MAX_ATTEMPTS` poison guard obeys the rule too. The worker dies right
    after Stripe refunded the shopper (crash point after_stripe:SHOPPER_REFUND), then every later
    pass dies inside the look-up: each interrupted pass is counted once, the budget is spent, and
    the guard, seeing a step whose outcome is unknown, looks it up instead of failing. Once the
    look-up survives: COMPLETED, one refund."""
    budget = settings.REFUND_MAX_ATTEMPTS
    crash_at("after_stripe:SHOPPER_REFUND")
    refund = record(bag, enqueue=False, external_id="v1-poison").refund
    with pytest.raises(SimulatedCrash):
        step(refund)
    gateway = get_gateway()
    real_list_refunds = gateway.list_refunds
    deaths = {"left": budget + 2}

    def dies_in_lookup(**kwargs):
        if deaths["left"] > 0:
            deaths["left"] -= 1
            raise SimulatedCrash("worker killed during the look-up")
        return real_list_refunds(**kwargs)

    monkeypatch.setattr(gateway, "list_refunds", dies_in_lookup)
    for _ in range(budget + 2):
        with pytest.raises(SimulatedCrash):
            step(refund)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.PROCESSING and refund.attempts >= budget

    step(refund)

    assert_completed_once(refund)
    assert error_codes(refund) == []
    assert ledger.call_count(REFUNDS, method="POST") == 1
    assert refund_failed_events(refund) == 0


@pytest.mark.parametrize(
    "fault", [FaultKind.TIMEOUT, FaultKind.CONNECTION_ERROR, FaultKind.HTTP_503, FaultKind.HTTP_500, FaultKind.HTTP_409]
)
def test_ambiguous_errors_on_the_last_call_are_looked_up_before_failing(bag, settings, eager_propagates, fault):
    """Every transient error but 429 leaves the outcome unknown (the SDK cannot tell a connection
    error before sending from one after; Stripe calls 5xx indeterminate; a 409 means a request with
    our key is still executing). With that error on every call the budget is spent, but the refund
    fails only after a look-up proved Stripe holds nothing: FAILED, no refund at Stripe."""
    budget = settings.REFUND_MAX_ATTEMPTS
    ledger.inject_fault(fault, times=budget, path=REFUNDS, method="POST")
    refund = record(bag, enqueue=False, external_id=f"v1-{fault}").refund

    process_refund.delay(refund.pk)
    refund.refresh_from_db()

    assert refund.status == RefundStatus.FAILED and refund.attempts == budget
    assert error_codes(refund) == [RefundErrorCode.RETRIES_EXHAUSTED]
    assert money_at_stripe(bag).refunds == []
    get_after_last_post = ledger.calls(REFUNDS, method="GET")[-1].pk > ledger.calls(REFUNDS, method="POST")[-1].pk
    assert get_after_last_post  # looked up after the last call, before failing
    assert kinds(refund, RefundEvent.Kind.LOOKUP_SCHEDULED) == 1
    shopper = ShopperRefund.objects.get(refund=refund)
    assert shopper.status == ShopperRefund.Status.FAILED or not outcome_unknown(shopper)
    assert refund_failed_events(refund) == 1
