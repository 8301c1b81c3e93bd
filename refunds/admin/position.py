"""Who is short, and what to do about it: the money position of a refund that did not finish cleanly.

The engine reverses the merchant's and the channel's transfers first and refunds the shopper last
(docs/reliability.md, "After a shopper step that cannot succeed"). So when the shopper step fails for
good (the card refund failed at Stripe, the charge was already refunded or is disputed), the
merchant and the channel have already given their share back: the network holds their money and
the shopper has not been refunded. The reverse happens when the shopper was refunded but a reversal
failed: the network paid out of its own balance. Nothing moves automatically in either case; this
module names the parties that are short, by how much, and the one recommended next step, so an
operator finds it on the refund's page instead of working it out from the step rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from refunds.admin.selectors import StepOutcome, StepState
from refunds.errors import RefundErrorCode
from refunds.models import Refund, RefundError, RefundStatus, RefundStep
from violet_refunds.money import format_amount

_PARTY_OF_STEP: dict[str, str] = {
    RefundStep.MERCHANT_REVERSAL: "merchant",
    RefundStep.CHANNEL_REVERSAL: "channel",
}


@dataclass(frozen=True)
class Recommendation:
    """The next step for an error: words for the operator, and the repair to lead with (the
    OPERATIONS name whose button comes first and is marked recommended; None when the step is
    outside this system, such as topping up a balance, and any repair comes after it)."""

    text: str
    operation: str | None


# The one table of what to do per error code (shown beside the error on the refund's page and
# deciding which repair button comes first). Every action named here exists on the refund's page;
# none of them moves money by itself except Retry, which looks every step up at Stripe first, so
# what already moved never moves twice.
RECOMMENDED_ACTIONS: dict[RefundErrorCode, Recommendation] = {
    RefundErrorCode.GATEWAY_REJECTED: Recommendation(
        "Stripe refused the request for good. Read the error, fix its cause in Stripe, then Retry; if the "
        "money was settled another way, Mark as external instead.",
        "retry",
    ),
    RefundErrorCode.CHARGE_ALREADY_REFUNDED: Recommendation(
        "Stripe says the charge is already refunded (from the Stripe Dashboard or a dispute). Check the "
        "charge in Stripe: if the shopper has this money, Mark as external; if not, find where it went "
        "before anything else. Retrying would be refused the same way.",
        "mark-external",
    ),
    RefundErrorCode.BALANCE_INSUFFICIENT: Recommendation(
        "The Stripe balance was too low (the network's for the shopper, the connected account's for a "
        "reversal). Top up the balance, then Retry: the steps already done are not repeated.",
        "retry",
    ),
    RefundErrorCode.AMOUNT_TOO_LARGE: Recommendation(
        "Stripe says less is left to refund or reverse than this refund asks. Compare the charge and "
        "transfers in Stripe with this refund; if the rest was settled outside, Mark as external.",
        "mark-external",
    ),
    RefundErrorCode.IDEMPOTENCY_CONFLICT: Recommendation(
        "Stripe saw the same idempotency key with different parameters. Retry: failed steps are sent "
        "again under a new key, after a look-up at Stripe.",
        "retry",
    ),
    RefundErrorCode.RETRIES_EXHAUSTED: Recommendation(
        "Stripe kept failing. Retry: every step is looked up at Stripe before it is sent again.",
        "retry",
    ),
    RefundErrorCode.SHOPPER_REFUND_FAILED: Recommendation(
        "Stripe could not return the money to the shopper's card{reason}; Stripe has put it back on the "
        "network's balance, so retrying would fail the same way. Refund the shopper by another means "
        "(contact them), then Mark as external with how they were paid.",
        "mark-external",
    ),
    RefundErrorCode.CHARGE_DISPUTED: Recommendation(
        "The shopper disputed the charge (charged back): the card network returns the money through the "
        "dispute, so do not refund again. Resolve the error with a dispute note now; when the dispute "
        "closes, Mark as external if the shopper won it, or Retry if the network won it.",
        "resolve-errors",
    ),
    RefundErrorCode.GATEWAY_AUTHENTICATION: Recommendation(
        "Stripe refused our API key (authentication or permission). Fix STRIPE_API_KEY or the connected "
        "account's permissions, then Retry.",
        "retry",
    ),
    RefundErrorCode.MISSING_PAYMENT: Recommendation(
        "The bag has no recorded payment to refund. Find the charge in Stripe; if the shopper was refunded "
        "another way, Mark as external.",
        "mark-external",
    ),
    RefundErrorCode.CURRENCY_MISMATCH: Recommendation(
        "The refund's currency differs from the charge's. The network cannot move it; settle it outside "
        "and Mark as external with how.",
        "mark-external",
    ),
    RefundErrorCode.INCONSISTENT_AMOUNTS: Recommendation(
        "The bag's transfers and refunds cannot be split consistently: the data needs a person. Settle the "
        "refund outside and Mark as external, or correct the data and Retry.",
        "mark-external",
    ),
    RefundErrorCode.PLATFORM_REFUSED: Recommendation(
        "The merchant's platform refused this channel refund (its message is below): nothing moved and "
        "the amounts are refundable again. Retrying would be refused the same way; tell the channel, which "
        "can ask again once the order allows it, and Resolve the error with a note.",
        "resolve-errors",
    ),
    RefundErrorCode.PLATFORM_AMOUNT_ADJUSTED: Recommendation(
        "The platform refunded more than was left because part of the bag was refunded through another "
        "source; what was left was refunded, so the shopper has the merchant's total. Check the other "
        "refunds of the bag, then Resolve the error with a note.",
        "resolve-errors",
    ),
}
DEFAULT_RECOMMENDATION = Recommendation(
    "Read the error below. Retry once its cause is fixed (steps are looked up at Stripe before being "
    "sent again), or Mark as external if the shopper was refunded outside this system.",
    "retry",
)


def recommendation_for(error: RefundError | None, failure_reason: str = "") -> Recommendation:
    """The table's row for `error`'s code (the default for no error or an unknown code)."""
    if error is None:
        return DEFAULT_RECOMMENDATION
    try:
        code = RefundErrorCode(int(error.error_code))
    except ValueError:
        return DEFAULT_RECOMMENDATION
    found = RECOMMENDED_ACTIONS.get(code, DEFAULT_RECOMMENDATION)
    text = found.text.replace("{reason}", f" ({failure_reason})" if failure_reason else "")
    return Recommendation(text=text, operation=found.operation)


_REVERSAL_FAILED_ACTION = (
    "The shopper has been refunded, but the {parties} reversal failed, so the network paid that share "
    "from its own balance. Retry once the connected account has funds (Stripe refuses a reversal the "
    "account cannot cover), or recover the money from the {parties} outside Stripe and Resolve the error "
    "with a note saying how."
)


@dataclass(frozen=True)
class ShortParty:
    party: str  # "shopper", "merchant", "channel" or "network"
    amount: int
    currency: str
    why: str

    @property
    def amount_display(self) -> str:
        return format_amount(self.amount, self.currency)


@dataclass(frozen=True)
class MoneyPosition:
    short: tuple[ShortParty, ...]
    recommended_action: str
    recommended_operation: str | None = None

    @property
    def anyone_short(self) -> bool:
        return bool(self.short)


def _by_step(steps: Sequence[StepOutcome]) -> dict[str, StepOutcome]:
    return {outcome.step: outcome for outcome in steps}


def _shopper_error(errors: Sequence[RefundError]) -> RefundError | None:
    """The newest open error of the shopper step, else the newest open error of the refund."""
    open_errors = [error for error in errors if not error.resolved]
    for error in open_errors:
        if error.step == RefundStep.SHOPPER_REFUND:
            return error
    return open_errors[0] if open_errors else None


def refund_money_position(
    refund: Refund,
    steps: Sequence[StepOutcome],
    *,
    errors_newest_first: Sequence[RefundError],
    failure_reason: str = "",
) -> MoneyPosition | None:
    """The parties a FAILED or PARTIALLY_COMPLETED refund leaves short, and the next step; None when
    the refund is still moving or finished cleanly (nobody is short)."""
    if refund.status not in (RefundStatus.FAILED, RefundStatus.PARTIALLY_COMPLETED):
        return None
    outcomes = _by_step(steps)
    shopper = outcomes.get(RefundStep.SHOPPER_REFUND)
    reversals = [outcomes[step] for step in _PARTY_OF_STEP if step in outcomes]
    reversed_done = [r for r in reversals if r.state == StepState.DONE and r.amount]
    reversed_failed = [r for r in reversals if r.state == StepState.FAILED and r.amount]

    if shopper is not None and shopper.state == StepState.DONE:
        if not reversed_failed:
            return None
        short = tuple(
            ShortParty(
                party="network",
                amount=r.amount or 0,
                currency=r.currency,
                why=f"refunded the shopper but could not take back the {_PARTY_OF_STEP[r.step]}'s share",
            )
            for r in reversed_failed
        )
        parties = " and ".join(_PARTY_OF_STEP[r.step] for r in reversed_failed)
        return MoneyPosition(
            short=short,
            recommended_action=_REVERSAL_FAILED_ACTION.format(parties=parties),
            recommended_operation="retry",
        )

    short_parties = [
        ShortParty(
            party="shopper",
            amount=refund.amount,
            currency=refund.refund_currency,
            why="has not been refunded",
        )
    ]
    short_parties += [
        ShortParty(
            party=_PARTY_OF_STEP[r.step],
            amount=r.amount or 0,
            currency=r.currency,
            why="gave its share back (transfer reversed) for a refund the shopper did not receive",
        )
        for r in reversed_done
    ]
    recommendation = recommendation_for(_shopper_error(errors_newest_first), failure_reason)
    return MoneyPosition(
        short=tuple(short_parties),
        recommended_action=recommendation.text,
        recommended_operation=recommendation.operation,
    )


# --------------------------------------------------------------------------------------------------
# What a repair leaves each party with, stated on its confirmation page before the click
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartyConsequence:
    party: str  # "merchant", "channel", "shopper" or "network"
    text: str


def _reversal_words(outcome: StepOutcome | None, party: str, *, after_retry: bool) -> str:
    if outcome is None or outcome.amount is None:
        return f"nothing to reverse: the {party} keeps its transfer."
    amount = format_amount(outcome.amount, outcome.currency)
    if outcome.state == StepState.DONE:
        return f"already gave back {amount} (transfer reversed); that stays."
    if after_retry:
        return f"{amount} is taken back from its transfer (reversal sent to Stripe again)."
    return f"keeps {amount}: its transfer is not reversed."


def operation_money_consequences(
    operation_name: str, refund: Refund, steps: Sequence[StepOutcome]
) -> list[PartyConsequence]:
    """Per party (merchant, channel, shopper, network), what the money looks like once the operation
    is done: the operator reads this before confirming, not after."""
    outcomes = _by_step(steps)
    merchant = outcomes.get(RefundStep.MERCHANT_REVERSAL)
    channel = outcomes.get(RefundStep.CHANNEL_REVERSAL)
    shopper = outcomes.get(RefundStep.SHOPPER_REFUND)
    currency = refund.refund_currency
    refund_amount = format_amount(refund.amount, currency)
    if operation_name == "resolve-errors":
        return [PartyConsequence("network", "No money moves: only the errors are marked resolved.")]
    if operation_name == "cancel":
        return [
            PartyConsequence("merchant", "nothing moves: the merchant keeps its transfer."),
            PartyConsequence("channel", "nothing moves: the channel keeps its transfer."),
            PartyConsequence(
                "shopper", f"is NOT refunded {refund_amount} by the network; the amount becomes refundable again."
            ),
            PartyConsequence("network", "nothing moves."),
        ]
    after_retry = operation_name == "retry"
    lines = [
        PartyConsequence("merchant", _reversal_words(merchant, "merchant", after_retry=after_retry)),
        PartyConsequence("channel", _reversal_words(channel, "channel", after_retry=after_retry)),
    ]
    shopper_done = shopper is not None and shopper.state == StepState.DONE
    if shopper_done:
        lines.append(PartyConsequence("shopper", f"already refunded {refund_amount} by the network; that stays."))
    elif after_retry:
        lines.append(PartyConsequence("shopper", f"is refunded {refund_amount} (shopper refund sent to Stripe again)."))
    else:
        lines.append(
            PartyConsequence(
                "shopper",
                f"is NOT refunded {refund_amount} by the network: your note must say how the shopper was paid.",
            )
        )
    if after_retry:
        lines.append(
            PartyConsequence(
                "network",
                "ends even once every step completes: it pays the shopper what the reversals bring back "
                "plus its own share.",
            )
        )
        return lines
    # Mark external: the money stays where it is now. The network's own share of a refund is its to
    # pay; what it is short or holds beyond that is the reversals that did or did not happen.
    reversals = [r for r in (merchant, channel) if r is not None and r.amount and r.currency == currency]
    if shopper_done:
        missing = sum(r.amount or 0 for r in reversals if r.state != StepState.DONE)
        network = (
            f"is out {format_amount(missing, currency)} it paid the shopper for the merchant or channel: "
            "funds to recover."
            if missing
            else "is even: the reversals covered the merchant's and channel's shares."
        )
    else:
        held = sum(r.amount or 0 for r in reversals if r.state == StepState.DONE)
        network = (
            f"holds {format_amount(held, currency)} taken back from the merchant and channel but not paid to "
            "the shopper: settle it with whoever paid the shopper."
            if held
            else "is even: nothing taken back, nothing paid out."
        )
    lines.append(PartyConsequence("network", network))
    return lines
