"""Stripe's own webhooks through the HTTP receiver: signed events in Stripe's shape, the money in the sandbox."""

import json
import time

import pytest
from django.urls import reverse

from notifications.models import EventType, WebhookEvent
from payments.gateway import get_gateway
from payments.models import PaymentTransaction, Recipient, ShopperRefund, Transfer, TransferReversal
from refunds.errors import RefundErrorCode
from refunds.models import (
    ReconciliationFinding,
    Refund,
    RefundError,
    RefundEvent,
    RefundSource,
    RefundStatus,
)
from refunds.services import refund_process, refund_record, refund_retry
from refunds.services.record import ChargeDisputed
from stripe_events.models import StripeEvent, StripeWebhookEndpoint
from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind, SandboxRefund
from tests.stripe_events.events import (
    charge_object,
    dispute_object,
    post_event,
    refund_object,
    signature_header,
    stripe_event,
    transfer_object,
)
from tests.world import funded_bag
from violet_refunds.exceptions import ValidationFailed

pytestmark = pytest.mark.django_db

SECRET = "whsec_test_current"


@pytest.fixture
def endpoint():
    return StripeWebhookEndpoint.objects.create(name="Test account", signing_secrets=[SECRET, "whsec_test_old"])


def record(bag, **kwargs):
    kwargs.setdefault("source", RefundSource.CHANNEL_API)
    kwargs.setdefault("actor", "test")
    return refund_record(bag=bag, enqueue=False, **kwargs).refund


def payment_of(bag) -> PaymentTransaction:
    return PaymentTransaction.objects.get(order=bag.order)


def outbox_types(refund) -> list[str]:
    return list(WebhookEvent.objects.filter(refund=refund).order_by("sequence").values_list("event_type", flat=True))


def pending_refund_at_stripe(bag):
    """A refund whose shopper refund Stripe accepted as `pending` (reversals done)."""
    ledger.inject_fault(FaultKind.REFUND_FAILS_ASYNC, path="/v1/refunds")
    refund = record(bag)
    outcome = refund_process(refund_id=refund.pk)
    assert outcome.status == RefundStatus.PROCESSING
    shopper = ShopperRefund.objects.get(refund=refund)
    assert shopper.status == ShopperRefund.Status.PENDING and shopper.gateway_refund_id
    return refund, shopper


# --- the receiver ---------------------------------------------------------------------------------


def test_a_signed_event_is_stored_raw_once_and_processed(client, endpoint):
    event = stripe_event("customer.created", {"id": "cus_test_1", "object": "customer"})
    response = post_event(client, endpoint, event)
    assert response.status_code == 200
    assert response.json() == {"status": "received", "event_id": event["id"]}
    stored = StripeEvent.objects.get(stripe_id=event["id"])
    assert json.loads(stored.body) == event
    assert (stored.type, stored.api_version, stored.livemode, stored.object_id) == (
        "customer.created",
        event["api_version"],
        False,
        "cus_test_1",
    )
    # Unknown types are stored and acknowledged.
    assert stored.status == StripeEvent.Status.IGNORED
    assert "not acted on" in stored.outcome

    again = post_event(client, endpoint, event)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert StripeEvent.objects.filter(stripe_id=event["id"]).count() == 1


def test_any_of_the_endpoint_secrets_verifies_during_rotation(client, endpoint):
    response = post_event(client, endpoint, stripe_event("ping.test", {"id": "x"}), secret="whsec_test_old")
    assert response.status_code == 200


@pytest.mark.parametrize(
    "how",
    ["other secret", "too old", "no header", "body changed"],
)
def test_a_bad_signature_is_400_and_stores_nothing(client, endpoint, how):
    event = stripe_event("refund.updated", {"id": "re_x", "object": "refund"})
    payload = json.dumps(event).encode()
    header = signature_header(payload, SECRET)
    if how == "other secret":
        header = signature_header(payload, "whsec_someone_else")
    elif how == "too old":
        header = signature_header(payload, SECRET, timestamp=int(time.time()) - endpoint.tolerance_seconds - 60)
    elif how == "body changed":
        payload = payload.replace(b"re_x", b"re_y")
    headers = {"HTTP_STRIPE_SIGNATURE": header} if how != "no header" else {}
    response = client.post(
        reverse("stripe_events:webhook", args=[endpoint.public_id]),
        data=payload,
        content_type="application/json",
        **headers,
    )
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == 400 and body["error_code"] == "signature_invalid" and body["message"]
    assert StripeEvent.objects.count() == 0


def test_unknown_or_disabled_endpoint_is_404(client, endpoint):
    event = stripe_event("ping.test", {"id": "x"})
    endpoint.enabled = False
    endpoint.save()
    assert post_event(client, endpoint, event).status_code == 404
    response = client.post("/webhooks/stripe/not-a-uuid/", data=b"{}", content_type="application/json")
    assert response.status_code == 404 and response.json()["error_code"] == "not_found"
    assert StripeEvent.objects.count() == 0


