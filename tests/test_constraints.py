"""The data model's rules hold in the database itself, whatever code (or hand) writes a row.

Every CheckConstraint and UniqueConstraint of platforms, refunds and payments has a case that
breaks it with a queryset `update()` (which skips model validation) and expects an IntegrityError
naming that constraint; the same goes for every `unique=True` column (gateway ids and idempotency
keys are what make money move exactly once). Completeness tests fail when a rule is added to a
model without a case here, and a schema test proves each named constraint exists in the database.
"""

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.apps import apps
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F

from payments.models import PaymentTransaction, ShopperRefund, Transfer, TransferReversal
from platforms.models import MerchantApiKey, OmsConnection, StoreConnection
from refunds.models import ReconciliationFinding, RefundForwarding
from tests.factories import (
    AppFactory,
    AppMembershipFactory,
    BagFactory,
    InboundEventFactory,
    MerchantApiKeyFactory,
    MerchantFactory,
    MerchantMembershipFactory,
    OmsConnectionFactory,
    OrderFactory,
    OrderSkuFactory,
    PaymentTransactionFactory,
    PrivacyRequestFactory,
    ReconciliationFindingFactory,
    RefundFactory,
    RefundForwardingFactory,
    RefundSkuFactory,
    ShopperRefundFactory,
    StoreConnectionFactory,
    TransferFactory,
    TransferReversalFactory,
    WebhookSubscriptionFactory,
)

APPS_WITH_RULES = ("platforms", "refunds", "payments")


def _models_with_rules():
    return [model for label in APPS_WITH_RULES for model in apps.get_app_config(label).get_models()]


MODEL_CONSTRAINTS = {
    constraint.name: (model, constraint)
    for model in _models_with_rules()
    for constraint in model._meta.constraints
    if isinstance(constraint, models.CheckConstraint | models.UniqueConstraint)
}


def _row(obj):
    return type(obj)._default_manager.filter(pk=obj.pk)


@dataclass(frozen=True)
class Case:
    """`build()` makes valid rows and returns (queryset, changes) whose update breaks `constraint`.

    `also` names constraints the same change cannot help breaking too (a negative tax_amount is
    necessarily below its shipping part); the database may report any of them.
    """

    constraint: str
    build: Callable[[], tuple[models.QuerySet, dict]]
    label: str = ""
    also: tuple[str, ...] = ()

    @property
    def id(self):
        return f"{self.constraint}-{self.label}" if self.label else self.constraint


def _set(make, **changes):
    return lambda: (_row(make()), changes)


def _copy_from_first(make_pair, *fields):
    """Two valid rows; give the second the first's values of `fields`."""

    def build():
        first, second = make_pair()
        return _row(second), {field: getattr(first, field) for field in fields}

    return build


def _refund_negative_part(field):
    # amount stays equal to the sum of its parts, so only the non-negative rule breaks.
    def build():
        refund = RefundFactory(sub_total_amount=5000, shipping_amount=500)
        return _row(refund), {field: -1, "amount": refund.amount - getattr(refund, field) - 1}

    return build


def _pair_of(make_first, make_second):
    def build():
        first = make_first()
        return first, make_second(first)

    return build


def _second_transfer_of(first_reversal):
    return TransferFactory(
        bag=first_reversal.refund.bag,
        payment_transaction=first_reversal.transfer.payment_transaction,
        recipient="DEVELOPER",
    )


