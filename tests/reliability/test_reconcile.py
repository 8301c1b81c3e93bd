"""manage.py reconcile_refunds: a clean world reports nothing (exit 0); each kind of difference
between our rows and the Stripe sandbox is reported (exit 1); the command writes nothing."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from payments.gateway import get_gateway
from payments.models import PaymentTransaction, Recipient, ShopperRefund, Transfer, TransferReversal
from refunds.models import Refund, RefundError, RefundEvent, RefundStatus
from refunds.services import refund_process
from refunds.tasks import process_refund
from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind
from tests.reliability.conftest import record
from tests.reliability.oracle import assert_completed_once, transfer_of
from tests.world import funded_bag

pytestmark = pytest.mark.django_db


def reconcile(*args) -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("reconcile_refunds", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + err.getvalue()
    return 0, out.getvalue()


def snapshot() -> list:
    """Everything the command could have written, by table."""
    return [
        list(model.objects.order_by("pk").values())
        for model in (Refund, ShopperRefund, TransferReversal, Transfer, PaymentTransaction, RefundError, RefundEvent)
    ]


def pi_of(bag) -> str:
    return PaymentTransaction.objects.get(order_id=bag.order_id).gateway_transaction_id


@pytest.fixture
def world(record_and_run):
    """A completed refund, a partial refund left PARTIALLY_COMPLETED (merchant balance too low), a
    refund FAILED on a disputed charge, and one recorded but not processed yet."""
    completed = record_and_run(funded_bag(), external_id="done")
    low = funded_bag()
    ledger.set_balance(transfer_of(low, Recipient.MERCHANT).destination_account_id, 0)
    partial = record_and_run(low, amount=4000, external_id="partial")
    disputed_bag = funded_bag()
    ledger.dispute_charge(pi_of(disputed_bag))
    failed = record_and_run(disputed_bag, external_id="disputed")
    waiting = record(funded_bag(), enqueue=False, external_id="waiting").refund
    assert [r.status for r in (completed, partial, failed)] == ["COMPLETED", "PARTIALLY_COMPLETED", "FAILED"]
    return {"completed": completed, "partial": partial, "failed": failed, "waiting": waiting}


def test_clean_world_reports_no_difference_and_writes_nothing(world):
    before = snapshot()
    code, output = reconcile()
    assert code == 0, output
    assert "Reconciled 4 refunds created in the last 30 days" in output
    assert "(4 payments, 8 transfers)" in output
    assert output.strip().endswith("No differences.")
    assert snapshot() == before


def test_edited_local_rows_are_reported(world):
    completed = world["completed"]
    reversal = TransferReversal.objects.get(refund=completed, transfer__recipient=Recipient.MERCHANT)
    TransferReversal.objects.filter(pk=reversal.pk).update(amount=reversal.amount - 1)
    ShopperRefund.objects.filter(refund=completed).update(gateway_refund_id="re_doesnotexist0000000000")
    before = snapshot()

    code, output = reconcile()

    assert code == 1
    lines = [line for line in output.splitlines() if f"refund {completed.pk} " in line]
    kinds = sorted(line.split()[0] for line in lines)
    assert kinds == ["amount_mismatch", "missing_at_stripe", "unrecorded"], output
    assert f"{reversal.amount - 1} USD here" in output
    assert "re_doesnotexist0000000000" in output
    assert "3 difference(s)." in output
    assert snapshot() == before


def test_status_and_total_mismatches_are_reported(world):
    partial = world["partial"]
    Refund.objects.filter(pk=partial.pk).update(status=RefundStatus.COMPLETED)
    Transfer.objects.filter(pk=transfer_of(world["completed"].bag, Recipient.DEVELOPER).pk).update(reversed_amount=0)

    code, output = reconcile()

    assert code == 1
    assert f"refund {partial.pk}" in output and "COMPLETED but not every step is done" in output
    assert "total_mismatch" in output and "0 here" in output


def test_money_moved_without_a_local_id_is_reported_until_recorded():
    """Stripe refunded the shopper and its answer was lost: Stripe holds a refund for a step our row
    has no id for, while the refund waits in PROCESSING with its outcome unknown (the engine never
    ends it so; see test_unknown_outcomes.py). Once the engine's look-up records it, the books match."""
    ledger.inject_fault(FaultKind.RESPONSE_LOST, path="/v1/refunds", method="POST")
    refund = record(funded_bag(), enqueue=False, external_id="lost").refund
    refund_process(refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.PROCESSING and refund.outcome_unknown_since is not None

    code, output = reconcile("--refund", str(refund.pk))
    assert code == 1
    assert "unrecorded" in output and "SHOPPER_REFUND" in output and "our row has no id" in output
    assert "total_mismatch" in output  # the payment's refunded amount is behind Stripe's too

    process_refund.delay(refund.pk, due=refund.next_attempt_at.isoformat())
    assert_completed_once(refund)
    assert reconcile("--refund", str(refund.pk))[0] == 0


def test_stripe_objects_we_do_not_know_are_reported(world):
    gateway = get_gateway()
    waiting_pi = pi_of(world["waiting"].bag)
    gateway.refund_payment(payment_intent_id=waiting_pi, amount=100, idempotency_key="dash-1", metadata={})
    gateway.refund_payment(
        payment_intent_id=waiting_pi,
        amount=200,
        idempotency_key="ghost-1",
        metadata={"refund_id": "987654", "step": "SHOPPER_REFUND"},
    )
    gateway.refund_payment(
        payment_intent_id=waiting_pi,
        amount=300,
        idempotency_key="double-1",
        metadata={"refund_id": str(world["waiting"].pk), "step": "SHOPPER_REFUND"},
    )

    code, output = reconcile()

    assert code == 1
    kinds = {line.split()[0] for line in output.splitlines()[1:-1]}
    assert {"outside_engine", "missing_locally", "unrecorded", "total_mismatch"} <= kinds, output
    assert "987654" in output and "no such refund here" in output


def test_duplicate_at_stripe_is_reported(record_and_run):
    bag = funded_bag()
    refund = record_and_run(bag, amount=2000, external_id="dup")
    get_gateway().refund_payment(
        payment_intent_id=pi_of(bag),
        amount=2000,
        idempotency_key="second-time",
        metadata={"refund_id": str(refund.pk), "step": "SHOPPER_REFUND"},
    )
    code, output = reconcile("--refund", str(refund.pk))
    assert code == 1
    assert "duplicate" in output and "more refunds for this step" in output


def test_arguments(world):
    with pytest.raises(CommandError, match="No refund with id 424242"):
        call_command("reconcile_refunds", "--refund", "424242", stdout=StringIO())
    Refund.objects.update(date_created="2020-01-01T00:00:00Z")
    code, output = reconcile("--since", "7")
    assert code == 0 and "Reconciled 0 refunds" in output
    assert reconcile("--since", "-1")[0] == 1


def test_stripe_unreachable_concludes_nothing(world):
    ledger.inject_fault(FaultKind.CONNECTION_ERROR, times=5, path="/v1/refunds", method="GET")
    code, output = reconcile()
    assert code == 2
    assert "Could not read from Stripe" in output and "difference" not in output
