"""Stripe's events end to end, as the sandbox emits them: no event is built by hand here.

The sandbox stores each Event with the change that caused it and delivers it, signed with
STRIPE_SANDBOX_WEBHOOK_SECRET, after the commit to stripe_events' in-process receiver (the default
while the sandbox is in use), which verifies, stores, dedupes and processes it like a delivery to
/webhooks/stripe/<endpoint>/. Inside a test's transaction nothing commits, so each step that makes
the sandbox emit runs under `django_capture_on_commit_callbacks(execute=True)` (the commit), or the
stored events are delivered later by hand (`ledger.deliver_events`, or one by one in any order).
"""

from datetime import timedelta

import pytest
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone

from notifications.models import EventType, WebhookEvent
from payments.models import PaymentTransaction, ShopperRefund
from refunds import tasks as refund_tasks
from refunds.errors import RefundErrorCode
from refunds.models import ReconciliationFinding, Refund, RefundError, RefundSource, RefundStatus
from refunds.services import refund_process, refund_record
from refunds.services.record import ChargeDisputed
from stripe_events.models import StripeEvent, StripeWebhookEndpoint
from stripe_events.services import sandbox_endpoint
from stripe_sandbox import events as sandbox_events
from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind, SandboxEvent
from stripe_sandbox.transport import sandbox_stripe_client
from tests.world import funded_bag

pytestmark = pytest.mark.django_db

SANDBOX_SECRET = "whsec_sandbox_e2e"
SETTLE_SECONDS = 600


@pytest.fixture(autouse=True)
def sandbox_delivers_in_process(settings):
    """The embedded default: the sandbox's events go to stripe_events in-process, on a frozen clock."""
    settings.STRIPE_SANDBOX_WEBHOOK_URL = ""
    settings.STRIPE_SANDBOX_WEBHOOK_RECEIVER = "stripe_events.sandbox.sandbox_webhook_receive"
    settings.STRIPE_SANDBOX_WEBHOOK_SECRET = SANDBOX_SECRET
    ledger.freeze_clock(timezone.now())


@pytest.fixture
def polls(monkeypatch):
    """Every process_refund task sent (the engine's scheduled re-reads): none is run."""
    sent: list[tuple] = []
    monkeypatch.setattr(refund_tasks.process_refund, "apply_async", lambda *args, **kwargs: sent.append(args))
    return sent


def record(bag, **kwargs) -> Refund:
    kwargs.setdefault("source", RefundSource.CHANNEL_API)
    kwargs.setdefault("actor", "test")
    return refund_record(bag=bag, enqueue=False, **kwargs).refund


def payment_of(bag) -> PaymentTransaction:
    return PaymentTransaction.objects.get(order=bag.order)


def outbox_types(refund) -> list[str]:
    return list(WebhookEvent.objects.filter(refund=refund).order_by("sequence").values_list("event_type", flat=True))


def received(event_type: str) -> list[StripeEvent]:
    return list(StripeEvent.objects.filter(type=event_type).order_by("pk"))


def emitted_about(stripe_object_id: str) -> list[SandboxEvent]:
    return [e for e in ledger.events() if e.body["data"]["object"]["id"] == stripe_object_id]


def refund_settles_later(kind: str, capture, **fault) -> tuple[Refund, ShopperRefund]:
    """A refund processed while the sandbox takes a lifecycle fault settling SETTLE_SECONDS later."""
    ledger.inject_fault(kind, path="/v1/refunds", method="POST", settle_after_seconds=SETTLE_SECONDS, **fault)
    bag = funded_bag()
    refund = record(bag)
    with capture(execute=True):
        refund_process(refund_id=refund.pk)
    refund.refresh_from_db()
    return refund, ShopperRefund.objects.get(refund=refund)


def redeliver(event: SandboxEvent, client, *, secret: str = SANDBOX_SECRET, payload: bytes | None = None):
    """Stripe delivering an event again (it retries until it gets a 2xx): the same bytes, signed anew,
    to the sandbox endpoint's URL."""
    payload = sandbox_events.payload_of(event) if payload is None else payload
    url = reverse("stripe_events:webhook", args=[sandbox_endpoint().public_id])
    with TestCase.captureOnCommitCallbacks(execute=True):  # the request's commit: processing is enqueued
        return client.post(
            url,
            data=payload,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=sandbox_events.signature_header(payload, secret),
        )


# --- (a) pending -> succeeded -------------------------------------------------------------------------


