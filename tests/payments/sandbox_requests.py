"""Stripe calls the sandbox tests make through the official SDK: pay, refund, transfer, reverse."""


def pay(client, amount=10_000, *, key="pay-1", currency="usd", payment_method="pm_card_visa", **extra):
    return client.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": currency,
            "confirm": True,
            "payment_method": payment_method,
            **extra,
        },
        options={"idempotency_key": key},
    )


def refund(client, pi_id, amount=None, *, key="refund-1", metadata=None):
    params = {"payment_intent": pi_id, "metadata": metadata or {}}
    if amount is not None:
        params["amount"] = amount
    return client.v1.refunds.create(params=params, options={"idempotency_key": key})


def transfer(client, destination, amount=6_000, *, key="transfer-1", **extra):
    return client.v1.transfers.create(
        params={"amount": amount, "currency": "usd", "destination": destination, **extra},
        options={"idempotency_key": key},
    )


def reverse(client, transfer_id, amount=None, *, key="reverse-1"):
    params = {"metadata": {"refund_id": "7"}}
    if amount is not None:
        params["amount"] = amount
    return client.v1.transfers.reversals.create(transfer_id, params=params, options={"idempotency_key": key})
