"""What portal templates show, computed in Python: money in major units, statuses in words, and the
refund instructions of each platform (seeds 000 and 003) for the merchant's own store."""

from __future__ import annotations

from dataclasses import dataclass

from platforms.adapters.wix import WIX_CANCEL_IS_REFUND_BEFORE
from platforms.models import Merchant, OmsConnection, Platform, SfccRefundMode, StoreConnection
from portal.selectors import merchant_accepts_refund_notices
from refunds.models import Bag, FulfillmentStatus, Refund, RefundStatus
from violet_refunds.money import format_amount


def money(amount: int | None, currency: str) -> str:
    if amount is None:
        return "–"
    return format_amount(amount, currency)


# The refund statuses in the merchant's words.
REFUND_STATUS_TEXT: dict[str, tuple[str, str]] = {
    RefundStatus.PROCESSING: (
        "Processing",
        "We are reversing the transfers and returning the money to the shopper. This usually takes less "
        "than a minute; this page updates by itself.",
    ),
    RefundStatus.COMPLETED: (
        "Completed",
        "The shopper has been refunded and the transfers reversed. Funds usually appear on the shopper's "
        "card within 5-10 business days.",
    ),
    RefundStatus.PARTIALLY_COMPLETED: (
        "Shopper refunded, transfers under review",
        "The shopper has been refunded. A transfer reversal did not go through; our team is on it and "
        "nothing is needed from you.",
    ),
    RefundStatus.FAILED: (
        "Failed",
        "The refund could not be completed. Our team has been alerted and will contact you if anything is "
        "needed from you.",
    ),
    RefundStatus.CANCELED: ("Canceled", "This refund was stopped before any money moved."),
    RefundStatus.EXTERNAL: ("Refunded outside the network", "The money was returned outside the network."),
}


def refund_status_label(status: str) -> str:
    return REFUND_STATUS_TEXT.get(status, (status, ""))[0]


@dataclass(frozen=True)
class RefundRow:
    refund: Refund
    amount: str
    status_label: str
    status_text: str
    order_id: str
    reference: str


def refund_row(refund: Refund) -> RefundRow:
    label, text = REFUND_STATUS_TEXT.get(refund.status, (refund.status, ""))
    return RefundRow(
        refund=refund,
        amount=money(refund.amount, refund.refund_currency),
        status_label=label,
        status_text=text,
        order_id=refund.bag.external_id or f"bag {refund.bag_id}",
        reference=refund.external_id or "",
    )


@dataclass(frozen=True)
class BagRow:
    bag: Bag
    order_id: str
    total: str


def bag_row(bag: Bag) -> BagRow:
    return BagRow(bag=bag, order_id=bag.external_id or f"bag {bag.pk}", total=money(bag.total, bag.currency))


# --- what to do on your platform (seeds 000 and 003) -----------------------------------------------


@dataclass(frozen=True)
class Instructions:
    title: str
    paragraphs: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


GENERAL = (
    "Refund the order the usual way in your own platform, so that it ends up refunded. You do not need to "
    "send any money yourself: we reverse the transfers to you and to the channel and return the money to "
    "the shopper's payment method. Shoppers usually see it within 5-10 business days."
)

_FULFILLED = {FulfillmentStatus.SHIPPED, FulfillmentStatus.PARTIALLY_SHIPPED, FulfillmentStatus.DELIVERED}

_WIX_CANCEL_STEPS = (
    "Go to Actions, then Cancel.",
    "Choose Cancel Order.",
    "Confirm: Cancel Order.",
)
_WIX_UNFULFILL_STEPS = (
    "Go to Actions, then Unfulfill.",
    "Unfulfill the order: its status changes to UNFULFILLED at once.",
    *(f"Then: {step[0].lower()}{step[1:]}" for step in _WIX_CANCEL_STEPS),
)


def _wix_instructions(bag: Bag | None) -> Instructions:
    cutoff = WIX_CANCEL_IS_REFUND_BEFORE.date().isoformat()
    if bag is not None and bag.placed_at >= WIX_CANCEL_IS_REFUND_BEFORE:
        return Instructions(
            title="Wix: refund this order the standard way",
            paragraphs=(f"This order was placed on or after {cutoff}: refund it in Wix as usual.", GENERAL),
        )
    if bag is not None:
        fulfilled = bag.fulfillment_status in _FULFILLED
        return Instructions(
            title="Wix: refund this order by cancelling it",
            paragraphs=(
                f"This order was placed before {cutoff}. Wix's Order API cannot refund such orders, so you "
                "refund it by cancelling it"
                + (", after unfulfilling it because it was already fulfilled:" if fulfilled else ":"),
            ),
            steps=_WIX_UNFULFILL_STEPS if fulfilled else _WIX_CANCEL_STEPS,
        )
    return Instructions(
        title="Wix",
        paragraphs=(
            f"Orders placed on or after {cutoff}: refund them in Wix the standard way. {GENERAL}",
            f"Orders placed before {cutoff} are refunded by cancelling them in Wix:",
        ),
        steps=(
            "Not yet fulfilled: Actions → Cancel → Cancel Order → confirm Cancel Order.",
            "Already fulfilled: Actions → Unfulfill (the status becomes UNFULFILLED), then cancel as above.",
        ),
    )


