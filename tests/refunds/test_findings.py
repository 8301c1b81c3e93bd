"""The nightly reconciliation opens one operator finding per difference with Stripe, never twice."""

import datetime as dt

import pytest
from django.contrib.admin import helpers
from django.urls import reverse

from payments.gateway import get_gateway
from payments.models import PaymentTransaction
from refunds.models import ReconciliationFinding, RefundSource
from refunds.services import refund_process, refund_record
from refunds.services.findings import findings_from_reconciliation
from refunds.tasks import reconcile_refunds_nightly
from tests.factories import OperatorFactory, ReconciliationFindingFactory
from tests.world import funded_bag

pytestmark = pytest.mark.django_db


def completed_refund(bag, amount=2000):
    refund = refund_record(bag=bag, source=RefundSource.CHANNEL_API, actor="test", amount=amount, enqueue=False).refund
    refund_process(refund_id=refund.pk)
    return refund


def test_each_difference_opens_one_finding_and_a_second_run_opens_none(settings):
    settings.RECONCILIATION_DAYS = 3
    bag = funded_bag()
    refund = completed_refund(bag)
    payment = PaymentTransaction.objects.get(order=bag.order)
    # Our books disagree with Stripe: the payment's refunded total was lost here.
    PaymentTransaction.objects.filter(pk=payment.pk).update(amount_refunded=0)
    # And a refund was made in the Stripe Dashboard (no event arrived for it).
    dashboard = get_gateway().refund_payment(
        payment_intent_id=payment.gateway_transaction_id, amount=500, idempotency_key="dash-night", metadata={}
    )

    assert reconcile_refunds_nightly() == 2
    findings = {f.kind: f for f in ReconciliationFinding.objects.all()}
    assert set(findings) == {"total_mismatch", "outside_engine"}
    assert all(f.origin == ReconciliationFinding.Origin.RECONCILIATION for f in findings.values())
    assert all(f.state == ReconciliationFinding.State.OPEN for f in findings.values())
    assert findings["outside_engine"].key == f"stripe-outside-refund:{dashboard.id}"
    assert payment.gateway_transaction_id in findings["total_mismatch"].detail
    assert refund.pk  # the refund itself agrees with Stripe: no finding names it

    again = findings_from_reconciliation()
    assert (again.opened, again.seen_again) == (0, 2)
    assert ReconciliationFinding.objects.count() == 2
    assert set(ReconciliationFinding.objects.values_list("times_seen", flat=True)) == {2}


def test_a_refund_outside_the_window_is_not_compared(settings):
    bag = funded_bag()
    refund = completed_refund(bag)
    payment = PaymentTransaction.objects.get(order=bag.order)
    PaymentTransaction.objects.filter(pk=payment.pk).update(amount_refunded=0)
    type(refund).objects.filter(pk=refund.pk).update(date_created=refund.date_created - dt.timedelta(days=10))
    settings.RECONCILIATION_DAYS = 7
    assert reconcile_refunds_nightly() == 0
    assert not ReconciliationFinding.objects.exists()


def test_an_operator_resolves_findings_with_a_note_after_confirming(client):
    client.force_login(OperatorFactory())
    finding = ReconciliationFindingFactory()
    url = reverse("admin:refunds_reconciliationfinding_changelist")
    data = {"action": "resolve_selected_findings", helpers.ACTION_CHECKBOX_NAME: [finding.pk]}
    page = client.post(url, data)
    assert "Resolve 1 finding(s)" in page.content.decode()
    no_note = client.post(url, {**data, "confirm": "yes"})
    assert "Say how the difference was dealt with." in no_note.content.decode()
    finding.refresh_from_db()
    assert finding.state == ReconciliationFinding.State.OPEN

    client.post(url, {**data, "confirm": "yes", "note": "Refund made by support on the phone; recorded."})
    finding.refresh_from_db()
    assert finding.state == ReconciliationFinding.State.RESOLVED
    assert finding.resolution_note == "Refund made by support on the phone; recorded."
    assert finding.resolved_by is not None


def test_open_findings_are_counted_on_the_admin_index(client):
    client.force_login(OperatorFactory())
    ReconciliationFindingFactory()
    ReconciliationFindingFactory(state=ReconciliationFinding.State.RESOLVED)
    page = client.get(reverse("admin:index")).content.decode()
    assert "Open findings with Stripe" in page
    assert reverse("admin:refunds_reconciliationfinding_changelist") + "?state__exact=OPEN" in page


def test_beat_runs_the_reconciliation_every_night(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["reconcile-refunds-nightly"]
    assert entry["task"] == "refunds.tasks.reconcile_refunds_nightly"
    assert entry["schedule"].hour == {settings.RECONCILIATION_HOUR_UTC}
    assert entry["schedule"].minute == {17}
    assert settings.CELERY_BEAT_SCHEDULE["requeue-stripe-events"]["task"] == "stripe_events.tasks.requeue_stripe_events"