# --- our refunds settled by Stripe's events ---------------------------------------------------------


def test_pending_to_succeeded_settles_the_refund_without_waiting_for_polling(client, endpoint):
    bag = funded_bag()
    refund, shopper = pending_refund_at_stripe(bag)
    # Stripe settles the pending refund.
    SandboxRefund.objects.filter(stripe_id=shopper.gateway_refund_id).update(
        status="succeeded", fails_on_next_read=False
    )
    event = stripe_event(
        "refund.updated",
        refund_object(shopper.gateway_refund_id),
        previous_attributes={"status": "pending"},
    )
    assert post_event(client, endpoint, event).status_code == 200

    refund.refresh_from_db()
    shopper.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED
    assert shopper.status == ShopperRefund.Status.SUCCEEDED
    assert payment_of(bag).amount_refunded == refund.amount
    stored = StripeEvent.objects.get(stripe_id=event["id"])
    assert stored.status == StripeEvent.Status.PROCESSED
    assert list(stored.refunds.all()) == [refund]
    assert outbox_types(refund) == [EventType.REFUND_PROCESSING, EventType.REFUND_COMPLETED]


def test_refund_fails_async_pending_to_failed_through_the_event(client, endpoint):
    bag = funded_bag()
    refund, shopper = pending_refund_at_stripe(bag)
    event = stripe_event(
        "refund.failed",
        refund_object(shopper.gateway_refund_id, status="failed", failure_reason="expired_or_canceled_card"),
        previous_attributes={"status": "pending"},
    )
    assert post_event(client, endpoint, event).status_code == 200
    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED
    error = RefundError.objects.get(refund=refund)
    assert error.error_code == RefundErrorCode.SHOPPER_REFUND_FAILED
    assert outbox_types(refund) == [EventType.REFUND_PROCESSING, EventType.REFUND_FAILED]


def test_succeeded_then_failed_later_reopens_the_refund_for_an_operator(client, endpoint):
    bag = funded_bag(skus=((5000, 2),), shipping=500, tax=800, commission_rate="10.00")
    refund = record(bag)
    assert refund_process(refund_id=refund.pk).status == RefundStatus.COMPLETED
    shopper = ShopperRefund.objects.get(refund=refund)
    assert payment_of(bag).amount_refunded == 11300
    # Days later the card turns out closed: Stripe fails the refund and returns the money to the
    # balance (the sandbox does both when the refund is next read).
    SandboxRefund.objects.filter(stripe_id=shopper.gateway_refund_id).update(fails_on_next_read=True)
    event = stripe_event(
        "charge.refund.updated",
        refund_object(shopper.gateway_refund_id, status="failed", failure_reason="expired_or_canceled_card"),
        previous_attributes={"status": "succeeded"},
    )
    assert post_event(client, endpoint, event).status_code == 200

    refund.refresh_from_db()
    shopper.refresh_from_db()
    assert refund.status == RefundStatus.FAILED and refund.date_completed is None
    assert (shopper.status, shopper.failure_reason) == (ShopperRefund.Status.FAILED, "expired_or_canceled_card")
    error = RefundError.objects.get(refund=refund)
    assert (error.error_code, error.gateway_code, error.step) == (
        RefundErrorCode.SHOPPER_REFUND_FAILED,
        "expired_or_canceled_card",
        "SHOPPER_REFUND",
    )
    # The money consequences: the shopper is owed the refund, the transfers stay reversed.
    assert "113.00 USD is owed to the shopper" in error.error_message
    assert "merchant's transfer was reversed by 103.00 USD" in error.error_message
    assert "channel's transfer was reversed by 10.00 USD" in error.error_message
    assert set(TransferReversal.objects.filter(refund=refund).values_list("status", flat=True)) == {"COMPLETE"}
    assert {t.status for t in Transfer.objects.filter(bag=bag)} == {Transfer.Status.REVERSED}
    assert payment_of(bag).amount_refunded == 0
    changed = RefundEvent.objects.get(refund=refund, kind=RefundEvent.Kind.STATUS_CHANGED, actor="stripe")
    assert (changed.from_status, changed.to_status) == (RefundStatus.COMPLETED, RefundStatus.FAILED)
    failed_step = RefundEvent.objects.get(refund=refund, kind=RefundEvent.Kind.STEP_FAILED, actor="stripe")
    assert failed_step.data["shopper_unpaid"] == 11300
    assert {(r["recipient"], r["amount"]) for r in failed_step.data["reversed"]} == {
        (Recipient.MERCHANT, 10300),
        (Recipient.DEVELOPER, 1000),
    }
    # The channel is told, once.
    assert outbox_types(refund) == [
        EventType.REFUND_PROCESSING,
        EventType.REFUND_COMPLETED,
        EventType.REFUND_FAILED,
    ]

    # The same event again, the same news in another event (refund.failed), and an older event
    # arriving late (still "succeeded"): nothing changes twice.
    post_event(client, endpoint, event)
    post_event(
        client,
        endpoint,
        stripe_event("refund.failed", refund_object(shopper.gateway_refund_id)),
    )
    post_event(
        client,
        endpoint,
        stripe_event(
            "refund.updated",
            refund_object(shopper.gateway_refund_id, status="succeeded"),
            created=int(time.time()) - 3600,
        ),
    )
    assert RefundError.objects.filter(refund=refund).count() == 1
    assert RefundEvent.objects.filter(refund=refund, actor="stripe").count() == 2
    assert outbox_types(refund).count(EventType.REFUND_FAILED) == 1
    assert payment_of(bag).amount_refunded == 0
    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED

    # The operator retries (say the shopper gave a new card): only the shopper step is sent again,
    # under a new key generation; the reversals already made are not repeated.
    reversals_before = ledger.call_count("/v1/transfers", method="POST")
    refund_retry(refund=refund, note="Shopper's new card")
    assert refund_process(refund_id=refund.pk).status == RefundStatus.COMPLETED
    assert ledger.call_count("/v1/transfers", method="POST") == reversals_before
    assert [r.status for r in ledger.refunds_for(payment_of(bag).gateway_transaction_id)] == ["failed", "succeeded"]
    assert payment_of(bag).amount_refunded == 11300


