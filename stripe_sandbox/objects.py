"""Render sandbox rows as the JSON objects Stripe's API returns.

Every object carries every field stripe-python's class for it declares (null where Stripe returns
null for a card payment on a platform account), and nothing Stripe does not have; the conformance
test (tests/payments/test_sandbox_conformance.py) checks this against the installed SDK. Expandable
fields are rendered as ids; `expansion` replaces them with objects when a request asks.
"""

import hashlib

from .models import (
    SandboxAccount,
    SandboxBalance,
    SandboxBalanceTransaction,
    SandboxDispute,
    SandboxPaymentIntent,
    SandboxRefund,
    SandboxTransfer,
    SandboxTransferReversal,
)

EMBEDDED_LIST_SIZE = 10

# The card behind each of Stripe's test PaymentMethods the sandbox knows (brand, last4); the
# numbers are those of Stripe's testing documentation.
TEST_CARDS = {
    "pm_card_visa": ("visa", "4242"),
    "pm_card_mastercard": ("mastercard", "4444"),
    "pm_card_amex": ("amex", "8431"),
    "pm_card_chargeDeclined": ("visa", "0002"),
    "pm_card_createDispute": ("visa", "0259"),
    "pm_card_refundFail": ("visa", "5126"),
    "pm_card_pendingRefund": ("visa", "7726"),
}


def _acquirer_reference(refund_id: str) -> str:
    """A stable 23-digit acquirer reference number (ARN) for a processed card refund, as banks issue."""
    return str(int(hashlib.sha256(refund_id.encode()).hexdigest(), 16))[:23]


def _ts(value) -> int:
    return int(value.timestamp())


def _nulls(*names: str) -> dict:
    """Fields that Stripe returns as null for what the sandbox emulates (card payments, no Customer)."""
    return dict.fromkeys(names)


def _embedded_list(items: list, *, url: str, render) -> dict:
    """An embedded list, as Stripe embeds one: no `total_count`."""
    return {
        "object": "list",
        "data": [render(item) for item in items[:EMBEDDED_LIST_SIZE]],
        "has_more": len(items) > EMBEDDED_LIST_SIZE,
        "url": url,
    }


def payment_method_id(pi: SandboxPaymentIntent) -> str | None:
    """The PaymentMethod Stripe created from the test token (rows older than that column keep the token)."""
    return pi.payment_method_id or pi.payment_method or None


def payment_intent(pi: SandboxPaymentIntent) -> dict:
    succeeded = pi.status == "succeeded"
    return {
        "id": pi.stripe_id,
        "object": "payment_intent",
        "amount": pi.amount,
        "amount_capturable": 0,
        "amount_received": pi.amount if succeeded else 0,
        "capture_method": "automatic",
        "client_secret": f"{pi.stripe_id}_secret_sandbox",
        "confirmation_method": "automatic",
        "created": _ts(pi.created),
        "currency": pi.currency,
        "description": pi.description or None,
        "latest_charge": pi.charge_id,
        "livemode": False,
        "metadata": pi.metadata,
        "payment_method": payment_method_id(pi),
        "payment_method_types": ["card"],
        "receipt_email": pi.receipt_email or None,
        "status": pi.status,
        "transfer_group": None,
        **_nulls(
            "allowed_payment_method_types",
            "amount_details",
            "application",
            "application_fee_amount",
            "automatic_payment_methods",
            "canceled_at",
            "cancellation_reason",
            "customer",
            "customer_account",
            "excluded_payment_method_types",
            "hooks",
            "last_payment_error",
            "managed_payments",
            "next_action",
            "on_behalf_of",
            "payment_details",
            "payment_method_configuration_details",
            "payment_method_options",
            "payment_record",
            "presentment_details",
            "processing",
            "review",
            "setup_future_usage",
            "shipping",
            "source",
            "statement_descriptor",
            "statement_descriptor_suffix",
            "transfer_data",
        ),
    }


def _card_details(pi: SandboxPaymentIntent) -> dict:
    brand, last4 = TEST_CARDS.get(pi.payment_method, ("visa", "4242"))
    return {
        "type": "card",
        "card": {
            "amount_authorized": pi.amount,
            "authorization_code": None,
            "brand": brand,
            "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"},
            "country": "US",
            "exp_month": 12,
            "exp_year": 2034,
            "fingerprint": None,
            "funding": "credit",
            "installments": None,
            "last4": last4,
            "mandate": None,
            "network": brand,
            "network_token": {"used": False},
            "three_d_secure": None,
            "wallet": None,
        },
    }


