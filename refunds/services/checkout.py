"""Demo checkout: charge the shopper for an order and pay out each bag.

The refund product does not take payments itself in production (checkout does); this service
builds the same Stripe state for the demo world (`seed_demo`), the benchmarks and the tests, through
the same gateway and with idempotency keys derived from our ids, so running it twice charges once.
It lives in refunds, next to the orders it reads: payments knows nothing of orders and bags.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from payments.gateway import get_gateway
from payments.models import PaymentTransaction, Recipient, Transfer
from payments.splits import commission_amount
from refunds.amounts import bag_totals
from refunds.models import Order


@dataclass(frozen=True)
class FundedOrder:
    payment: PaymentTransaction
    transfers: list[Transfer]


def order_charge_and_transfer(*, order: Order) -> FundedOrder:
    """Charge order.total to the shopper, then transfer each bag's share: the commission on its
    sub_total to the channel's connected account and the rest to the merchant's."""
    gateway = get_gateway()
    payment = PaymentTransaction.objects.filter(order=order).first()
    if payment is None:
        intent = gateway.create_payment_intent(
            amount=order.total,
            currency=order.currency,
            idempotency_key=f"order-{order.pk}-charge",
            metadata={"order_id": str(order.pk)},
            receipt_email=order.customer_email or None,
        )
        payment, _ = PaymentTransaction.objects.get_or_create(
            order=order,
            defaults={
                "gateway_transaction_id": intent.id,
                "gateway_charge_id": intent.charge_id,
                "amount": intent.amount,
                "currency": intent.currency,
            },
        )
    transfers: list[Transfer] = []
    for bag in order.bags.select_related("merchant").order_by("pk"):
        commission = commission_amount(bag_totals(bag))
        shares = (
            (Recipient.MERCHANT, bag.merchant.stripe_account_id, bag.total - commission),
            (Recipient.DEVELOPER, order.app.stripe_account_id, commission),
        )
        for recipient, account, amount in shares:
            if amount <= 0 or not account:
                continue
            existing = Transfer.objects.filter(bag=bag, recipient=recipient).first()
            if existing:
                transfers.append(existing)
                continue
            result = gateway.create_transfer(
                amount=amount,
                currency=bag.currency,
                destination=account,
                idempotency_key=f"bag-{bag.pk}-transfer-{recipient.lower()}",
                source_transaction=payment.gateway_charge_id or None,
                transfer_group=f"order-{order.pk}",
                metadata={"order_id": str(order.pk), "bag_id": str(bag.pk), "recipient": recipient},
            )
            with transaction.atomic():
                transfer, _ = Transfer.objects.get_or_create(
                    bag=bag,
                    recipient=recipient,
                    defaults={
                        "payment_transaction": payment,
                        "destination_account_id": account,
                        "gateway_transfer_id": result.id,
                        "bag_amount": amount,
                        "bag_currency": bag.currency,
                        "amount": result.amount,
                        "currency": result.currency,
                    },
                )
            transfers.append(transfer)
    return FundedOrder(payment=payment, transfers=transfers)