def test_an_event_for_a_succeeded_refund_that_stays_succeeded_changes_nothing(client, endpoint):
    bag = funded_bag()
    refund = record(bag)
    refund_process(refund_id=refund.pk)
    shopper = ShopperRefund.objects.get(refund=refund)
    post_event(client, endpoint, stripe_event("refund.updated", refund_object(shopper.gateway_refund_id)))
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED
    assert RefundError.objects.filter(refund=refund).count() == 0
    stored = StripeEvent.objects.get()
    assert stored.status == StripeEvent.Status.PROCESSED and "nothing changes" in stored.outcome


# --- money moved outside the product ---------------------------------------------------------------


def test_a_dashboard_refund_is_recorded_as_external_and_flagged(client, endpoint):
    bag = funded_bag(skus=((5000, 2),), shipping=500, tax=800)
    payment = payment_of(bag)
    dashboard = get_gateway().refund_payment(
        payment_intent_id=payment.gateway_transaction_id, amount=3000, idempotency_key="dashboard-1", metadata={}
    )
    event = stripe_event("charge.refunded", charge_object(payment.gateway_transaction_id))
    assert post_event(client, endpoint, event).status_code == 200

    external = Refund.objects.get(bag=bag)
    assert (external.status, external.source, external.amount, external.external_id) == (
        RefundStatus.EXTERNAL,
        RefundSource.STRIPE_DASHBOARD,
        3000,
        f"stripe:{dashboard.id}",
    )
    assert not ShopperRefund.objects.filter(refund=external).exists()  # never processed
    assert payment_of(bag).amount_refunded == 3000
    finding = ReconciliationFinding.objects.get()
    assert (finding.kind, finding.refund, finding.state) == ("outside_refund", external, "OPEN")
    assert outbox_types(external) == [EventType.REFUND_EXTERNAL]

    # Still refundable stays true: only what is left can be refunded through the product.
    with pytest.raises(ValidationFailed) as refused:
        record(bag, amount=bag.total - 3000 + 1)
    assert "amount" in refused.value.field_errors
    assert record(bag, amount=bag.total - 3000).amount == bag.total - 3000

    # refund.created for the same refund, and the charge event again: recorded once, flagged once.
    post_event(client, endpoint, stripe_event("refund.created", refund_object(dashboard.id)))
    post_event(client, endpoint, stripe_event("charge.refunded", charge_object(payment.gateway_transaction_id)))
    assert Refund.objects.filter(bag=bag, source=RefundSource.STRIPE_DASHBOARD).count() == 1
    assert ReconciliationFinding.objects.count() == 1
    assert payment_of(bag).amount_refunded == 3000


