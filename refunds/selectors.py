"""Refund reads. Most are scoped to one app (channel): the only way the channel API reaches orders,
bags and refunds.

Every function takes the authenticated app and filters by it in the same query, so an id that
belongs to another app behaves exactly like an id that does not exist: `<Model>.DoesNotExist`,
which the API turns into the same 404. Refund reads load everything the API shows in a fixed
number of queries, however many SKUs, errors or reversals a refund has.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet, prefetch_related_objects
from django.utils import timezone

from payments.models import Transfer, TransferReversal
from refunds.models import (
    App,
    AppMembership,
    Bag,
    ForwardingState,
    Order,
    ReconciliationFinding,
    Refund,
    RefundError,
    RefundSku,
    RefundStatus,
)
from violet_refunds.money import allocate_pro_rata


def app_get(app_id: int) -> App | None:
    return App.objects.filter(pk=app_id).first()


def app_membership_role(*, app: App, user) -> str | None:
    """The user's role in the app (AppMembership.Role), or None when they are not a member."""
    return AppMembership.objects.filter(app=app, user=user).values_list("role", flat=True).first()


def app_owner_get(*, app: App, user_id: int):
    """The active user with this id who owns the app, or None."""
    membership = (
        AppMembership.objects.select_related("user")
        .filter(app=app, user_id=user_id, role=AppMembership.Role.OWNER, user__is_active=True)
        .first()
    )
    return membership.user if membership else None


def app_owner_membership_get(*, app_id: int, user_id: int) -> AppMembership | None:
    """The app and its active owner with this user id, in one query (the API's hot path)."""
    return (
        AppMembership.objects.select_related("app", "user")
        .filter(app_id=app_id, user_id=user_id, role=AppMembership.Role.OWNER, user__is_active=True)
        .first()
    )


def order_get_for_app(app: App, order_id: int) -> Order:
    return Order.objects.get(pk=order_id, app=app)


def bag_get_for_app(app: App, order_id: int, bag_id: int) -> Bag:
    return Bag.objects.select_related("order").get(pk=bag_id, order_id=order_id, order__app=app)


_REVERSAL_IDS = TransferReversal.objects.only("id", "refund_id", "gateway_reversal_id").order_by("id")
# Related rows the API object shows, and the flag (annotated on the main query) saying a refund has any.
_DETAILS = (
    ("skus", "has_skus", "skus"),
    ("errors", "has_errors", "errors"),
    ("transfer_reversals", "has_reversals", Prefetch("transfer_reversals", queryset=_REVERSAL_IDS)),
)


def _refunds_for_api() -> QuerySet[Refund]:
    """Refunds with their order and payment, and flags telling which related rows exist."""
    return (
        Refund.objects.select_related("bag__order__payment_transaction")
        .annotate(
            has_skus=Exists(RefundSku.objects.filter(refund=OuterRef("pk"))),
            has_errors=Exists(RefundError.objects.filter(refund=OuterRef("pk"))),
            has_reversals=Exists(TransferReversal.objects.filter(refund=OuterRef("pk"))),
        )
        .order_by("id")
    )


def _with_details(refunds: list[Refund]) -> list[Refund]:
    """SKUs, errors and reversal ids, one query per kind that some refund has: most refunds have no
    errors, so the common read skips that query (the count never grows with the rows)."""
    for cache_name, flag, lookup in _DETAILS:
        having = [refund for refund in refunds if getattr(refund, flag)]
        for refund in refunds:
            if not getattr(refund, flag):
                cache = refund.__dict__.setdefault("_prefetched_objects_cache", {})
                cache[cache_name] = getattr(refund, cache_name).none()
        if having:
            prefetch_related_objects(having, lookup)
    return refunds


def refund_get_for_app(app: App, order_id: int, refund_id: int) -> Refund:
    refund = _refunds_for_api().get(pk=refund_id, bag__order_id=order_id, bag__order__app=app)
    return _with_details([refund])[0]