def platform_instructions(merchant: Merchant, bag: Bag | None = None) -> Instructions:
    """What the merchant does in their own platform to refund a network order (seeds 000 and 003)."""
    platform = merchant.platform
    if platform == Platform.SHOPIFY:
        return Instructions(
            title="Shopify",
            paragraphs=(GENERAL,),
            notes=(
                "When you cancel an order, select \u201cRefund payments now\u201d in the cancellation dialog "
                "(it is usually selected already). That is what starts the refund to the shopper. The "
                "\u201cManual\u201d label next to it means you send no money yourself: we do.",
            ),
        )
    if platform == Platform.ECWID:
        return Instructions(
            title="Ecwid",
            paragraphs=(
                "Ecwid does not allow orders placed through the API, as network orders are, to be refunded: "
                "the Refund button cannot be used for them.",
                "Instead, mark the order Cancelled (its payment status) when you refund it, and we treat it "
                "as a refund of what is left on the order.",
            ),
        )
    if platform == Platform.SFCC:
        if merchant.sfcc_refund_mode == SfccRefundMode.ORDER_MANAGEMENT:
            return _oms_instructions(merchant)
        option_2 = merchant.sfcc_refund_mode == SfccRefundMode.MANUAL_NOTICE
        return Instructions(
            title="Salesforce Commerce Cloud",
            paragraphs=(
                "Commerce Cloud's APIs (OCAPI and SCAPI) have no refunds, so we cannot see a refund you make "
                "there. Your store uses "
                + (
                    "Option 2, Notify us of refunds: after each refund, report it here with \u201cReport a "
                    "refund\u201d on the order, or have your engineering team send it to the refund-notice "
                    "API with an API key."
                    if option_2
                    else "Option 1, Mark the order as cancelled: when you refund an order, mark it cancelled "
                    "in Commerce Cloud and we treat it as a refund of what is left on the order."
                ),
            ),
            notes=(
                "If you refund in Salesforce Order Management, connect it under \u201cConnect your order "
                "management system\u201d: we then find every refund (credit memo) there automatically and "
                "this step goes away.",
            ),
        )
    if platform == Platform.WIX:
        return _wix_instructions(bag)
    if platform == Platform.BIGCOMMERCE:
        return Instructions(
            title="BigCommerce",
            paragraphs=(
                GENERAL,
                "BigCommerce shows the refund as \u201coffline\u201d: that is expected, we refund the shopper.",
            ),
        )
    return Instructions(title=merchant.get_platform_display(), paragraphs=(GENERAL,))


def _oms_instructions(merchant: Merchant) -> Instructions:
    oms = _oms_connection(merchant)
    if oms is None or oms.status != OmsConnection.Status.CONNECTED:
        return Instructions(
            title="Salesforce Commerce Cloud with an order management system",
            paragraphs=(
                "Your order management system is not connected, so we cannot find your refunds. Connect it "
                "again under \u201cConnect your order management system\u201d.",
            ),
        )
    synced = (
        f"Last successful sync: {oms.last_success_at:%Y-%m-%d %H:%M} UTC."
        if oms.last_success_at
        else "No successful sync yet: the first one runs within a few minutes of connecting."
    )
    return Instructions(
        title=f"Salesforce Commerce Cloud with {oms.get_system_display()}",
        paragraphs=(
            f"Refunds are found automatically: refund in {oms.get_system_display()} as usual (a return, a "
            "cancellation or an adjustment creates a credit memo) and we record each credit memo as one refund "
            "and refund the shopper. There is nothing to report here.",
            synced,
        ),
        notes=(
            "Cancelling an order in Commerce Cloud alone is not a refund: it becomes one through the credit memo "
            "Order Management creates for it.",
        ),
    )


def _oms_connection(merchant: Merchant) -> OmsConnection | None:
    try:
        return merchant.oms_connection
    except OmsConnection.DoesNotExist:
        return None


@dataclass(frozen=True)
class MerchantCard:
    merchant: Merchant
    instructions: Instructions
    accepts_notices: bool
    is_wix: bool
    is_sfcc: bool
    oms: OmsConnection | None
    connected: bool
    connection_status: str
    connection_verified_at: object


def merchant_card(merchant: Merchant) -> MerchantCard:
    connection = merchant.connection if _has_connection(merchant) else None
    return MerchantCard(
        merchant=merchant,
        instructions=platform_instructions(merchant),
        accepts_notices=merchant_accepts_refund_notices(merchant),
        is_wix=merchant.platform == Platform.WIX,
        is_sfcc=merchant.platform == Platform.SFCC,
        oms=_oms_connection(merchant) if merchant.platform == Platform.SFCC else None,
        connected=bool(connection and connection.status == StoreConnection.Status.CONNECTED),
        connection_status=connection.get_status_display() if connection else "Not connected",
        connection_verified_at=connection.last_verified_at if connection else None,
    )


def _has_connection(merchant: Merchant) -> bool:
    try:
        return merchant.connection is not None
    except StoreConnection.DoesNotExist:
        return False