NON_NEGATIVE = [
    *[
        Case(f"order_{field}_non_negative", _set(OrderFactory, **{field: -1}))
        for field in ("sub_total", "shipping_total", "tax_total", "discount_total", "total")
    ],
    *[
        Case(f"bag_{field}_non_negative", _set(BagFactory, **{field: -1}))
        for field in ("sub_total", "shipping_total", "tax_total", "discount_total", "total")
    ],
    Case("order_sku_price_non_negative", _set(OrderSkuFactory, price=-1)),
    Case("order_sku_line_price_non_negative", _set(OrderSkuFactory, line_price=-1)),
    Case("refund_sub_total_amount_non_negative", _refund_negative_part("sub_total_amount")),
    Case("refund_shipping_amount_non_negative", _refund_negative_part("shipping_amount")),
    Case("refund_shipping_tax_amount_non_negative", _set(RefundFactory, shipping_tax_amount=-1)),
    Case(
        "refund_tax_amount_non_negative",
        _set(lambda: RefundFactory(tax_amount=800), tax_amount=-1, amount=4999),
        also=("refund_shipping_tax_within_tax",),
    ),
    *[
        Case(f"refund_{field}_non_negative", _set(RefundFactory, **{field: -1}))
        for field in (
            "merchant_transfer_reversal_amount_usd",
            "developer_transfer_reversal_amount_usd",
        )
    ],
    Case(
        "refund_merchant_reversal_platform_ccy_non_negative",
        _set(RefundFactory, merchant_transfer_reversal_amount_platform_currency=-1),
    ),
    Case(
        "refund_developer_reversal_platform_ccy_non_negative",
        _set(RefundFactory, developer_transfer_reversal_amount_platform_currency=-1),
    ),
    Case("refund_sku_amount_refunded_non_negative", _set(RefundSkuFactory, amount_refunded=-1)),
    Case(
        "payment_transaction_amount_non_negative",
        _set(PaymentTransactionFactory, amount=-1),
        also=("payment_transaction_refunded_lte_amount",),
    ),
    Case(
        "payment_transaction_amount_refunded_non_negative",
        _set(PaymentTransactionFactory, amount_refunded=-1),
    ),
    Case("transfer_bag_amount_non_negative", _set(TransferFactory, bag_amount=-1)),
    Case(
        "transfer_amount_non_negative",
        _set(TransferFactory, amount=-1),
        also=("transfer_reversed_lte_amount",),
    ),
    Case("transfer_reversed_amount_non_negative", _set(TransferFactory, reversed_amount=-1)),
    Case("transfer_reversal_amount_non_negative", _set(TransferReversalFactory, amount=-1)),
    Case("transfer_reversal_bag_amount_non_negative", _set(TransferReversalFactory, bag_amount=-1)),
    Case("shopper_refund_amount_non_negative", _set(ShopperRefundFactory, amount=-1)),
]

BUSINESS_RULES = [
    Case("merchant_sfcc_mode_only_for_sfcc", _set(MerchantFactory, sfcc_refund_mode="MANUAL_NOTICE")),
    Case("merchant_sfcc_requires_mode", _set(lambda: MerchantFactory(platform="SFCC"), sfcc_refund_mode="")),
    Case("app_commission_rate_range", _set(AppFactory, commission_rate=Decimal("101")), "101"),
    Case("app_commission_rate_range", _set(AppFactory, commission_rate=Decimal("-1")), "minus-1"),
    Case("bag_commission_rate_range", _set(BagFactory, commission_rate=Decimal("100.01")), "100.01"),
    Case("bag_commission_rate_range", _set(BagFactory, commission_rate=Decimal("-0.01")), "minus-0.01"),
    Case("order_sku_quantity_min_1", _set(OrderSkuFactory, quantity=0)),
    Case(
        "order_sku_refunded_lte_ordered",
        _set(lambda: OrderSkuFactory(quantity=2), quantity_refunded=F("quantity") + 1),
    ),
    Case("refund_amount_positive", _set(RefundFactory, amount=0, sub_total_amount=0)),
    Case("refund_amount_is_sum_of_parts", _set(RefundFactory, amount=F("amount") + 1)),
    Case(
        "refund_shipping_tax_within_tax",
        _set(lambda: RefundFactory(tax_amount=800), shipping_tax_amount=801),
    ),
    Case("refund_sku_quantity_min_1", _set(RefundSkuFactory, quantity_refunded=0)),
    Case(
        "payment_transaction_refunded_lte_amount",
        _set(PaymentTransactionFactory, amount_refunded=F("amount") + 1),
    ),
    Case("transfer_reversed_lte_amount", _set(TransferFactory, reversed_amount=F("amount") + 1)),
]

