"""A refund that stopped half-way says on its page who is short, by how much, and what to do next
(issue 13, item 5): the engine reverses the transfers first and refunds the shopper last, so a
shopper step that cannot succeed leaves the merchant and the channel short."""

import re

import pytest
from django.urls import reverse

from refunds.admin.position import refund_money_position
from refunds.admin.selectors import refund_step_outcomes
from refunds.models import RefundError, RefundStatus
from tests.refunds.admin.helpers import processed, record
from tests.world import funded_bag
from violet_refunds.money import format_amount

pytestmark = pytest.mark.django_db


def _position(refund):
    refund.refresh_from_db()
    errors = list(RefundError.objects.filter(refund=refund, resolved=False).order_by("-pk"))
    return refund_money_position(
        refund,
        refund_step_outcomes(refund),
        errors_newest_first=errors,
        failure_reason=refund.shopper_refund.failure_reason,
    )


def _reversed(refund) -> dict[str, int]:
    return {
        reversal.transfer.recipient: reversal.amount
        for reversal in refund.transfer_reversals.select_related("transfer").filter(status="COMPLETE")
    }


def _panel_text(client, refund) -> str:
    response = client.get(reverse("admin:refunds_refund_change", args=[refund.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    match = re.search(r'<div class="refund-position" id="refund-money-position">(.*?)</div>', html, re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1))).strip() if match else ""


def test_a_disputed_charge_shows_the_shopper_merchant_and_channel_short_and_says_wait_for_the_dispute(
    failed_refund, operator_client
):
    reversed_amounts = _reversed(failed_refund)
    assert set(reversed_amounts) == {"MERCHANT", "DEVELOPER"}  # both transfers were reversed first

    position = _position(failed_refund)
    assert position is not None
    assert [(s.party, s.amount) for s in position.short] == [
        ("shopper", failed_refund.amount),
        ("merchant", reversed_amounts["MERCHANT"]),
        ("channel", reversed_amounts["DEVELOPER"]),
    ]
    assert "do not refund again" in position.recommended_action

    text = _panel_text(operator_client, failed_refund)
    assert (
        f"Shopper: {format_amount(failed_refund.amount, failed_refund.refund_currency)} has not been refunded" in text
    )
    assert f"Merchant: {format_amount(reversed_amounts['MERCHANT'], failed_refund.refund_currency)}" in text
    assert "Next step: The shopper disputed the charge" in text


def test_a_card_refund_that_failed_at_stripe_says_refund_the_shopper_another_way(db):
    refund = processed(record(funded_bag()), fault="refund_fails_async", path="/v1/refunds")
    if refund.status == RefundStatus.PROCESSING:  # Stripe said pending: the failure shows on the next read
        refund = processed(refund)
    assert refund.status == RefundStatus.FAILED
    position = _position(refund)
    assert position is not None
    assert position.short[0].party == "shopper"
    assert {s.party for s in position.short} == {"shopper", "merchant", "channel"}
    assert "could not return the money to the shopper's card" in position.recommended_action
    assert "Mark as external" in position.recommended_action


def test_a_failed_reversal_after_the_shopper_was_refunded_shows_the_network_short(partially_completed_refund):
    position = _position(partially_completed_refund)
    assert position is not None
    failed = partially_completed_refund.transfer_reversals.get(status="FAILED")
    assert [(s.party, s.amount) for s in position.short] == [("network", failed.amount)]
    assert "merchant" in position.recommended_action


def test_nobody_is_short_when_the_refund_completed_or_is_still_moving(
    completed_refund, unprocessed_refund, operator_client
):
    assert _position(completed_refund) is None
    assert (
        refund_money_position(unprocessed_refund, refund_step_outcomes(unprocessed_refund), errors_newest_first=[])
        is None
    )
    assert _panel_text(operator_client, completed_refund) == ""


def test_a_refund_whose_stripe_answer_is_unknown_says_so_and_that_it_is_being_looked_up(db, operator_client):
    refund = processed(record(funded_bag()), fault="response_lost", path="/v1/refunds")
    assert refund.status == RefundStatus.PROCESSING
    assert refund.outcome_unknown_since is not None
    assert _position(refund) is None  # nobody is known to be short while Stripe may hold the money

    response = operator_client.get(reverse("admin:refunds_refund_change", args=[refund.pk]))
    html = re.sub(r"\s+", " ", response.content.decode())
    assert "Stripe's answer to a step is unknown since" in html
    assert "nothing is sent twice" in html
