"""The oracle every reliability test ends with: what the Stripe sandbox holds, compared with our rows.

`money_at_stripe(bag)` reads the sandbox's own tables (never through the SDK or our engine), so a test
can assert "exactly one refund, one reversal per transfer, these sums, these balances" whatever the
code under test believed. `assert_local_matches_stripe(refund)` checks that every step row we marked
done points at a real Stripe object with the same amount, and that nothing at Stripe is unrecorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from payments.models import PaymentTransaction, Recipient, ShopperRefund, Transfer, TransferReversal
from refunds.models import Bag, Refund, RefundError, RefundEvent
from stripe_sandbox import ledger


@dataclass(frozen=True)
class StripeMoney:
    refunds: list  # SandboxRefund rows of the bag's payment intent, oldest first
    merchant_reversals: list  # SandboxTransferReversal rows of the merchant transfer
    channel_reversals: list
    merchant_balance: int  # connected account's available balance
    channel_balance: int
    charge_amount: int
    charge_refunded: int  # the payment intent's amount_refunded (failed refunds give it back)

    @property
    def succeeded_refunds(self) -> list:
        return [r for r in self.refunds if r.status == "succeeded"]

    @property
    def refunded_sum(self) -> int:
        return sum(r.amount for r in self.succeeded_refunds)

    @property
    def merchant_reversed(self) -> int:
        return sum(r.amount for r in self.merchant_reversals)

    @property
    def channel_reversed(self) -> int:
        return sum(r.amount for r in self.channel_reversals)


def transfer_of(bag: Bag, recipient: str) -> Transfer:
    return Transfer.objects.get(bag=bag, recipient=recipient)


def money_at_stripe(bag: Bag) -> StripeMoney:
    payment = PaymentTransaction.objects.get(order_id=bag.order_id)
    merchant = transfer_of(bag, Recipient.MERCHANT)
    channel = transfer_of(bag, Recipient.DEVELOPER)
    intent = ledger.payment_intent(payment.gateway_transaction_id)
    return StripeMoney(
        refunds=ledger.refunds_for(payment.gateway_transaction_id),
        merchant_reversals=ledger.reversals_for(merchant.gateway_transfer_id),
        channel_reversals=ledger.reversals_for(channel.gateway_transfer_id),
        merchant_balance=ledger.balance(merchant.destination_account_id),
        channel_balance=ledger.balance(channel.destination_account_id),
        charge_amount=intent.amount,
        charge_refunded=intent.amount_refunded,
    )


def step_rows(refund: Refund) -> tuple[ShopperRefund | None, dict[str, TransferReversal]]:
    shopper = ShopperRefund.objects.filter(refund=refund).first()
    reversals = {
        r.transfer.recipient: r for r in TransferReversal.objects.filter(refund=refund).select_related("transfer")
    }
    return shopper, reversals


def error_codes(refund: Refund) -> list[int]:
    return list(RefundError.objects.filter(refund=refund).order_by("pk").values_list("error_code", flat=True))


def event_kinds(refund: Refund) -> list[str]:
    return list(RefundEvent.objects.filter(refund=refund).order_by("pk").values_list("kind", flat=True))


def objects_for(rows: list, refund: Refund) -> list:
    """The Stripe objects whose metadata names this refund."""
    return [row for row in rows if row.metadata.get("refund_id") == str(refund.pk)]


def assert_completed_once(refund: Refund) -> StripeMoney:
    """A COMPLETED refund: one succeeded Stripe refund and one reversal per planned transfer, each
    recorded locally with its gateway id and amount, and the connected balances down by exactly that."""
    refund.refresh_from_db()
    assert refund.status == "COMPLETED", (refund.status, list(refund.errors.values_list("error_message", flat=True)))
    stripe = money_at_stripe(refund.bag)
    shopper, reversals = step_rows(refund)
    mine = objects_for(stripe.refunds, refund)
    assert [(r.stripe_id, r.amount, r.status) for r in mine] == [
        (shopper.gateway_refund_id, refund.amount, "succeeded")
    ]
    assert shopper.status == ShopperRefund.Status.SUCCEEDED
    for recipient, at_stripe in (
        (Recipient.MERCHANT, stripe.merchant_reversals),
        (Recipient.DEVELOPER, stripe.channel_reversals),
    ):
        ours = objects_for(at_stripe, refund)
        row = reversals.get(recipient)
        if row is None:
            assert ours == []
            continue
        assert row.status == TransferReversal.Status.COMPLETE
        assert [(r.stripe_id, r.amount) for r in ours] == [(row.gateway_reversal_id, row.amount)]
    return stripe