DUPLICATES = [
    Case(
        "membership_unique_user",
        _copy_from_first(
            _pair_of(MerchantMembershipFactory, lambda first: MerchantMembershipFactory(merchant=first.merchant)),
            "user_id",
        ),
    ),
    Case(
        "inbound_event_unique_id",
        _copy_from_first(
            _pair_of(InboundEventFactory, lambda first: InboundEventFactory(connection=first.connection)),
            "event_id",
        ),
    ),
    Case(
        "app_membership_unique_user",
        _copy_from_first(_pair_of(AppMembershipFactory, lambda first: AppMembershipFactory(app=first.app)), "user_id"),
    ),
    Case(
        "bag_unique_external_id_per_merchant",
        _copy_from_first(_pair_of(BagFactory, lambda first: BagFactory(merchant=first.merchant)), "external_id"),
    ),
    Case(
        "webhook_subscription_unique_topic",
        _copy_from_first(
            _pair_of(WebhookSubscriptionFactory, lambda first: WebhookSubscriptionFactory(connection=first.connection)),
            "topic",
        ),
    ),
    Case(
        "privacy_request_unique_delivery",
        _copy_from_first(_pair_of(PrivacyRequestFactory, lambda first: PrivacyRequestFactory()), "delivery_id"),
    ),
    Case(
        "refund_unique_external_id_per_bag",
        _copy_from_first(_pair_of(RefundFactory, lambda first: RefundFactory(bag=first.bag)), "external_id"),
    ),
    Case(
        "refund_unique_request_key_per_sender",
        _copy_from_first(
            _pair_of(
                lambda: RefundFactory(request_key="idem-key-1", request_scope="app:1"),
                lambda first: RefundFactory(bag=first.bag, request_key="idem-key-2", request_scope="app:1"),
            ),
            "request_key",
        ),
    ),
    Case(
        "refund_sku_unique_line",
        _copy_from_first(
            _pair_of(RefundSkuFactory, lambda first: RefundSkuFactory(refund=first.refund)), "order_sku_id"
        ),
    ),
    Case(
        "transfer_unique_recipient",
        _copy_from_first(
            _pair_of(
                TransferFactory,
                lambda first: TransferFactory(
                    bag=first.bag, payment_transaction=first.payment_transaction, recipient="DEVELOPER"
                ),
            ),
            "recipient",
        ),
    ),
    Case(
        "transfer_reversal_unique_per_refund",
        _copy_from_first(
            _pair_of(
                TransferReversalFactory,
                lambda first: TransferReversalFactory(refund=first.refund, transfer=_second_transfer_of(first)),
            ),
            "transfer_id",
        ),
    ),
]

CASES = NON_NEGATIVE + BUSINESS_RULES + DUPLICATES

# unique=True columns (and one-to-ones): the factory that makes an independent valid row.
UNIQUE_COLUMN_FACTORIES = {
    MerchantApiKey: MerchantApiKeyFactory,
    StoreConnection: StoreConnectionFactory,
    PaymentTransaction: PaymentTransactionFactory,
    Transfer: TransferFactory,
    TransferReversal: TransferReversalFactory,
    ShopperRefund: ShopperRefundFactory,
    ReconciliationFinding: ReconciliationFindingFactory,
    OmsConnection: OmsConnectionFactory,
    RefundForwarding: RefundForwardingFactory,
}


def _unique_columns():
    return [
        (model, field)
        for model in _models_with_rules()
        for field in model._meta.concrete_fields
        if field.unique and not field.primary_key
    ]


def _name_in_database(name: str) -> str:
    # PostgreSQL keeps the first 63 bytes of an identifier; the constraint is enforced all the same.
    limit = connection.ops.max_name_length()
    return name[:limit] if limit else name