def test_a_dashboard_refund_that_fails_later_is_flagged_once(client, endpoint):
    bag = funded_bag()
    payment = payment_of(bag)
    dashboard = get_gateway().refund_payment(
        payment_intent_id=payment.gateway_transaction_id, amount=2500, idempotency_key="dashboard-2", metadata={}
    )
    post_event(client, endpoint, stripe_event("refund.created", refund_object(dashboard.id)))
    external = Refund.objects.get(bag=bag, source=RefundSource.STRIPE_DASHBOARD)
    assert payment_of(bag).amount_refunded == 2500
    SandboxRefund.objects.filter(stripe_id=dashboard.id).update(status="failed", failure_reason="lost_or_stolen_card")
    failed = stripe_event("refund.failed", refund_object(dashboard.id))
    post_event(client, endpoint, failed)
    post_event(client, endpoint, stripe_event("refund.updated", refund_object(dashboard.id)))
    finding = ReconciliationFinding.objects.get(kind="outside_refund_failed")
    assert finding.refund == external and "lost_or_stolen_card" in finding.detail
    assert finding.times_seen == 2
    assert payment_of(bag).amount_refunded == 0
    assert StripeEvent.objects.get(stripe_id=failed["id"]).status == StripeEvent.Status.PROCESSED


def test_our_own_refund_in_charge_refunded_is_not_taken_for_an_outside_one(client, endpoint):
    bag = funded_bag()
    refund = record(bag)
    refund_process(refund_id=refund.pk)
    payment = payment_of(bag)
    post_event(client, endpoint, stripe_event("charge.refunded", charge_object(payment.gateway_transaction_id)))
    assert list(Refund.objects.filter(bag=bag)) == [refund]
    assert ReconciliationFinding.objects.count() == 0
    assert StripeEvent.objects.get().status == StripeEvent.Status.IGNORED


def test_a_transfer_reversal_made_outside_is_flagged_with_its_amount(client, endpoint):
    bag = funded_bag()
    merchant = Transfer.objects.get(bag=bag, recipient=Recipient.MERCHANT)
    reversal = get_gateway().reverse_transfer(
        transfer_id=merchant.gateway_transfer_id, amount=1500, idempotency_key="dashboard-rev", metadata={}
    )
    event = stripe_event("transfer.reversed", transfer_object(merchant.gateway_transfer_id))
    post_event(client, endpoint, event)
    post_event(client, endpoint, stripe_event("transfer.reversed", transfer_object(merchant.gateway_transfer_id)))
    finding = ReconciliationFinding.objects.get()
    assert (finding.kind, finding.bag, finding.times_seen) == ("outside_reversal", bag, 2)
    assert reversal.id in finding.detail and "15.00 USD" in finding.detail
    assert StripeEvent.objects.filter(status=StripeEvent.Status.PROCESSED).count() == 2


# --- disputes ---------------------------------------------------------------------------------------


def test_a_dispute_refuses_new_refunds_and_stops_refunds_in_flight(client, endpoint):
    bag = funded_bag()
    payment = payment_of(bag)
    in_flight = record(bag, amount=2000)
    ledger.dispute_charge(payment.gateway_transaction_id)
    event = stripe_event("charge.dispute.created", dispute_object(payment.gateway_transaction_id))
    assert post_event(client, endpoint, event).status_code == 200
    payment.refresh_from_db()
    assert (payment.dispute_id, payment.dispute_status) == ("dp_test_1", "needs_response")

    # A new refund is refused with a clear 409.
    with pytest.raises(ChargeDisputed) as refused:
        record(bag, amount=1000)
    assert refused.value.status_code == 409 and refused.value.error_code == "charge_disputed"

    # The refund in flight reverses the transfers and stops before the shopper step.
    calls_before = ledger.call_count("/v1/refunds", method="POST")
    assert refund_process(refund_id=in_flight.pk).status == RefundStatus.FAILED
    assert ledger.call_count("/v1/refunds", method="POST") == calls_before
    error = RefundError.objects.get(refund=in_flight)
    assert error.error_code == RefundErrorCode.CHARGE_DISPUTED
    assert ShopperRefund.objects.get(refund=in_flight).attempts == 0
    assert ReconciliationFinding.objects.get().kind == "dispute"

    # Closed in the network's favour: refunds are possible again; the older created event, arriving
    # late, does not reopen it.
    closed = stripe_event("charge.dispute.closed", dispute_object(payment.gateway_transaction_id, status="won"))
    post_event(client, endpoint, closed)
    late = stripe_event(
        "charge.dispute.created",
        dispute_object(payment.gateway_transaction_id),
        event_id="evt_late_created",
        created=int(time.time()) - 3600,
    )
    post_event(client, endpoint, late)
    payment.refresh_from_db()
    assert payment.dispute_status == "won"
    assert record(bag, amount=1000).status == RefundStatus.PROCESSING


def test_a_dispute_on_a_payment_we_do_not_know_is_ignored(client, endpoint):
    obj = {"id": "dp_other", "object": "dispute", "charge": "ch_other", "payment_intent": "pi_other", "status": "lost"}
    post_event(client, endpoint, stripe_event("charge.dispute.created", obj))
    assert StripeEvent.objects.get().status == StripeEvent.Status.IGNORED
