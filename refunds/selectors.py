"""Refund reads. Most are scoped to one app (channel): the only way the channel API reaches orders,
bags and refunds.

Every function takes the authenticated app and filters by it in the same query, so an id that
belongs to another app behaves exactly like an id that does not exist: `<Model>.DoesNotExist`,
which the API turns into the same 404. Refund reads load everything the API shows in a fixed
number of queries, however many SKUs, errors or reversals a refund has: on PostgreSQL one statement
that returns the rendered Order Refund objects (`refund_documents_*`, representation.REFUND_JSON),
elsewhere the ORM and representation.refund_representation.
"""

import functools
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import Exists, Model, OuterRef, Prefetch, Q, QuerySet, prefetch_related_objects
from django.utils import timezone

from payments.models import PaymentTransaction, Transfer, TransferReversal
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
from refunds.representation import (
    REFUND_JSON,
    REFUND_JSON_JOINS,
    refund_json_params,
    refund_representation,
    refunds_render_in_sql,
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


_M = TypeVar("_M", bound=Model)


@dataclass(frozen=True)
class _RowReader:
    """How to select a model's concrete columns and turn them into an instance as the ORM would
    (booleans on SQLite, JSON, decimals...): built once per model and database vendor."""

    columns: str
    attnames: list[str]
    converters: list[tuple]  # per column: (converters, the column expression they are given)


@functools.cache
def _row_reader(model: type[Model], alias: str, vendor: str) -> _RowReader:
    fields = list(model._meta.concrete_fields)
    converters = []
    for field in fields:
        col = field.get_col(model._meta.db_table)
        converters.append(((*connection.ops.get_db_converters(col), *field.get_db_converters(connection)), col))
    return _RowReader(
        # A concrete field always has a column (only non-concrete ones have None).
        columns=", ".join(f"{alias}.{connection.ops.quote_name(cast(str, f.column))}" for f in fields),
        attnames=[f.attname for f in fields],
        converters=converters,
    )


def _instance_from_row(model: type[_M], reader: _RowReader, values) -> _M:
    converted = []
    for (converters, col), value in zip(reader.converters, values, strict=True):
        for converter in converters:
            value = converter(value, col, connection)
        converted.append(value)
    return model.from_db(DEFAULT_DB_ALIAS, reader.attnames, converted)


def app_owner_credentials_get(*, app_id: int, user_id: int) -> tuple[App, Any] | None:
    """The app and its active owner with this user id, or None: the API's authentication hot path,
    one plain statement (no queryset to build and compile on every request). Read fresh on every
    call, so a revoked ownership or a deactivated user is refused at once."""
    user_model = get_user_model()
    app_reader = _row_reader(App, "a", connection.vendor)
    user_reader = _row_reader(user_model, "u", connection.vendor)
    sql = (
        f"SELECT {app_reader.columns}, {user_reader.columns} FROM {AppMembership._meta.db_table} m "  # noqa: S608 - table and column names only; values are parameters
        f"JOIN {App._meta.db_table} a ON a.id = m.app_id "
        f"JOIN {user_model._meta.db_table} u ON u.id = m.user_id "
        "WHERE m.app_id = %s AND m.user_id = %s AND m.role = %s AND u.is_active = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [app_id, user_id, AppMembership.Role.OWNER.value, True])
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(app_reader.attnames)
    return _instance_from_row(App, app_reader, row[:split]), _instance_from_row(user_model, user_reader, row[split:])


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


# --- the Order Refund object, rendered (what the API answers and the outbox sends) -----------------

# Ids are int64 in the database: a larger one names nothing, and is refused before it reaches a driver
# (SQLite's would raise OverflowError, a 500).
_MAX_ID = 2**63 - 1


def _ids_in_range(*ids: int) -> bool:
    return all(0 < value <= _MAX_ID for value in ids)


def _json_row(sql: str, params: list):
    """The first column of the statement's one row, parsed from JSON text; None without a row."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else json.loads(row[0])


_REFUND_FOR_APP_SQL = (
    f"SELECT ({REFUND_JSON})::text FROM {Refund._meta.db_table} r {REFUND_JSON_JOINS} "  # noqa: S608 - table and column names only; values are parameters
    "WHERE r.id = %s AND b.order_id = %s AND o.app_id = %s"
)
# The outer row says the order (or bag) is the app's, so no refunds ([]) differs from not found.
_REFUNDS_OF_ORDER_SQL = (
    f"SELECT COALESCE((SELECT json_agg({REFUND_JSON} ORDER BY r.id) FROM {Refund._meta.db_table} r "  # noqa: S608 - table and column names only; values are parameters
    f"JOIN {Bag._meta.db_table} b ON b.id = r.bag_id "
    f"LEFT JOIN {PaymentTransaction._meta.db_table} p ON p.order_id = o.id "
    "WHERE b.order_id = o.id), '[]')::text "
    f"FROM {Order._meta.db_table} o WHERE o.id = %s AND o.app_id = %s"
)
_REFUNDS_OF_BAG_SQL = (
    f"SELECT COALESCE((SELECT json_agg({REFUND_JSON} ORDER BY r.id) FROM {Refund._meta.db_table} r "  # noqa: S608 - table and column names only; values are parameters
    f"LEFT JOIN {PaymentTransaction._meta.db_table} p ON p.order_id = o.id "
    "WHERE r.bag_id = b.id), '[]')::text "
    f"FROM {Bag._meta.db_table} b JOIN {Order._meta.db_table} o ON o.id = b.order_id "
    "WHERE b.id = %s AND b.order_id = %s AND o.app_id = %s"
)


def refund_document_for_app(app: App, order_id: int, refund_id: int) -> dict:
    """The Order Refund object of the app's refund: one statement on PostgreSQL.
    Refund.DoesNotExist when the app has no such refund in that order."""
    if not _ids_in_range(order_id, refund_id):
        raise Refund.DoesNotExist
    if not refunds_render_in_sql():
        return refund_representation(refund_get_for_app(app, order_id, refund_id))
    document = _json_row(_REFUND_FOR_APP_SQL, [*refund_json_params(), refund_id, order_id, app.pk])
    if document is None:
        raise Refund.DoesNotExist
    return document


def refund_documents_for_order(app: App, order_id: int) -> list[dict]:
    """The order's refunds (every bag), by id: one statement on PostgreSQL. Order.DoesNotExist
    when the app has no such order."""
    if not _ids_in_range(order_id):
        raise Order.DoesNotExist
    if not refunds_render_in_sql():
        return [refund_representation(refund) for refund in refund_list_for_order(app, order_id)]
    documents = _json_row(_REFUNDS_OF_ORDER_SQL, [*refund_json_params(), order_id, app.pk])
    if documents is None:
        raise Order.DoesNotExist
    return documents


def refund_documents_for_bag(app: App, order_id: int, bag_id: int) -> list[dict]:
    """The bag's refunds, by id: one statement on PostgreSQL. Bag.DoesNotExist when the app has no
    such bag in that order."""
    if not _ids_in_range(order_id, bag_id):
        raise Bag.DoesNotExist
    if not refunds_render_in_sql():
        return [refund_representation(refund) for refund in refund_list_for_bag(app, order_id, bag_id)]
    documents = _json_row(_REFUNDS_OF_BAG_SQL, [*refund_json_params(), bag_id, order_id, app.pk])
    if documents is None:
        raise Bag.DoesNotExist
    return documents


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
