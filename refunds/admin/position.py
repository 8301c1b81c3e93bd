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

# What the operator should do when the shopper step failed for good, by the error it failed with.
# Every action named here exists on the refund's page; none of them moves money by itself except
# Retry, which looks every step up at Stripe first, so what already moved never moves twice.
_SHOPPER_FAILURE_ACTIONS = {
    RefundErrorCode.SHOPPER_REFUND_FAILED: (
        "Stripe could not return the money to the shopper's card{reason}; Stripe has put it back on the "
        "network's balance, so retrying would fail the same way. Refund the shopper by another means "
        "(contact them), then Mark as external with how they were paid."
    ),
    RefundErrorCode.CHARGE_ALREADY_REFUNDED: (
        "Stripe says the charge is already refunded (from the Stripe Dashboard or a dispute). Check the "
        "charge in Stripe: if the shopper has this money, Mark as external; if not, find where it went "
        "before anything else."
    ),
    RefundErrorCode.CHARGE_DISPUTED: (
        "The shopper disputed the charge: the card network returns the money through the dispute, so do "
        "not refund again. When the dispute closes, Mark as external if the shopper won it, or Retry if "
        "the network won it."
    ),
    RefundErrorCode.BALANCE_INSUFFICIENT: (
        "The network's Stripe balance was too low to refund the shopper. Top up the balance, then Retry: "
        "the reversals already done are not repeated."
    ),
    RefundErrorCode.RETRIES_EXHAUSTED: (
        "Stripe kept failing. Retry: every step is looked up at Stripe before it is sent again."
    ),
}
_DEFAULT_SHOPPER_ACTION = (
    "Read the error below. Retry once its cause is fixed (steps are looked up at Stripe before being "
    "sent again), or Mark as external if the shopper was refunded outside this system."
)
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


def _shopper_action(error: RefundError | None, failure_reason: str) -> str:
    if error is None:
        return _DEFAULT_SHOPPER_ACTION
    try:
        code = RefundErrorCode(int(error.error_code))
    except ValueError:
        return _DEFAULT_SHOPPER_ACTION
    action = _SHOPPER_FAILURE_ACTIONS.get(code, _DEFAULT_SHOPPER_ACTION)
    return action.replace("{reason}", f" ({failure_reason})" if failure_reason else "")


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
        return MoneyPosition(short=short, recommended_action=_REVERSAL_FAILED_ACTION.format(parties=parties))

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
    action = _shopper_action(_shopper_error(errors_newest_first), failure_reason)
    return MoneyPosition(short=tuple(short_parties), recommended_action=action)
