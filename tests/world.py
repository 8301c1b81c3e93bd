"""Build orders that really exist in the Stripe sandbox: charged, with merchant and channel transfers.

Used by engine, reliability, API and portal tests that need money to have moved before a refund.
"""

from decimal import Decimal

from refunds.services.checkout import order_charge_and_transfer
from tests.factories import AppFactory, BagFactory, MerchantFactory, OrderFactory, OrderSkuFactory


def ensure_sandbox_account(account_id: str, balance: int = 0) -> None:
    from stripe_sandbox import ledger
    from stripe_sandbox.models import SandboxAccount

    if not SandboxAccount.objects.filter(stripe_id=account_id).exists():
        ledger.create_account(account_id=account_id, balance=balance, currency="usd")


def funded_bag(
    *,
    skus=((5000, 2),),
    shipping: int = 500,
    tax: int = 800,
    discount: int = 0,
    commission_rate: str = "10.00",
    app=None,
    merchant=None,
    currency: str = "USD",
    **bag_fields,
):
    """A bag whose SKUs (price, quantity) make its sub_total, charged and paid out in the sandbox."""
    app = app or AppFactory(commission_rate=Decimal(commission_rate))
    merchant = merchant or MerchantFactory(currency=currency)
    ensure_sandbox_account(app.stripe_account_id)
    ensure_sandbox_account(merchant.stripe_account_id)
    sub_total = sum(price * qty for price, qty in skus)
    order = OrderFactory(app=app, currency=currency)
    bag = BagFactory(
        order=order,
        merchant=merchant,
        currency=currency,
        sub_total=sub_total,
        shipping_total=shipping,
        tax_total=tax,
        discount_total=discount,
        commission_rate=Decimal(commission_rate),
        **bag_fields,
    )
    for price, qty in skus:
        OrderSkuFactory(bag=bag, price=price, quantity=qty)
    order.sub_total, order.shipping_total, order.tax_total = bag.sub_total, bag.shipping_total, bag.tax_total
    order.discount_total, order.total = bag.discount_total, bag.total
    order.save()
    order_charge_and_transfer(order=order)
    bag.refresh_from_db()
    return bag