def charge(pi: SandboxPaymentIntent) -> dict:
    refunds = list(pi.refunds.order_by("-pk")[: EMBEDDED_LIST_SIZE + 1])
    return {
        "id": pi.charge_id,
        "object": "charge",
        "amount": pi.amount,
        "amount_captured": pi.amount,
        "amount_refunded": pi.amount_refunded,
        "balance_transaction": pi.balance_transaction or None,
        "billing_details": {"address": None, "email": None, "name": None, "phone": None, "tax_id": None},
        "calculated_statement_descriptor": "SANDBOX",
        "captured": True,
        "created": _ts(pi.created),
        "currency": pi.currency,
        "description": pi.description or None,
        "disputed": pi.disputed,
        "fraud_details": {},
        "livemode": False,
        "metadata": pi.metadata,
        "outcome": {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "risk_score": 20,
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": True,
        "payment_intent": pi.stripe_id,
        "payment_method": payment_method_id(pi),
        "payment_method_details": _card_details(pi),
        "receipt_email": pi.receipt_email or None,
        "refunded": pi.amount_refunded == pi.amount,
        "refunds": _embedded_list(
            refunds, url=f"/v1/charges/{pi.charge_id}/refunds", render=lambda item: refund(item, pi)
        ),
        "status": "succeeded",
        "transfer_group": None,
        **_nulls(
            "application",
            "application_fee",
            "application_fee_amount",
            "authorization_code",
            "customer",
            "failure_balance_transaction",
            "failure_code",
            "failure_message",
            "level3",
            "on_behalf_of",
            "presentment_details",
            "radar_options",
            "receipt_number",
            "receipt_url",
            "review",
            "shipping",
            "source",
            "source_transfer",
            "statement_descriptor",
            "statement_descriptor_suffix",
            "transfer",
            "transfer_data",
        ),
    }


def transfer(tr: SandboxTransfer) -> dict:
    reversals = list(tr.reversals.order_by("-pk")[: EMBEDDED_LIST_SIZE + 1])
    return {
        "id": tr.stripe_id,
        "object": "transfer",
        "amount": tr.amount,
        "amount_reversed": tr.amount_reversed,
        "balance_transaction": tr.balance_transaction or None,
        "created": _ts(tr.created),
        "currency": tr.currency,
        "description": tr.description or None,
        "destination": tr.destination.stripe_id,
        # The py_ payment Stripe creates on the connected account is not emulated.
        "destination_payment": None,
        "livemode": False,
        "metadata": tr.metadata,
        "reversals": _embedded_list(
            reversals,
            url=f"/v1/transfers/{tr.stripe_id}/reversals",
            render=lambda item: transfer_reversal(item, tr),
        ),
        "reversed": tr.amount_reversed == tr.amount,
        "source_transaction": tr.source_transaction or None,
        "source_type": "card",
        "transfer_group": tr.transfer_group or None,
    }


def transfer_reversal(reversal: SandboxTransferReversal, tr: SandboxTransfer | None = None) -> dict:
    tr = tr or reversal.transfer
    return {
        "id": reversal.stripe_id,
        "object": "transfer_reversal",
        "amount": reversal.amount,
        "balance_transaction": reversal.balance_transaction or None,
        "created": _ts(reversal.created),
        "currency": reversal.currency,
        "destination_payment_refund": None,
        "metadata": reversal.metadata,
        "source_refund": None,
        "transfer": tr.stripe_id,
    }


def refund(rf: SandboxRefund, pi: SandboxPaymentIntent | None = None) -> dict:
    pi = pi or rf.payment_intent
    # A card refund's destination details; the acquirer reference arrives only once it is processed.
    reference_status = {"succeeded": "available", "pending": "pending"}.get(rf.status, "unavailable")
    return {
        "id": rf.stripe_id,
        "object": "refund",
        "amount": rf.amount,
        "balance_transaction": rf.balance_transaction or None,
        "charge": pi.charge_id,
        "created": _ts(rf.created),
        "currency": rf.currency,
        "destination_details": {
            "type": "card",
            "card": {
                "reference": _acquirer_reference(rf.stripe_id) if reference_status == "available" else None,
                "reference_status": reference_status,
                "reference_type": "acquirer_reference_number",
                "type": "refund",
            },
        },
        "failure_balance_transaction": rf.failure_balance_transaction or None,
        "failure_reason": rf.failure_reason or None,
        "metadata": rf.metadata,
        "payment_intent": pi.stripe_id,
        "payment_method": payment_method_id(pi),
        "pending_reason": (rf.pending_reason or None) if rf.status == "pending" else None,
        "reason": rf.reason or None,
        "status": rf.status,
        **_nulls(
            "customer",
            "customer_account",
            "description",
            "instructions_email",
            "next_action",
            "presentment_details",
            "receipt_number",
            "source_transfer_reversal",
            "transfer_reversal",
        ),
    }


def account(acct: SandboxAccount) -> dict:
    """A Connect account as its platform sees it (custom, US, transfers active; no KYC details held)."""
    return {
        "id": acct.stripe_id,
        "object": "account",
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "country": "US",
        "created": _ts(acct.created),
        "default_currency": acct.default_currency,
        "details_submitted": True,
        "external_accounts": _embedded_list([], url=f"/v1/accounts/{acct.stripe_id}/external_accounts", render=None),
        "metadata": {},
        "payouts_enabled": True,
        "type": "custom",
        **_nulls(
            "business_profile",
            "business_type",
            "company",
            "controller",
            "email",
            "future_requirements",
            "groups",
            "individual",
            "requirements",
            "settings",
            "tos_acceptance",
        ),
    }


def balance_transaction(txn: SandboxBalanceTransaction) -> dict:
    return {
        "id": txn.stripe_id,
        "object": "balance_transaction",
        "amount": txn.amount,
        "available_on": _ts(txn.created),
        "balance_type": "payments",
        "created": _ts(txn.created),
        "currency": txn.currency,
        "description": txn.description or None,
        "exchange_rate": None,
        "fee": 0,
        "fee_details": [],
        "net": txn.amount,
        "reporting_category": txn.reporting_category,
        "source": txn.source,
        "status": "available",
        "type": txn.type,
    }


_EVIDENCE_FIELDS = (
    "access_activity_log",
    "billing_address",
    "cancellation_policy",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_communication",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "customer_signature",
    "duplicate_charge_documentation",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "receipt",
    "refund_policy",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "service_documentation",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_documentation",
    "shipping_tracking_number",
    "uncategorized_file",
    "uncategorized_text",
)


def dispute(dp: SandboxDispute, pi: SandboxPaymentIntent | None = None) -> dict:
    pi = pi or dp.payment_intent
    return {
        "id": dp.stripe_id,
        "object": "dispute",
        "amount": dp.amount,
        "balance_transactions": [],
        "charge": pi.charge_id,
        "created": _ts(dp.created),
        "currency": dp.currency,
        "enhanced_eligibility_types": [],
        "evidence": {**_nulls(*_EVIDENCE_FIELDS), "enhanced_evidence": {}},
        "evidence_details": {
            "due_by": _ts(dp.created) + 7 * 86_400,
            "enhanced_eligibility": {},
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
            "submission_method": "not_submitted",
        },
        "intended_submission_method": None,
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "network_reason_code": None,
        "payment_intent": pi.stripe_id,
        "payment_method_details": None,
        "reason": dp.reason,
        "status": dp.status,
    }


def balance(account: SandboxAccount) -> dict:
    rows = list(SandboxBalance.objects.filter(account=account).order_by("currency"))
    if not rows:
        rows = [SandboxBalance(account=account, currency=account.default_currency, available=0)]
    return {
        "object": "balance",
        "available": [
            {"amount": row.available, "currency": row.currency, "source_types": {"card": row.available}} for row in rows
        ],
        "connect_reserved": [{"amount": 0, "currency": row.currency} for row in rows],
        "instant_available": None,
        "issuing": None,
        "livemode": False,
        "pending": [{"amount": 0, "currency": row.currency, "source_types": {"card": 0}} for row in rows],
        "refund_and_dispute_prefunding": None,
    }


def page(queryset, *, limit: int, starting_after, ending_before, url: str, render) -> dict:
    """A Stripe list: newest first, cursor ids are Stripe ids of items of the same list."""
    if ending_before is not None:
        items = list(queryset.filter(pk__gt=ending_before.pk).order_by("pk")[: limit + 1])
        has_more = len(items) > limit
        items = list(reversed(items[:limit]))
    else:
        ordered = queryset.order_by("-pk")
        if starting_after is not None:
            ordered = ordered.filter(pk__lt=starting_after.pk)
        items = list(ordered[: limit + 1])
        has_more = len(items) > limit
        items = items[:limit]
    return {"object": "list", "data": [render(item) for item in items], "has_more": has_more, "url": url}