def _names_constraint(error: IntegrityError, model, constraint) -> bool:
    """Whether the database's message names `constraint`. SQLite names a unique index by its columns."""
    message = str(error)
    if _name_in_database(constraint.name) in message:
        return True
    if connection.vendor == "sqlite" and isinstance(constraint, models.UniqueConstraint):
        columns = ", ".join(
            f"{model._meta.db_table}.{model._meta.get_field(name).column}" for name in constraint.fields
        )
        return f"UNIQUE constraint failed: {columns}" in message
    return False


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_database_refuses_a_row_that_breaks_the_constraint(case):
    rows, changes = case.build()
    before = list(rows.values())

    with pytest.raises(IntegrityError) as raised, transaction.atomic():
        rows.update(**changes)

    model, _constraint = MODEL_CONSTRAINTS[case.constraint]
    reportable = [MODEL_CONSTRAINTS[name][1] for name in (case.constraint, *case.also)]
    assert any(_names_constraint(raised.value, model, constraint) for constraint in reportable), raised.value
    assert list(rows.values()) == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("model", "field"), _unique_columns(), ids=lambda value: getattr(value, "name", None) or value.__name__
)
def test_database_refuses_a_duplicate_in_a_unique_column(model, field):
    make = UNIQUE_COLUMN_FACTORIES[model]
    first, second = make(), make()
    value = getattr(first, field.attname)
    if value is None:  # optional gateway ids: give the first row one, then copy it
        value = f"dup_{field.name}"
        _row(first).update(**{field.attname: value})

    with pytest.raises(IntegrityError) as raised, transaction.atomic():
        _row(second).update(**{field.attname: value})
    assert field.column in str(raised.value)


def test_every_constraint_of_the_model_has_a_case():
    assert {case.constraint for case in CASES} == set(MODEL_CONSTRAINTS)


def test_every_unique_column_has_a_factory():
    assert {model for model, _field in _unique_columns()} == set(UNIQUE_COLUMN_FACTORIES)


@pytest.mark.django_db
def test_every_named_constraint_exists_in_the_database_schema():
    with connection.cursor() as cursor:
        in_schema = {
            name
            for model in _models_with_rules()
            for name in connection.introspection.get_constraints(cursor, model._meta.db_table)
        }
    assert {_name_in_database(name) for name in MODEL_CONSTRAINTS} <= in_schema


@pytest.mark.django_db
@pytest.mark.parametrize(
    "make_valid_rows",
    [
        pytest.param(lambda: AppFactory(commission_rate=Decimal("100")), id="commission 100"),
        pytest.param(lambda: AppFactory(commission_rate=Decimal("0")), id="commission 0"),
        pytest.param(lambda: BagFactory(commission_rate=Decimal("100")), id="bag commission 100"),
        pytest.param(lambda: MerchantFactory(platform="SFCC", sfcc_refund_mode="CANCEL_AS_REFUND"), id="sfcc"),
        pytest.param(lambda: OrderSkuFactory(quantity=3, quantity_refunded=3), id="all units refunded"),
        pytest.param(lambda: RefundFactory(tax_amount=800, shipping_tax_amount=800), id="all tax on shipping"),
        pytest.param(lambda: RefundFactory(sub_total_amount=0, shipping_amount=1), id="amount one cent"),
        pytest.param(lambda: TransferFactory(reversed_amount=10300), id="transfer fully reversed"),
        pytest.param(lambda: PaymentTransactionFactory(amount_refunded=11300), id="payment fully refunded"),
        pytest.param(
            lambda: RefundFactory.create_batch(2, bag=BagFactory(), external_id=None, request_key=None),
            id="refunds without external id or request key",
        ),
        pytest.param(
            lambda: BagFactory.create_batch(2, merchant=MerchantFactory(), external_id=None),
            id="bags not submitted yet",
        ),
        pytest.param(
            lambda: [RefundFactory(external_id="1001"), RefundFactory(external_id="1001")],
            id="same refund id on two bags",
        ),
    ],
)
def test_database_accepts_the_boundary_values(make_valid_rows):
    rows = make_valid_rows()
    for row in rows if isinstance(rows, list) else [rows]:
        assert _row(row).exists()
