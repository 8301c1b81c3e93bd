"""What each money-moving step of a refund did, as the admin shows it: a mark and a short name per
step (merchant reversal, channel reversal, shopper refund), with the details as hover text.
"""

from __future__ import annotations

from django.utils.html import format_html_join

from refunds.admin.selectors import StepOutcome, StepState, refund_step_outcomes
from refunds.models import Refund, RefundStep
from violet_refunds.money import format_amount

STEP_SHORT_NAMES: dict[str, str] = {
    RefundStep.MERCHANT_REVERSAL: "Merchant",
    RefundStep.CHANNEL_REVERSAL: "Channel",
    RefundStep.SHOPPER_REFUND: "Shopper",
}
STEP_MARKS = {
    StepState.DONE: "✓",
    StepState.FAILED: "✗",
    StepState.IN_FLIGHT: "…",
    StepState.NOT_STARTED: "·",
    StepState.NOT_NEEDED: "–",
}
STEP_STATE_WORDS = {
    StepState.DONE: "money moved",
    StepState.FAILED: "failed, no money moved",
    StepState.IN_FLIGHT: "sent, outcome not recorded yet",
    StepState.NOT_STARTED: "not started",
    StepState.NOT_NEEDED: "nothing to reverse",
}


def step_title(outcome: StepOutcome) -> str:
    """ "Reverse merchant transfer: money moved · 249.90 USD · trr_…" (a badge's hover text)."""
    title = f"{outcome.label}: {STEP_STATE_WORDS[outcome.state]}"
    if outcome.amount is not None:
        title += f" · {format_amount(outcome.amount, outcome.currency)}"
    if outcome.gateway_id:
        title += f" · {outcome.gateway_id}"
    if outcome.detail and outcome.state != StepState.DONE:
        title += f" · {outcome.detail}"
    return title


def step_badges(refund: Refund):
    """Merchant / Channel / Shopper, each marked with what its money did (title: the details)."""
    return format_html_join(
        "",
        '<span class="refund-step refund-step--{}" title="{}">{} {}</span>',
        (
            (
                outcome.state,
                step_title(outcome),
                STEP_SHORT_NAMES[outcome.step],
                STEP_MARKS[outcome.state],
            )
            for outcome in refund_step_outcomes(refund)
        ),
    )
