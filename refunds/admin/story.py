"""A refund's page as a story: where it stands (status, amount, what each party gave or got), the
steps with their amounts and Stripe ids, the open errors each with its recommended next step, the
repairs (each enabled or disabled with the reason, the recommended one first), and one timeline,
newest first, that the HISTORY page shows too.
"""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist
from django.urls import reverse

from refunds.admin.operations import operations_offered
from refunds.admin.position import recommendation_for, refund_money_position
from refunds.admin.selectors import StepOutcome, StepState, refund_step_outcomes, refund_timeline
from refunds.admin.steps import STEP_MARKS, STEP_STATE_WORDS
from refunds.models import Refund, RefundStep
from violet_refunds.admin import status_badge, stripe_id_link
from violet_refunds.money import format_amount

# What each party's step did, in that party's terms.
_PARTY_WORDS: dict[str, dict[str, str]] = {
    RefundStep.MERCHANT_REVERSAL: {
        StepState.DONE: "gave back (transfer reversed)",
        StepState.FAILED: "not taken back: the reversal failed",
        StepState.IN_FLIGHT: "being taken back (sent to Stripe, answer not recorded yet)",
        StepState.NOT_STARTED: "to be taken back",
        StepState.NOT_NEEDED: "nothing to take back",
    },
    RefundStep.SHOPPER_REFUND: {
        StepState.DONE: "refunded by the network",
        StepState.FAILED: "not refunded: the shopper refund failed",
        StepState.IN_FLIGHT: "being refunded (sent to Stripe, answer not recorded yet)",
        StepState.NOT_STARTED: "to be refunded",
        StepState.NOT_NEEDED: "nothing to refund",
    },
}
_PARTY_WORDS[RefundStep.CHANNEL_REVERSAL] = _PARTY_WORDS[RefundStep.MERCHANT_REVERSAL]
_PARTY_OF_STEP: dict[str, str] = {
    RefundStep.MERCHANT_REVERSAL: "Merchant",
    RefundStep.CHANNEL_REVERSAL: "Channel",
    RefundStep.SHOPPER_REFUND: "Shopper",
}


def _shopper_failure_reason(refund: Refund) -> str:
    try:
        return refund.shopper_refund.failure_reason
    except ObjectDoesNotExist:
        return ""


def _parties(refund: Refund, steps: list[StepOutcome]) -> list[dict]:
    rows = [
        {
            "party": _PARTY_OF_STEP[outcome.step],
            "amount": format_amount(outcome.amount, outcome.currency) if outcome.amount is not None else "-",
            "words": _PARTY_WORDS[outcome.step][outcome.state],
            "state": outcome.state,
        }
        for outcome in steps
    ]
    # The network pays the shopper and takes the merchant's and channel's shares back: the rest of
    # the refund is its own share (its commission on the refunded amount).
    reversals = [
        outcome.amount or 0
        for outcome in steps
        if outcome.step != RefundStep.SHOPPER_REFUND and outcome.currency in ("", refund.refund_currency)
    ]
    planned = any(o.step == RefundStep.SHOPPER_REFUND and o.amount is not None for o in steps)
    if planned and all(o.currency in ("", refund.refund_currency) for o in steps):
        rows.append(
            {
                "party": "Network",
                "amount": format_amount(refund.amount - sum(reversals), refund.refund_currency),
                "words": "its own share of the refund (refund minus what the reversals take back)",
                "state": "",
            }
        )
    return rows


def refund_story_context(model_admin, request, refund: Refund, *, can_operate: bool) -> dict:
    site = model_admin.admin_site.name
    steps = refund_step_outcomes(refund)
    # Prefetched by RefundAdmin.get_queryset (the newest open error first).
    open_errors = list(
        getattr(refund, "open_errors_newest_first", None) or refund.errors.filter(resolved=False).order_by("-pk")
    )
    failure_reason = _shopper_failure_reason(refund)
    position = refund_money_position(refund, steps, errors_newest_first=open_errors, failure_reason=failure_reason)
    # The next step: the money position's when someone is short, else the newest open error's.
    if position is not None:
        recommended = position.recommended_operation
    elif open_errors:
        recommended = recommendation_for(open_errors[0], failure_reason).operation
    else:
        recommended = None
    context: dict = {
        "triage_panel": {
            "status": status_badge(refund.status, refund.get_status_display()),
            "amount": format_amount(refund.amount, refund.refund_currency),
            "parties": _parties(refund, steps),
            "steps": [
                {
                    "outcome": outcome,
                    "words": STEP_STATE_WORDS[outcome.state],
                    "mark": STEP_MARKS[outcome.state],
                    "amount": format_amount(outcome.amount, outcome.currency) if outcome.amount is not None else "-",
                    "stripe_id": stripe_id_link(outcome.gateway_id, dashboard_id=outcome.dashboard_id),
                }
                for outcome in steps
            ],
            "open_errors": len(open_errors),
            "latest_error": open_errors[0] if open_errors else None,
            "errors": [
                {"error": error, "recommendation": recommendation_for(error, failure_reason)} for error in open_errors
            ],
            "bag_url": reverse("admin:refunds_bag_change", args=[refund.bag_id], current_app=site),
            "position": position,
        },
        "timeline": refund_timeline(refund),
    }
    if can_operate:
        offered = operations_offered(refund, steps, open_errors=len(open_errors), recommended=recommended)
        context["refund_operations"] = [
            {
                "name": entry.operation.name,
                "title": entry.operation.title,
                "url": reverse(
                    f"admin:refunds_refund_{entry.operation.name.replace('-', '_')}", args=[refund.pk], current_app=site
                ),
                "destructive": entry.operation.destructive,
                "enabled": entry.enabled,
                "refused_because": entry.refused_because,
                "recommended": entry.recommended,
            }
            for entry in offered
        ]
        context["change_reason_url"] = reverse("admin:refunds_refund_change_reason", args=[refund.pk], current_app=site)
    return context