def refund_list_for_order(app: App, order_id: int) -> list[Refund]:
    """Refunds of every bag of the order, by id. Order.DoesNotExist when the app has no such order."""
    if not Order.objects.filter(pk=order_id, app=app).exists():
        raise Order.DoesNotExist
    return _with_details(list(_refunds_for_api().filter(bag__order_id=order_id)))


def refund_list_for_bag(app: App, order_id: int, bag_id: int) -> list[Refund]:
    """Refunds of one bag, by id. Bag.DoesNotExist when the app has no such bag in that order."""
    if not Bag.objects.filter(pk=bag_id, order_id=order_id, order__app=app).exists():
        raise Bag.DoesNotExist
    return _with_details(list(_refunds_for_api().filter(bag_id=bag_id)))


def refunds_stuck_queryset(now: datetime | None = None) -> QuerySet[Refund]:
    """PROCESSING refunds nobody is working on: their next pass is overdue by
    REFUND_STUCK_AFTER_SECONDS (the message was lost, or its worker died). A copy sent while a pass
    is in fact running finds the refund locked and does nothing."""
    now = now or timezone.now()
    threshold = now - timedelta(seconds=settings.REFUND_STUCK_AFTER_SECONDS)
    # A refund whose forwarding waits for an operator (STALLED) is not stuck: triage lists it as such.
    return (
        Refund.objects.filter(status=RefundStatus.PROCESSING)
        .filter(Q(next_attempt_at__lt=threshold) | Q(next_attempt_at__isnull=True, date_last_modified__lt=threshold))
        .exclude(forwarding__state=ForwardingState.STALLED)
    )


def refunds_forwarding_stalled_queryset() -> QuerySet[Refund]:
    """PROCESSING refunds whose platform stayed unreachable past FORWARDING_MAX_ATTEMPTS: an operator
    retries forwarding or moves the money without the platform."""
    return Refund.objects.filter(status=RefundStatus.PROCESSING, forwarding__state=ForwardingState.STALLED)


def refunds_outcome_unknown_queryset() -> QuerySet[Refund]:
    """PROCESSING refunds with a money step whose outcome is unknown (Stripe may hold it), oldest
    first: the engine keeps looking them up; operators can see what waits on Stripe."""
    return Refund.objects.filter(status=RefundStatus.PROCESSING, outcome_unknown_since__isnull=False).order_by(
        "outcome_unknown_since"
    )


def refunds_for_reconciliation() -> QuerySet[Refund]:
    """Refunds with everything the reconciliation compares with Stripe: the bag's payment and
    transfers, the refund's reversals (with their transfer) and its shopper refund."""
    return Refund.objects.select_related("bag__order__payment_transaction").prefetch_related(
        Prefetch("bag__transfers", queryset=Transfer.objects.order_by("pk")),
        Prefetch("transfer_reversals", queryset=TransferReversal.objects.select_related("transfer").order_by("pk")),
        "shopper_refund__payment_transaction",
    )


def findings_open_count() -> int:
    """Findings with Stripe still waiting for an operator (the admin index's triage card)."""
    return ReconciliationFinding.objects.filter(state=ReconciliationFinding.State.OPEN).count()


def refund_sku_amounts(refund: Refund) -> dict[int, int]:
    """What each of the refund's lines (RefundSku id) returned, in minor units of the refund currency.

    A line keeps the amount the platform gave for it. Lines without one share what is left of the
    refund's sub_total once those are taken out, in proportion to price x quantity refunded (so a
    bag discount is spread over them the way the sub_total was), adding up to exactly that sub_total
    (violet_refunds.money.allocate_pro_rata). Should the platform's line amounts exceed the sub_total
    (nothing left to share), such a line shows price x quantity."""
    lines = list(refund.skus.select_related("order_sku").order_by("pk"))
    amounts = {line.pk: line.amount_refunded for line in lines if line.amount_refunded is not None}
    missing = [line for line in lines if line.amount_refunded is None]
    if not missing:
        return amounts
    values = [line.order_sku.price * line.quantity_refunded for line in missing]
    left = refund.sub_total_amount - sum(amounts.values())
    if left >= 0:
        values = allocate_pro_rata(left, values)
    amounts.update({line.pk: value for line, value in zip(missing, values, strict=True)})
    return amounts
