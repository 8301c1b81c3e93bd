"""The sandbox's refund lifecycle on its clock, balance transactions, disputes, `expand[]`, and the
signed events it emits and delivers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import responses
import stripe
from django.db import transaction

from stripe_sandbox import ledger
from stripe_sandbox.events import MAX_DELIVERY_ATTEMPTS
from stripe_sandbox.models import FaultKind, SandboxEvent
from stripe_sandbox.tasks import sweep_sandbox
from tests.payments.sandbox_requests import pay, refund, reverse, transfer

pytestmark = pytest.mark.django_db

SECRET = "whsec_sandbox_test_secret"
received: list[tuple[bytes, dict]] = []


def capturing_receiver(payload: bytes, headers: dict) -> None:
    received.append((payload, headers))


def failing_receiver(payload: bytes, headers: dict) -> None:
    raise ConnectionError("receiver down")


@pytest.fixture
def receiver(settings):
    received.clear()
    settings.STRIPE_SANDBOX_WEBHOOK_SECRET = SECRET
    settings.STRIPE_SANDBOX_WEBHOOK_URL = ""
    settings.STRIPE_SANDBOX_WEBHOOK_RECEIVER = "tests.payments.test_sandbox_lifecycle.capturing_receiver"
    yield received
    received.clear()


def settings_module_root() -> Path:
    return Path(__file__).resolve().parents[2]


def delivered_events(captured) -> list[stripe.Event]:
    """Each captured delivery, verified the way a Stripe webhook endpoint verifies it."""
    return [
        stripe.Webhook.construct_event(payload, headers["Stripe-Signature"], SECRET) for payload, headers in captured
    ]


def test_pending_refund_succeeds_when_its_time_comes(stripe_client):
    intent = pay(stripe_client, 10_000)
    ledger.inject_fault(FaultKind.REFUND_PENDING, settle_after_seconds=120)
    created = refund(stripe_client, intent.id, 4_000)

    ledger.advance_clock(119)
    early = stripe_client.v1.refunds.retrieve(created.id)
    ledger.advance_clock(1)
    listed = stripe_client.v1.refunds.list(params={"payment_intent": intent.id})

    assert (created.status, created.pending_reason) == ("pending", "processing")
    assert early.status == "pending"
    assert [(r.id, r.status, r.pending_reason) for r in listed.data] == [(created.id, "succeeded", None)]
    assert ledger.payment_intent(intent.id).amount_refunded == 4_000
    updated = ledger.events("refund.updated")
    assert len(updated) == 1 and updated[0].body["data"]["previous_attributes"]["status"] == "pending"
    assert [e.type for e in ledger.events()][-2:] == ["refund.updated", "charge.refund.updated"]


@pytest.mark.parametrize("reason", ["insufficient_funds", "declined", "merchant_request", "unknown"])
def test_pending_refund_fails_with_the_faults_reason_and_returns_the_money(stripe_client, reason):
    intent = pay(stripe_client, 10_000)
    ledger.inject_fault(FaultKind.REFUND_PENDING_FAILS, failure_reason=reason, settle_after_seconds=10)
    created = refund(stripe_client, intent.id, 10_000)
    assert ledger.balance() == 0

    ledger.advance_clock(10)
    failed = stripe_client.v1.refunds.retrieve(
        created.id, params={"expand": ["failure_balance_transaction", "balance_transaction"]}
    )

    assert (failed.status, failed.failure_reason) == ("failed", reason)
    assert failed.balance_transaction.type == "refund" and failed.balance_transaction.amount == -10_000
    assert failed.failure_balance_transaction.type == "refund_failure"
    assert failed.failure_balance_transaction.amount == 10_000
    assert failed.failure_balance_transaction.source == created.id
    assert ledger.payment_intent(intent.id).amount_refunded == 0 and ledger.balance() == 10_000
    assert [e.body["data"]["object"]["failure_reason"] for e in ledger.events("refund.failed")] == [reason]


def test_pending_refund_canceled(stripe_client):
    intent = pay(stripe_client, 10_000)
    ledger.inject_fault(FaultKind.REFUND_PENDING_CANCELED, settle_after_seconds=5)
    created = refund(stripe_client, intent.id, 3_000)

    ledger.advance_clock(5)
    canceled = stripe_client.v1.refunds.retrieve(created.id)

    assert canceled.status == "canceled" and canceled.failure_balance_transaction is None
    assert ledger.payment_intent(intent.id).amount_refunded == 0 and ledger.balance() == 10_000
    assert refund(stripe_client, intent.id, 10_000, key="again").status == "succeeded"  # refundable again


def test_test_card_refund_succeeds_then_fails_later_by_the_sweep(stripe_client):
    """pm_card_refundFail (4000000000005126): the refund succeeds, then fails some time later."""
    intent = pay(stripe_client, 10_000, payment_method="pm_card_refundFail")
    created = refund(stripe_client, intent.id, 10_000)
    assert created.status == "succeeded"
    assert ledger.sweep().refunds_settled == 0  # not due yet

    ledger.advance_clock(30)
    assert ledger.sweep().refunds_settled == 1
    assert ledger.sweep().refunds_settled == 0  # exactly once

    later = stripe_client.v1.refunds.retrieve(created.id)
    assert (later.status, later.failure_reason) == ("failed", "expired_or_canceled_card")
    failed_event = ledger.events("refund.failed")[0].body
    assert failed_event["data"]["previous_attributes"]["status"] == "succeeded"
    assert failed_event["request"] == {"id": None, "idempotency_key": None}


def test_test_card_refund_pending_then_succeeded(stripe_client):
    """pm_card_pendingRefund (4000000000007726): pending first, succeeded some time later."""
    intent = pay(stripe_client, 10_000, payment_method="pm_card_pendingRefund")
    created = refund(stripe_client, intent.id, 10_000)
    ledger.advance_clock(30)

    assert created.status == "pending"
    assert stripe_client.v1.refunds.retrieve(created.id).status == "succeeded"


def test_scheduled_failure_of_a_succeeded_refund(stripe_client):
    intent = pay(stripe_client, 10_000)
    created = refund(stripe_client, intent.id, 2_000)

    ledger.schedule_refund(created.id, "failed", after_seconds=60, failure_reason="lost_or_stolen_card")
    ledger.advance_clock(61)
    later = stripe_client.v1.refunds.retrieve(created.id)

    assert (created.status, later.status, later.failure_reason) == ("succeeded", "failed", "lost_or_stolen_card")
    with pytest.raises(ValueError):
        ledger.schedule_refund(created.id, "failed", failure_reason="not_a_reason")


def test_dispute_fails_pending_refunds_and_announces_itself(stripe_client):
    intent = pay(stripe_client, 10_000)
    ledger.inject_fault(FaultKind.REFUND_PENDING, settle_after_seconds=3_600)
    pending = refund(stripe_client, intent.id, 1_000)

    dispute_id = ledger.dispute_charge(intent.id)
    failed = stripe_client.v1.refunds.retrieve(pending.id)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        refund(stripe_client, intent.id, 1_000, key="after-dispute")
    ledger.close_dispute(dispute_id, "lost")

    assert (failed.status, failed.failure_reason) == ("failed", "charge_for_pending_refund_disputed")
    assert refused.value.code == "charge_disputed"
    created_event, closed_event = ledger.events("charge.dispute.created")[0], ledger.events("charge.dispute.closed")[0]
    assert created_event.body["data"]["object"]["charge"] == intent.latest_charge
    assert closed_event.body["data"]["object"]["status"] == "lost"
    assert closed_event.body["data"]["previous_attributes"] == {"status": "needs_response"}
    assert stripe_client.v1.charges.retrieve(intent.latest_charge).disputed is True


def test_balance_transactions_account_for_the_platform_balance(stripe_client):
    merchant = ledger.create_account()
    intent = pay(stripe_client, 10_000)
    tr = transfer(stripe_client, merchant, 6_000, source_transaction=intent.latest_charge)
    reversal = reverse(stripe_client, tr.id, 2_000)
    rf = refund(stripe_client, intent.id, 5_000)
    charge = stripe_client.v1.charges.retrieve(intent.latest_charge)

    moves = {
        obj.id: stripe_client.v1.balance_transactions.retrieve(obj.balance_transaction)
        for obj in (charge, tr, reversal, rf)
    }

    assert [(t.type, t.amount, t.source) for t in moves.values()] == [
        ("charge", 10_000, charge.id),
        ("transfer", -6_000, tr.id),
        ("transfer_refund", 2_000, reversal.id),
        ("refund", -5_000, rf.id),
    ]
    assert sum(t.net for t in moves.values()) == ledger.balance() == 1_000


def test_expand_is_generic_and_refuses_what_it_cannot_expand(stripe_client):
    merchant = ledger.create_account()
    intent = pay(stripe_client, 10_000)
    tr = transfer(stripe_client, merchant, 6_000, source_transaction=intent.latest_charge)
    rf = refund(stripe_client, intent.id, 1_000)

    expanded = stripe_client.v1.refunds.retrieve(
        rf.id, params={"expand": ["charge.balance_transaction", "payment_intent.latest_charge"]}
    )
    listed = stripe_client.v1.refunds.list(params={"payment_intent": intent.id, "expand": ["data.charge"]})
    expanded_transfer = stripe_client.v1.transfers.retrieve(tr.id, params={"expand": ["source_transaction"]})
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.refunds.retrieve(rf.id, params={"expand": ["metadata"]})

    assert expanded.charge.id == intent.latest_charge and expanded.charge.balance_transaction.type == "charge"
    assert expanded.payment_intent.latest_charge.id == intent.latest_charge
    assert listed.data[0].charge.object == "charge"
    assert expanded_transfer.source_transaction.id == intent.latest_charge
    assert refused.value.http_status == 400 and refused.value.param == "expand"


def test_events_are_delivered_signed_after_commit(stripe_client, receiver, django_capture_on_commit_callbacks):
    intent = pay(stripe_client, 10_000)
    with django_capture_on_commit_callbacks(execute=True):
        created = refund(stripe_client, intent.id, 4_000, key="signed")

    events = delivered_events(receiver)
    assert [e.type for e in events] == ["refund.created", "charge.refunded"]
    assert events[0].data.object.id == created.id
    assert events[0].request.idempotency_key.endswith("signed") and events[0].request.id.startswith("req_")
    assert events[1].data.previous_attributes.to_dict() == {"amount_refunded": 0}  # partial: still not refunded
    assert receiver[0][1]["Content-Type"] == "application/json"
    assert {e.delivery for e in ledger.events()} == {SandboxEvent.Delivery.DELIVERED}
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(receiver[0][0], receiver[0][1]["Stripe-Signature"], "whsec_other")


def test_nothing_is_delivered_for_a_rolled_back_change(stripe_client, receiver, django_capture_on_commit_callbacks):
    intent = pay(stripe_client, 10_000)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        refund(stripe_client, intent.id, 4_000)
        raise RuntimeError("the caller's transaction rolls back")

    assert receiver == [] and ledger.events() == []


def test_failing_receiver_never_breaks_the_call_and_is_retried_boundedly(
    stripe_client, settings, django_capture_on_commit_callbacks
):
    settings.STRIPE_SANDBOX_WEBHOOK_RECEIVER = "tests.payments.test_sandbox_lifecycle.failing_receiver"
    intent = pay(stripe_client, 10_000)
    with django_capture_on_commit_callbacks(execute=True):
        created = refund(stripe_client, intent.id, 1_000)
    for _ in range(MAX_DELIVERY_ATTEMPTS + 2):
        ledger.sweep()

    assert created.status == "succeeded"
    for event in ledger.events():
        assert (event.delivery, event.delivery_attempts) == (SandboxEvent.Delivery.FAILED, MAX_DELIVERY_ATTEMPTS)
        assert "receiver down" in event.last_delivery_error


@responses.activate
def test_events_are_posted_to_the_webhook_url(stripe_client, settings, django_capture_on_commit_callbacks):
    settings.STRIPE_SANDBOX_WEBHOOK_SECRET = SECRET
    settings.STRIPE_SANDBOX_WEBHOOK_URL = "http://localhost:8000/webhooks/stripe/we_1/"
    responses.post(settings.STRIPE_SANDBOX_WEBHOOK_URL, status=503)
    merchant = ledger.create_account()
    intent = pay(stripe_client, 10_000)
    tr = transfer(stripe_client, merchant, 6_000)
    with django_capture_on_commit_callbacks(execute=True):
        reverse(stripe_client, tr.id, 6_000)
    responses.replace(responses.POST, settings.STRIPE_SANDBOX_WEBHOOK_URL, status=200)
    ledger.sweep()

    posted = [call.request for call in responses.calls]
    assert len(posted) == 2 and posted[0].body == posted[1].body
    event = stripe.Webhook.construct_event(posted[1].body, posted[1].headers["Stripe-Signature"], SECRET)
    assert event.type == "transfer.reversed" and event.data.object.reversed is True
    assert event.data.previous_attributes.to_dict() == {"amount_reversed": 0, "reversed": False}
    assert ledger.events()[0].delivery == SandboxEvent.Delivery.DELIVERED
    assert intent.status == "succeeded"


def test_events_api_retrieves_filters_and_pages(stripe_client):
    intent = pay(stripe_client, 10_000)
    ids = [refund(stripe_client, intent.id, 100, key=f"r-{n}").id for n in range(3)]
    first = ledger.events("refund.created")[0]
    ledger.advance_clock(100)
    refund(stripe_client, intent.id, 100, key="r-late")

    page = stripe_client.v1.events.list(params={"type": "refund.created", "limit": 2})
    everything = list(page.auto_paging_iter())
    charges = stripe_client.v1.events.list(params={"type": "charge.*"})
    late = stripe_client.v1.events.list(params={"created": {"gte": first.body["created"] + 50}})
    one = stripe_client.v1.events.retrieve(first.stripe_id)

    assert page.has_more is True and len(page.data) == 2
    assert [e.data.object.id for e in everything][1:] == list(reversed(ids))
    assert {e.type for e in charges.data} == {"charge.refunded"} and len(charges.data) == 4
    assert {e.type for e in late.data} == {"refund.created", "charge.refunded"}
    assert one.id == first.stripe_id and json.loads(json.dumps(one.to_dict()))["object"] == "event"


BEAT = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps(sorted(settings.CELERY_BEAT_SCHEDULE)))
"""