def test_a_pending_refund_completes_from_the_sweeps_refund_updated_before_any_poll(
    django_capture_on_commit_callbacks, polls
):
    refund, shopper = refund_settles_later(FaultKind.REFUND_PENDING, django_capture_on_commit_callbacks)
    assert refund.status == RefundStatus.PROCESSING
    assert shopper.status == ShopperRefund.Status.PENDING and shopper.gateway_refund_id
    recheck_due = refund.next_attempt_at
    assert recheck_due is not None and recheck_due > timezone.now()
    # refund.created and charge.refunded (the refund still pending) arrived and changed nothing.
    assert [e.status for e in received("refund.created")] == [StripeEvent.Status.PROCESSED]
    assert refund.status == RefundStatus.PROCESSING

    ledger.advance_clock(SETTLE_SECONDS + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert ledger.sweep().refunds_settled == 1

    refund.refresh_from_db()
    shopper.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED and shopper.status == ShopperRefund.Status.SUCCEEDED
    assert payment_of(refund.bag).amount_refunded == refund.amount
    # Settled by the event: the engine's own re-read was not due yet and no scheduled pass ran.
    assert timezone.now() < recheck_due
    assert polls == []
    updated = received("refund.updated")
    assert len(updated) == 1 and updated[0].status == StripeEvent.Status.PROCESSED
    assert list(updated[0].refunds.all()) == [refund]
    assert {e.delivery for e in ledger.events()} == {SandboxEvent.Delivery.DELIVERED}
    assert outbox_types(refund) == [EventType.REFUND_PROCESSING, EventType.REFUND_COMPLETED]


def test_an_event_does_not_run_a_pass_before_the_backoff_after_a_lost_answer(django_capture_on_commit_callbacks, polls):
    """Stripe created the shopper refund but its answer was lost: the engine scheduled a look-up after
    its backoff. The refund.created that Stripe sends at once must not run a pass before then (issue
    #13 V2, the chaos soak's "early attempts"): the scheduled pass looks the refund up."""
    ledger.inject_fault(FaultKind.RESPONSE_LOST, path="/v1/refunds", method="POST")
    bag = funded_bag()
    refund = record(bag)
    with django_capture_on_commit_callbacks(execute=True):
        refund_process(refund_id=refund.pk)

    refund.refresh_from_db()
    shopper = ShopperRefund.objects.get(refund=refund)
    assert refund.status == RefundStatus.PROCESSING
    assert refund.next_attempt_at is not None and refund.next_attempt_at > timezone.now()
    assert shopper.status == ShopperRefund.Status.PENDING and not shopper.gateway_refund_id
    created = received("refund.created")
    assert [e.status for e in created] == [StripeEvent.Status.PROCESSED]
    assert "a retry is scheduled" in created[0].outcome

    # The scheduled pass finds the refund at Stripe and completes it, sending nothing again.
    refund_process(refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED
    assert ledger.call_count("/v1/refunds", method="POST") == 1


# --- (b) succeeded -> failed later ----------------------------------------------------------------------


def test_a_refund_that_fails_later_reopens_for_an_operator_and_the_channel_hears_it_once(
    django_capture_on_commit_callbacks,
):
    refund, shopper = refund_settles_later(
        FaultKind.REFUND_FAILS_LATER, django_capture_on_commit_callbacks, failure_reason="lost_or_stolen_card"
    )
    assert refund.status == RefundStatus.COMPLETED and shopper.status == ShopperRefund.Status.SUCCEEDED
    assert payment_of(refund.bag).amount_refunded == refund.amount

    ledger.advance_clock(SETTLE_SECONDS + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert ledger.sweep().refunds_settled == 1

    # refund.updated, charge.refund.updated and refund.failed all arrived; the first reopened it.
    assert [e.type for e in emitted_about(shopper.gateway_refund_id)][-3:] == [
        "refund.updated",
        "charge.refund.updated",
        "refund.failed",
    ]
    refund.refresh_from_db()
    shopper.refresh_from_db()
    assert refund.status == RefundStatus.FAILED
    assert (shopper.status, shopper.failure_reason) == (ShopperRefund.Status.FAILED, "lost_or_stolen_card")
    error = RefundError.objects.get(refund=refund)
    assert (error.error_code, error.gateway_code) == (RefundErrorCode.SHOPPER_REFUND_FAILED, "lost_or_stolen_card")
    assert "is owed to the shopper" in error.error_message
    assert payment_of(refund.bag).amount_refunded == 0
    assert outbox_types(refund) == [EventType.REFUND_PROCESSING, EventType.REFUND_COMPLETED, EventType.REFUND_FAILED]
    assert {e.status for e in StripeEvent.objects.all()} <= {StripeEvent.Status.PROCESSED, StripeEvent.Status.IGNORED}


# --- (c) a Dashboard refund ------------------------------------------------------------------------------


def test_a_refund_made_in_the_dashboard_is_recorded_external_and_flagged(django_capture_on_commit_callbacks):
    bag = funded_bag()
    payment = payment_of(bag)
    # Someone refunds in the Dashboard: a plain API call without our metadata or our idempotency keys.
    with django_capture_on_commit_callbacks(execute=True):
        dashboard = sandbox_stripe_client().v1.refunds.create(
            params={"payment_intent": payment.gateway_transaction_id, "amount": 2500}
        )

    assert [e.type for e in emitted_about(dashboard.id)] == ["refund.created"]
    external = Refund.objects.get(bag=bag)
    assert (external.status, external.source, external.amount, external.external_id) == (
        RefundStatus.EXTERNAL,
        RefundSource.STRIPE_DASHBOARD,
        2500,
        f"stripe:{dashboard.id}",
    )
    assert payment_of(bag).amount_refunded == 2500
    finding = ReconciliationFinding.objects.get()
    assert (finding.kind, finding.refund, finding.state) == ("outside_refund", external, "OPEN")
    assert outbox_types(external) == [EventType.REFUND_EXTERNAL]
    # refund.created recorded it; charge.refunded found it already recorded.
    assert [e.status for e in received("refund.created") + received("charge.refunded")] == [
        StripeEvent.Status.PROCESSED,
        StripeEvent.Status.PROCESSED,
    ]
    assert "already recorded" in received("charge.refunded")[0].outcome


# --- (d) a dispute ---------------------------------------------------------------------------------------


def test_a_dispute_refuses_new_refunds_and_stops_one_in_flight_before_the_shopper_step(
    django_capture_on_commit_callbacks,
):
    bag = funded_bag()
    payment = payment_of(bag)
    in_flight = record(bag, amount=2000)
    with django_capture_on_commit_callbacks(execute=True):
        dispute_id = ledger.dispute_charge(payment.gateway_transaction_id)

    payment.refresh_from_db()
    assert (payment.dispute_id, payment.dispute_status) == (dispute_id, "needs_response")
    assert received("charge.dispute.created")[0].status == StripeEvent.Status.PROCESSED
    with pytest.raises(ChargeDisputed) as refused:
        record(bag, amount=1000)
    assert refused.value.status_code == 409 and "disputed" in refused.value.message

    with django_capture_on_commit_callbacks(execute=True):
        assert refund_process(refund_id=in_flight.pk).status == RefundStatus.FAILED
    assert ledger.refunds_for(payment.gateway_transaction_id) == []  # the shopper step was never sent
    assert RefundError.objects.get(refund=in_flight).error_code == RefundErrorCode.CHARGE_DISPUTED
    assert ReconciliationFinding.objects.get().kind == "dispute"

    # Lost: still blocked (the shopper got the money back through the dispute).
    with django_capture_on_commit_callbacks(execute=True):
        ledger.close_dispute(dispute_id, "lost")
    payment.refresh_from_db()
    assert payment.dispute_status == "lost"
    with pytest.raises(ChargeDisputed):
        record(bag, amount=1000)


def test_a_dispute_fails_a_pending_shopper_refund_with_stripes_reason(django_capture_on_commit_callbacks):
    refund, shopper = refund_settles_later(FaultKind.REFUND_PENDING, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        ledger.dispute_charge(shopper.payment_transaction.gateway_transaction_id)
        ledger.sweep()  # Stripe fails the pending refund at once

    refund.refresh_from_db()
    shopper.refresh_from_db()
    assert refund.status == RefundStatus.FAILED
    assert shopper.failure_reason == "charge_for_pending_refund_disputed"
    assert RefundError.objects.get(refund=refund).gateway_code == "charge_for_pending_refund_disputed"
    assert outbox_types(refund) == [EventType.REFUND_PROCESSING, EventType.REFUND_FAILED]


# --- (e) duplicate and out-of-order deliveries ----------------------------------------------------------


def test_the_same_emitted_events_in_reverse_order_and_again_change_nothing_twice(client):
    """Nothing is delivered while it happens (the test's transaction never commits); then Stripe
    delivers the stored events newest first, then all of them again."""
    ledger.inject_fault(
        FaultKind.REFUND_FAILS_LATER, path="/v1/refunds", method="POST", settle_after_seconds=SETTLE_SECONDS
    )
    bag = funded_bag()
    refund = record(bag)
    refund_process(refund_id=refund.pk)
    ledger.advance_clock(SETTLE_SECONDS + 1)
    ledger.sweep()
    shopper = ShopperRefund.objects.get(refund=refund)
    stored = emitted_about(shopper.gateway_refund_id)
    assert [e.type for e in stored] == [
        "refund.created",
        "refund.updated",
        "charge.refund.updated",
        "refund.failed",
    ]
    assert StripeEvent.objects.count() == 0

    for event in reversed(ledger.events()):
        assert redeliver(event, client).json()["status"] == "received"
    state = (
        Refund.objects.get(pk=refund.pk).status,
        RefundError.objects.filter(refund=refund).count(),
        outbox_types(refund),
        payment_of(bag).amount_refunded,
        ReconciliationFinding.objects.count(),
    )
    assert state == (
        RefundStatus.FAILED,
        1,
        [EventType.REFUND_PROCESSING, EventType.REFUND_COMPLETED, EventType.REFUND_FAILED],
        0,
        0,
    )

    for event in ledger.events():  # Stripe retries every one of them
        assert redeliver(event, client).json()["status"] == "duplicate"
    assert ledger.deliver_events() == len(ledger.events())  # and the sandbox's own delivery, late
    assert StripeEvent.objects.count() == len(ledger.events())
    assert (
        Refund.objects.get(pk=refund.pk).status,
        RefundError.objects.filter(refund=refund).count(),
        outbox_types(refund),
        payment_of(bag).amount_refunded,
        ReconciliationFinding.objects.count(),
    ) == state

    # Replayed by an operator: processed again, still nothing twice.
    from stripe_events.services import stripe_events_replay

    stripe_events_replay(StripeEvent.objects.order_by("-pk"))
    assert RefundError.objects.filter(refund=refund).count() == 1
    assert outbox_types(refund).count(EventType.REFUND_FAILED) == 1


def test_a_dashboard_refund_delivered_twice_and_late_is_recorded_once(client):
    bag = funded_bag()
    dashboard = sandbox_stripe_client().v1.refunds.create(
        params={"payment_intent": payment_of(bag).gateway_transaction_id, "amount": 1500}
    )
    [refund_created] = ledger.events("refund.created")
    [charge_refunded] = ledger.events("charge.refunded")
    for event in (charge_refunded, refund_created, charge_refunded, refund_created):
        redeliver(event, client)
    assert Refund.objects.get(bag=bag).external_id == f"stripe:{dashboard.id}"
    assert payment_of(bag).amount_refunded == 1500
    assert ReconciliationFinding.objects.get().kind == "outside_refund"
    assert StripeEvent.objects.count() == 2
    assert {e.status for e in StripeEvent.objects.all()} == {StripeEvent.Status.PROCESSED}


def test_a_pending_refunds_events_newest_first_complete_it_once(client):
    ledger.inject_fault(
        FaultKind.REFUND_PENDING, path="/v1/refunds", method="POST", settle_after_seconds=SETTLE_SECONDS
    )
    refund = record(funded_bag())
    refund_process(refund_id=refund.pk)
    ledger.advance_clock(SETTLE_SECONDS + 1)
    ledger.sweep()
    assert StripeEvent.objects.count() == 0

    for event in [*reversed(ledger.events()), *ledger.events()]:
        redeliver(event, client)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED
    assert payment_of(refund.bag).amount_refunded == refund.amount
    assert outbox_types(refund) == [EventType.REFUND_PROCESSING, EventType.REFUND_COMPLETED]
    assert StripeEvent.objects.count() == len(ledger.events())


@pytest.mark.parametrize("closed_as, blocks", [("won", False), ("lost", True)])
def test_a_closed_dispute_is_not_reopened_by_its_created_event_arriving_after_it(client, closed_as, blocks):
    """Both events carry the same `created` second (the sandbox's clock is frozen; Stripe's are
    seconds too): the closed status, which never reopens, wins the tie."""
    bag = funded_bag()
    payment = payment_of(bag)
    dispute_id = ledger.dispute_charge(payment.gateway_transaction_id)
    ledger.close_dispute(dispute_id, closed_as)
    [created] = ledger.events("charge.dispute.created")
    [closed] = ledger.events("charge.dispute.closed")
    assert created.body["created"] == closed.body["created"]

    for event in (closed, created, closed, created):
        redeliver(event, client)
    payment.refresh_from_db()
    assert (payment.dispute_id, payment.dispute_status, payment.refunds_blocked_by_dispute) == (
        dispute_id,
        closed_as,
        blocks,
    )
    if not blocks:
        assert record(bag, amount=1000).status == RefundStatus.PROCESSING


# --- (f) signatures ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["other secret", "body changed"])
def test_an_emitted_event_with_a_bad_signature_is_400_and_stores_nothing(client, how):
    bag = funded_bag()
    sandbox_stripe_client().v1.refunds.create(params={"payment_intent": payment_of(bag).gateway_transaction_id})
    event = ledger.events("refund.created")[0]
    if how == "other secret":
        response = redeliver(event, client, secret="whsec_not_the_sandboxes")
    else:
        payload = sandbox_events.payload_of(event)
        signature = sandbox_events.signature_header(payload, SANDBOX_SECRET)
        response = client.post(
            reverse("stripe_events:webhook", args=[sandbox_endpoint().public_id]),
            data=payload.replace(b'"amount":', b'"amount":1', 1),
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=signature,
        )
    assert response.status_code == 400 and response.json()["error_code"] == "signature_invalid"
    assert StripeEvent.objects.count() == 0
    assert not Refund.objects.filter(bag=bag).exists()


def test_a_delivery_the_endpoint_refuses_stores_nothing_and_is_left_failed_for_the_sweep(
    settings, django_capture_on_commit_callbacks
):
    sandbox_endpoint()  # the endpoint exists with SANDBOX_SECRET ...
    StripeWebhookEndpoint.objects.filter(is_sandbox=True).update(signing_secrets=["whsec_rolled"])
    bag = funded_bag()
    sandbox_events_before = len(ledger.events())
    settings.STRIPE_SANDBOX_WEBHOOK_RECEIVER = "tests.stripe_events.test_sandbox_emitted_events.strict_receiver"
    with django_capture_on_commit_callbacks(execute=True):
        sandbox_stripe_client().v1.refunds.create(params={"payment_intent": payment_of(bag).gateway_transaction_id})
    new = ledger.events()[sandbox_events_before:]
    assert new and {e.delivery for e in new} == {SandboxEvent.Delivery.FAILED}
    assert all("SignatureInvalid" in e.last_delivery_error for e in new)
    assert StripeEvent.objects.count() == 0


def strict_receiver(payload: bytes, headers: dict) -> dict:
    """The in-process receiver against the endpoint as stored (not re-synced with the setting)."""
    from stripe_events import services

    endpoint = StripeWebhookEndpoint.objects.get(is_sandbox=True)
    result = services.stripe_event_ingest(endpoint=endpoint, payload=payload, headers=headers)
    return {"event_id": result.event.stripe_id}


def test_events_emitted_with_the_clock_a_day_ahead_are_still_within_the_signature_tolerance():
    """The sandbox signs with real time, not its (advanced) clock: Stripe's tolerance is about the
    delivery, and a test that moved the clock a day ahead must still verify."""
    ledger.advance_clock(timedelta(days=1).total_seconds())
    bag = funded_bag()
    sandbox_stripe_client().v1.refunds.create(params={"payment_intent": payment_of(bag).gateway_transaction_id})
    assert ledger.deliver_events() == len(ledger.events())
    assert StripeEvent.objects.filter(type="refund.created").count() == 1


# --- in-process delivery during the engine's own pass ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_events_delivered_in_process_during_the_engines_pass_do_not_re_enter_it():
    """Committed for real (as in make run): the sandbox's refund.created and charge.refunded reach
    stripe_events while the engine's pass is still inside its call to the sandbox. Their engine pass
    is refused (the refund is held), the running pass records Stripe's answer, once."""
    bag = funded_bag()
    refund = record(bag)
    assert refund_process(refund_id=refund.pk).status == RefundStatus.COMPLETED

    created = received("refund.created")
    assert len(created) == 1 and created[0].status == StripeEvent.Status.PROCESSED
    assert "being processed right now" in created[0].outcome
    assert {e.delivery for e in ledger.events()} == {SandboxEvent.Delivery.DELIVERED}
    assert len(ledger.refunds_for(payment_of(bag).gateway_transaction_id)) == 1
    assert payment_of(bag).amount_refunded == refund.amount
    assert outbox_types(refund) == [EventType.REFUND_PROCESSING, EventType.REFUND_COMPLETED]
    assert ReconciliationFinding.objects.count() == 0
