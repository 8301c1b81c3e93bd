"""Reconciliation: compare our refund books with Stripe's and list every difference. Read-only.

For the chosen refunds it lists, once per payment intent and once per transfer, what Stripe holds
(refunds of the charge, reversals of each transfer). The engine's own matching
(`refunds.services.steps`: the metadata refund_id/step it always sends) ties each object to one step
of one refund. The differences:

  missing_at_stripe  a step we recorded with a gateway id that Stripe does not have
  unrecorded         a Stripe object made for a step whose local row does not carry its id
                     (e.g. retries ran out after Stripe said yes and the answer was lost)
  duplicate          more than one live Stripe object for one step: money moved twice
  missing_locally    a Stripe object whose metadata names a refund id we do not have
  outside_engine     a Stripe refund/reversal without our metadata (made in the dashboard, by hand)
  amount_mismatch    amounts (or currencies) differ between our row and Stripe's object
  status_mismatch    a step's status differs from Stripe's, or a refund's status from its steps
  total_mismatch     a transfer's reversed amount or a payment's refunded amount differs from the
                     sum Stripe holds

Nothing is written: only our tables are read and GET requests sent to Stripe (the sandbox or the
real API, whichever payments.gateway is set to). `manage.py reconcile_refunds` is the front end.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from django.utils import timezone

from payments.gateway import GatewayError, PermanentGatewayError, get_gateway
from payments.models import PaymentTransaction, ShopperRefund, Transfer, TransferReversal
from refunds.models import Refund, RefundStatus, RefundStep
from refunds.selectors import refunds_for_reconciliation
from refunds.services.steps import is_refund_object, reversal_step, step_objects, stripe_object_refund_id

# Stripe refund statuses that hold (or may still hold) the shopper's money.
LIVE_REFUND_STATUSES = frozenset({"succeeded", "pending", "requires_action"})
STRIPE_STATUS_FOR_SHOPPER: dict[str, set[str]] = {
    ShopperRefund.Status.SUCCEEDED: {"succeeded"},
    ShopperRefund.Status.PENDING: {"pending", "requires_action"},
    ShopperRefund.Status.FAILED: {"failed", "canceled"},
    ShopperRefund.Status.CANCELED: {"canceled", "failed"},
}


@dataclass(frozen=True)
class Difference:
    kind: str
    refund_id: int | None
    step: str
    detail: str
    # The Stripe object a difference is about, when it is about one object of no refund of ours
    # (outside_engine): findings key on it, as the Stripe event handlers do.
    stripe_id: str = ""

    def line(self) -> str:
        refund = f"refund {self.refund_id}" if self.refund_id is not None else "no refund"
        return f"{self.kind:<18} {refund:<14} {self.step or '-':<18} {self.detail}"


class StripeUnavailable(Exception):
    pass


class Reconciliation:
    """Collects the differences for a set of refunds; asks Stripe once per payment and transfer."""

    def __init__(self, refunds: list[Refund], gateway):
        self.refunds = refunds
        self.gateway = gateway
        self.differences: list[Difference] = []
        self.payments: dict[int, PaymentTransaction] = {}
        self.transfers: dict[int, Transfer] = {}
        self._stripe_refunds: dict[str | None, list] = {}
        self._stripe_reversals: dict[str | None, list] = {}

    def note(self, kind: str, refund_id: int | None, step: str, detail: str, stripe_id: str = "") -> None:
        self.differences.append(Difference(kind, refund_id, step, detail, stripe_id))

    # --- what Stripe holds ---

    def _ask(self, call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except GatewayError as exc:
            raise StripeUnavailable(exc.message) from exc

    def stripe_refunds(self, payment: PaymentTransaction) -> list:
        pi = payment.gateway_transaction_id
        if pi not in self._stripe_refunds:
            self._stripe_refunds[pi] = self._ask(self.gateway.list_refunds, payment_intent_id=pi)
        return self._stripe_refunds[pi]

    def stripe_reversals(self, transfer: Transfer) -> list:
        tr = transfer.gateway_transfer_id
        if tr not in self._stripe_reversals:
            self._stripe_reversals[tr] = self._ask(self.gateway.list_transfer_reversals, tr)
        return self._stripe_reversals[tr]

    # --- comparisons ---

    def run(self) -> list[Difference]:
        for refund in self.refunds:
            payment = getattr(refund.bag.order, "payment_transaction", None)
            if payment is not None:
                self.payments[payment.pk] = payment
            for transfer in refund.bag.transfers.all():
                if transfer.gateway_transfer_id:
                    self.transfers[transfer.pk] = transfer
            shopper = getattr(refund, "shopper_refund", None)
            reversals = list(refund.transfer_reversals.all())
            if shopper is not None:
                self.check_shopper_refund(refund, shopper)
            elif payment is not None:
                self.check_unplanned(refund, payment)
            for reversal in reversals:
                self.check_reversal(refund, reversal)
            self.check_refund_status(refund, shopper, reversals)
        in_scope = {refund.pk for refund in self.refunds}
        for payment in self.payments.values():
            self.check_payment(payment, in_scope)
        for transfer in self.transfers.values():
            self.check_transfer(transfer, in_scope)
        return self.differences

    def check_shopper_refund(self, refund: Refund, shopper: ShopperRefund) -> None:
        step = RefundStep.SHOPPER_REFUND
        at_stripe = self.stripe_refunds(shopper.payment_transaction)
        live = [o for o in step_objects(at_stripe, refund, step) if o.status in LIVE_REFUND_STATUSES]
        recorded = None
        if shopper.gateway_refund_id:
            recorded = next((o for o in at_stripe if o.id == shopper.gateway_refund_id), None)
            if recorded is None:
                recorded = self._retrieve_refund(shopper.gateway_refund_id)
            if recorded is None:
                self.note(
                    "missing_at_stripe",
                    refund.pk,
                    step,
                    f"{shopper.gateway_refund_id} ({shopper.status}, {shopper.amount} {shopper.currency}) "
                    "is not at Stripe",
                )
            else:
                self._compare_amount(refund, step, shopper.amount, shopper.currency, recorded)
                if recorded.status not in STRIPE_STATUS_FOR_SHOPPER.get(shopper.status, set()):
                    self.note(
                        "status_mismatch",
                        refund.pk,
                        step,
                        f"{recorded.id} is {recorded.status} at Stripe, {shopper.status} here",
                    )
        others = [o for o in live if recorded is None or o.id != recorded.id]
        if others and recorded is not None and recorded.status in LIVE_REFUND_STATUSES:
            self.note("duplicate", refund.pk, step, f"more refunds for this step at Stripe: {_ids(others)}")
        elif others:
            self.note(
                "unrecorded",
                refund.pk,
                step,
                f"Stripe holds {_describe(others)} for this step; our row has "
                f"{shopper.gateway_refund_id or 'no id'} ({shopper.status})",
            )

    def _retrieve_refund(self, refund_id: str):
        try:
            return self.gateway.retrieve_refund(refund_id)
        except PermanentGatewayError as exc:
            if exc.http_status == 404:
                return None
            raise StripeUnavailable(exc.message) from exc
        except GatewayError as exc:
            raise StripeUnavailable(exc.message) from exc

    def check_unplanned(self, refund: Refund, payment: PaymentTransaction) -> None:
        """No step rows yet (never processed): Stripe must hold nothing for it."""
        objects = [o for o in self.stripe_refunds(payment) if is_refund_object(o, refund)]
        for transfer in refund.bag.transfers.all():
            if transfer.gateway_transfer_id:
                objects += [o for o in self.stripe_reversals(transfer) if is_refund_object(o, refund)]
        if objects:
            self.note("unrecorded", refund.pk, "", f"no steps planned here, yet Stripe holds {_describe(objects)}")

    def check_reversal(self, refund: Refund, reversal: TransferReversal) -> None:
        step = reversal_step(reversal.transfer.recipient)
        at_stripe = self.stripe_reversals(reversal.transfer) if reversal.transfer.gateway_transfer_id else []
        mine = step_objects(at_stripe, refund, step)
        recorded = None
        if reversal.gateway_reversal_id:
            recorded = next((o for o in at_stripe if o.id == reversal.gateway_reversal_id), None)
            if recorded is None:
                self.note(
                    "missing_at_stripe",
                    refund.pk,
                    step,
                    f"{reversal.gateway_reversal_id} ({reversal.amount} {reversal.currency}) is not among the "
                    f"reversals of {reversal.transfer.gateway_transfer_id}",
                )
            else:
                self._compare_amount(refund, step, reversal.amount, reversal.currency, recorded)
            if reversal.status != TransferReversal.Status.COMPLETE:
                self.note(
                    "status_mismatch",
                    refund.pk,
                    step,
                    f"{reversal.gateway_reversal_id} is recorded but the row is {reversal.status}",
                )
        elif reversal.status == TransferReversal.Status.COMPLETE:
            self.note("missing_at_stripe", refund.pk, step, "the row is COMPLETE but has no Stripe reversal id")
        others = [o for o in mine if recorded is None or o.id != recorded.id]
        if others and recorded is not None:
            self.note("duplicate", refund.pk, step, f"more reversals for this step at Stripe: {_ids(others)}")
        elif others:
            self.note(
                "unrecorded",
                refund.pk,
                step,
                f"Stripe holds {_describe(others)} for this step; our row has no id ({reversal.status})",
            )

    def _compare_amount(self, refund: Refund, step: str, amount: int, currency: str, obj) -> None:
        if obj.amount != amount or obj.currency != currency:
            self.note(
                "amount_mismatch",
                refund.pk,
                step,
                f"{obj.id} is {obj.amount} {obj.currency} at Stripe, {amount} {currency} here",
            )

    def check_refund_status(self, refund: Refund, shopper, reversals) -> None:
        shopper_done = shopper is not None and shopper.status == ShopperRefund.Status.SUCCEEDED
        reversals_done = all(r.status == TransferReversal.Status.COMPLETE for r in reversals)
        problem = ""
        if refund.status == RefundStatus.COMPLETED and not (shopper_done and reversals_done):
            problem = "COMPLETED but not every step is done"
        elif refund.status == RefundStatus.PARTIALLY_COMPLETED and not shopper_done:
            problem = "PARTIALLY_COMPLETED but the shopper refund is not SUCCEEDED"
        elif refund.status in (RefundStatus.FAILED, RefundStatus.CANCELED) and shopper_done and reversals_done:
            problem = f"{refund.status} but every step is done"
        elif refund.status == RefundStatus.CANCELED and (
            shopper_done or any(r.status == TransferReversal.Status.COMPLETE for r in reversals)
        ):
            problem = "CANCELED but money moved"
        if problem:
            self.note("status_mismatch", refund.pk, "", problem)

    def check_payment(self, payment: PaymentTransaction, in_scope: set[int]) -> None:
        at_stripe = self.stripe_refunds(payment)
        self._orphans(at_stripe, in_scope, f"refund of {payment.gateway_transaction_id}", live_only=True)
        succeeded = sum(o.amount for o in at_stripe if o.status == "succeeded")
        if succeeded != payment.amount_refunded:
            self.note(
                "total_mismatch",
                None,
                "",
                f"payment {payment.gateway_transaction_id}: {succeeded} {payment.currency} refunded at Stripe, "
                f"{payment.amount_refunded} here",
            )

    def check_transfer(self, transfer: Transfer, in_scope: set[int]) -> None:
        at_stripe = self.stripe_reversals(transfer)
        self._orphans(at_stripe, in_scope, f"reversal of {transfer.gateway_transfer_id}", live_only=False)
        reversed_at_stripe = sum(o.amount for o in at_stripe)
        if reversed_at_stripe != transfer.reversed_amount:
            self.note(
                "total_mismatch",
                None,
                "",
                f"transfer {transfer.gateway_transfer_id}: {reversed_at_stripe} {transfer.currency} reversed at "
                f"Stripe, {transfer.reversed_amount} here",
            )

    def _orphans(self, objects: list, in_scope: set[int], what: str, *, live_only: bool) -> None:
        foreign: dict[int, list] = defaultdict(list)
        for obj in objects:
            if live_only and obj.status not in LIVE_REFUND_STATUSES:
                continue
            refund_id = stripe_object_refund_id(obj)
            if refund_id is None:
                detail = f"{what}: {_describe([obj])} has no refund_id metadata"
                self.note("outside_engine", None, "", detail, stripe_id=obj.id)
            elif refund_id not in in_scope:
                foreign[refund_id].append(obj)
        if foreign:
            known = set(Refund.objects.filter(pk__in=foreign).values_list("pk", flat=True))
            for refund_id, found in sorted(foreign.items()):
                if refund_id not in known:
                    self.note("missing_locally", refund_id, "", f"{what}: {_describe(found)}, no such refund here")


def _ids(objects) -> str:
    return ", ".join(o.id for o in objects)


def _describe(objects) -> str:
    parts = []
    for obj in objects:
        status = getattr(obj, "status", "")
        parts.append(f"{obj.id} ({obj.amount} {obj.currency}{', ' + status if status else ''})")
    return ", ".join(parts)


class RefundsUnknown(Exception):
    """Some of the refund ids asked for do not exist; `ids` lists them."""

    def __init__(self, ids: list[int]):
        super().__init__(f"No refund with id {', '.join(map(str, ids))}.")
        self.ids = ids


@dataclass(frozen=True)
class ReconciliationReport:
    scope: str  # which refunds were compared, for people
    payments: int
    transfers: int
    differences: list[Difference]


def refunds_reconcile(
    *, since_days: int = 30, refund_ids: list[int] | None = None, gateway=None
) -> ReconciliationReport:
    """Compare the given refunds (or those created in the last `since_days` days) with Stripe.
    Raises RefundsUnknown for ids that do not exist, StripeUnavailable when Stripe cannot be read
    (nothing is concluded then)."""
    queryset = refunds_for_reconciliation()
    if refund_ids:
        refunds = list(queryset.filter(pk__in=refund_ids).order_by("pk"))
        unknown = sorted(set(refund_ids) - {r.pk for r in refunds})
        if unknown:
            raise RefundsUnknown(unknown)
        scope = f"refunds {', '.join(str(r.pk) for r in refunds)}"
    else:
        cutoff = timezone.now() - dt.timedelta(days=since_days)
        refunds = list(queryset.filter(date_created__gte=cutoff).order_by("pk"))
        scope = f"{len(refunds)} refunds created in the last {since_days} days"
    reconciliation = Reconciliation(refunds, gateway or get_gateway())
    differences = reconciliation.run()
    return ReconciliationReport(
        scope=scope,
        payments=len(reconciliation.payments),
        transfers=len(reconciliation.transfers),
        differences=differences,
    )