@pytest.mark.parametrize(("api_key", "scheduled"), [("", True), ("sk_test_51Abc", False)])
def test_the_sweep_is_on_beat_only_while_the_sandbox_is_in_use(api_key, scheduled):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DJANGO_SETTINGS_MODULE": "violet_refunds.settings"}
    if api_key:
        env["STRIPE_API_KEY"] = api_key
    result = subprocess.run(
        [sys.executable, "-c", BEAT], cwd=settings_module_root(), env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert ("sweep-stripe-sandbox" in json.loads(result.stdout.strip().splitlines()[-1])) is scheduled


def test_the_beat_task_settles_due_refunds(stripe_client):
    intent = pay(stripe_client, 10_000)
    ledger.inject_fault(FaultKind.REFUND_PENDING, settle_after_seconds=60)
    created = refund(stripe_client, intent.id, 1_000)
    ledger.advance_clock(60)

    assert sweep_sandbox() == {"refunds_settled": 1, "deliveries_retried": 0}
    assert [r.status for r in ledger.refunds_for(intent.id)] == ["succeeded"]
    assert ledger.events("refund.updated")[0].body["data"]["object"]["id"] == created.id


def test_the_admin_shows_events_balance_transactions_and_disputes(stripe_client, admin_client):
    intent = pay(stripe_client, 10_000, payment_method="pm_card_createDispute")

    for model in ("sandboxevent", "sandboxbalancetransaction", "sandboxdispute", "sandboxrefund"):
        page = admin_client.get(f"/admin/stripe_sandbox/{model}/")
        assert page.status_code == 200, model
    assert intent.latest_charge in admin_client.get("/admin/stripe_sandbox/sandboxbalancetransaction/").content.decode()


def test_events_emitted_in_a_transaction_that_never_commits_can_be_delivered_by_hand(stripe_client, receiver):
    """A test's own transaction never commits, so no on-commit delivery runs: deliver_events sends them."""
    intent = pay(stripe_client, 10_000)
    refund(stripe_client, intent.id, 1_000)
    assert receiver == []

    assert ledger.deliver_events() == 2
    assert [e.type for e in delivered_events(receiver)] == ["refund.created", "charge.refunded"]
    assert ledger.deliver_events() == 0  # delivered once


def test_the_clock_freezes_advances_and_returns_to_real_time(stripe_client):
    from datetime import UTC, datetime

    ledger.freeze_clock(datetime(2030, 1, 1, tzinfo=UTC))
    intent = pay(stripe_client, 10_000)
    created = refund(stripe_client, intent.id, 1_000)
    ledger.advance_clock(3_600)

    assert created.created == intent.created == int(datetime(2030, 1, 1, tzinfo=UTC).timestamp())
    assert stripe_client.v1.balance_transactions.retrieve(created.balance_transaction).created == created.created
    assert ledger.now() == datetime(2030, 1, 1, 1, tzinfo=UTC)
    ledger.real_time_clock()
    assert ledger.now().year < 2030
