"""The Order Refund object has two renderers (refunds.representation): PostgreSQL builds it in the
query (REFUND_JSON), any other database renders loaded rows in Python. They must answer the same
bytes for every status, reason code and shape; the schema's serializers must say what they render;
and the outbox sends what the API returns. The API reads a refund in at most two statements
(credentials, then the refund), however many SKUs it has.
"""

import datetime as dt
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.renderers import JSONRenderer

from notifications.models import WebhookEvent
from payments.models import Recipient
from refunds import announcements, representation, selectors
from refunds.models import Bag, Order, ReasonCode, Refund, RefundStatus
from tests.factories import (
    BagFactory,
    OrderFactory,
    OrderSkuFactory,
    PaymentTransactionFactory,
    RefundErrorFactory,
    RefundFactory,
    RefundSkuFactory,
    TransferFactory,
    TransferReversalFactory,
)
from tests.refunds.api.conftest import place_order

pytestmark = pytest.mark.django_db

# Text that JSON must escape, or that DRF escapes and PostgreSQL does not (U+2028/U+2029), or that
# is not ASCII.
AWKWARD_TEXT = 'Say "no" \\ back\nslash\ttab \x01 \u2028 \u2029 café 日本 🧾 </script>'
CURRENCIES = ["JPY", "USD", "KWD"]  # 0, 2 and 3 decimals: amounts are minor units in every one


def _render(data) -> bytes:
    return JSONRenderer().render(data)


def _shapes(app) -> list[Refund]:
    """Refunds covering every status, every reason code, and the shapes the object can take."""
    refunds = []

    def bag_in(currency: str, *, with_payment: bool = True) -> Bag:
        order = OrderFactory(app=app, currency=currency)
        if with_payment:
            PaymentTransactionFactory(order=order, currency=currency)
        return BagFactory(order=order, currency=currency)

    # Every status x every reason code, in each currency, with one SKU.
    for index, status in enumerate(RefundStatus.values):
        for code_index, reason_code in enumerate(ReasonCode.values):
            currency = CURRENCIES[(index + code_index) % len(CURRENCIES)]
            bag = bag_in(currency)
            refund = RefundFactory(bag=bag, status=status, reason_code=reason_code, reason=f"{status} {reason_code}")
            RefundSkuFactory(refund=refund, order_sku=OrderSkuFactory(bag=bag))
            refunds.append(refund)

    # No SKUs, no errors, no reversals, every optional field empty or null, no payment.
    bare = RefundFactory(
        bag=bag_in("USD", with_payment=False),
        external_id=None,
        platform_currency="",
        reason="",
        merchant_transfer_reversal_amount_usd=None,
        developer_transfer_reversal_amount_usd=None,
        merchant_transfer_reversal_amount_platform_currency=None,
        developer_transfer_reversal_amount_platform_currency=None,
    )
    refunds.append(bare)
    refunds.append(RefundFactory(bag=bag_in("EUR"), external_id="", platform_currency="EUR"))

    # Many SKUs, errors (resolved and not, awkward text), reversals (made, not made yet, blank id),
    # shipping with a discrepancy, tax, every amount set, sub-second timestamps.
    bag = bag_in("KWD")
    full = RefundFactory(
        bag=bag,
        status=RefundStatus.PARTIALLY_COMPLETED,
        sub_total_amount=12345,
        shipping_amount=500,
        shipping_tax_amount=55,
        tax_amount=1055,
        shipping_full_refund=True,
        shipping_discrepancy_reason=AWKWARD_TEXT,
        reason=AWKWARD_TEXT,
        reason_code=ReasonCode.DECLINED,
        external_id=AWKWARD_TEXT,
        merchant_transfer_reversal_amount_usd=2**40,
        developer_transfer_reversal_amount_usd=0,
        merchant_transfer_reversal_amount_platform_currency=7,
        developer_transfer_reversal_amount_platform_currency=2**53 + 1,
    )
    for n in range(50):
        RefundSkuFactory(refund=full, order_sku=OrderSkuFactory(bag=bag), quantity_refunded=n + 1)
    RefundSkuFactory(refund=full, order_sku=OrderSkuFactory(bag=bag), external_id=AWKWARD_TEXT)
    RefundErrorFactory(refund=full, error_message=AWKWARD_TEXT, error_code=3100)
    RefundErrorFactory(
        refund=full,
        resolved=True,
        date_resolved=dt.datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    )
    merchant = TransferFactory(bag=bag, payment_transaction=bag.order.payment_transaction)
    channel_transfer = TransferFactory(
        bag=bag, payment_transaction=bag.order.payment_transaction, recipient=Recipient.DEVELOPER
    )
    TransferReversalFactory(refund=full, transfer=merchant, gateway_reversal_id="trr_made")
    TransferReversalFactory(refund=full, transfer=channel_transfer, gateway_reversal_id=None)
    Refund.objects.filter(pk=full.pk).update(
        date_created=dt.datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        date_last_modified=dt.datetime(2026, 6, 1, 0, 0, 0, 1, tzinfo=dt.timezone(dt.timedelta(hours=9))),
    )
    refunds.append(full)

    # Shipping tax only (shipping shown), and shipping without a discrepancy reason.
    refunds.append(
        RefundFactory(bag=bag_in("USD"), shipping_amount=0, shipping_tax_amount=10, tax_amount=10, sub_total_amount=1)
    )
    refunds.append(RefundFactory(bag=bag_in("JPY"), shipping_amount=300, shipping_full_refund=False))
    return refunds


def _orm_document(app, refund: Refund, settings) -> dict:
    settings.REFUND_JSON_IN_SQL = False
    try:
        return selectors.refund_document_for_app(app, refund.bag.order_id, refund.pk)
    finally:
        settings.REFUND_JSON_IN_SQL = True


def _sql_document(app, refund: Refund) -> dict:
    assert representation.refunds_render_in_sql()
    with CaptureQueriesContext(connection) as captured:
        document = selectors.refund_document_for_app(app, refund.bag.order_id, refund.pk)
    assert len(captured) == 1 and "json_build_object" in captured[0]["sql"]
    return document


def test_the_plain_renderer_renders_what_the_schemas_serializer_documents(channel):
    """The ORM path (any database) against the DRF serializer the OpenAPI schema is built from."""
    for refund in _shapes(channel.app):
        loaded = selectors.refund_get_for_app(channel.app, refund.bag.order_id, refund.pk)
        plain = representation.refund_representation(loaded)
        documented = representation.RefundSerializer(loaded).data
        assert list(plain) == list(documented)
        assert _render(plain) == _render(documented), refund.pk


def test_postgresql_and_the_plain_renderer_answer_the_same_bytes_for_every_shape(require_postgres, channel, settings):
    refunds = _shapes(channel.app)
    statuses, reason_codes, sku_counts = set(), set(), set()
    for refund in refunds:
        in_sql = _sql_document(channel.app, refund)
        plain = _orm_document(channel.app, refund, settings)
        assert list(in_sql) == list(plain)
        assert _render(in_sql) == _render(plain), refund.pk
        statuses.add(in_sql["status"])
        reason_codes.add(in_sql["reason_code"])
        sku_counts.add(len(in_sql["skus"]))
    # The shapes really were covered.
    assert statuses == set(RefundStatus.values)
    assert reason_codes == set(ReasonCode.values)
    assert {0, 1, 51} <= sku_counts
    full = next(r for r in refunds if r.reason == AWKWARD_TEXT)
    body = _sql_document(channel.app, full)
    assert body["date_created"] == "2025-12-31T23:59:59+0000"
    assert body["date_last_modified"] == "2026-05-31T15:00:00+0000"
    assert body["errors"][1]["date_resolved"] == "2026-01-02T08:04:05+0000"
    assert body["transfer_reversals"] == ["trr_made"]
    assert body["shipping"]["discrepancy_reason"] == AWKWARD_TEXT
    assert b"\\u2028" in _render(body)


def test_the_list_endpoints_answer_the_same_bytes_both_ways(require_postgres, api_client, channel, settings):
    refunds = _shapes(channel.app)
    full = next(r for r in refunds if r.reason == AWKWARD_TEXT)
    for n in range(3):
        RefundFactory(bag=full.bag, reason_code=ReasonCode.values[n])
    empty_order = place_order(channel.app)
    urls = [
        f"/v1/orders/{full.bag.order_id}/refunds",
        f"/v1/orders/{full.bag.order_id}/bags/{full.bag_id}/refunds",
        f"/v1/orders/{full.bag.order_id}/refunds/{full.pk}",
        f"/v1/orders/{empty_order.order.pk}/refunds",
        f"/v1/orders/{empty_order.order.pk}/bags/{empty_order.bag.pk}/refunds",
    ]
    for url in urls:
        settings.REFUND_JSON_IN_SQL = True
        in_sql = api_client.get(url, headers=channel.headers)
        settings.REFUND_JSON_IN_SQL = False
        plain = api_client.get(url, headers=channel.headers)
        assert in_sql.status_code == plain.status_code == 200
        assert in_sql.content == plain.content, url
    settings.REFUND_JSON_IN_SQL = True
    assert len(api_client.get(urls[0], headers=channel.headers).json()) == 4


@pytest.mark.parametrize("in_sql", [True, False], ids=["postgresql", "plain"])
def test_not_found_and_another_apps_ids_are_the_same_404_both_ways(
    request, api_client, channel, other_channel, settings, in_sql
):
    if in_sql:
        request.getfixturevalue("require_postgres")
    settings.REFUND_JSON_IN_SQL = in_sql
    mine = place_order(channel.app)
    theirs = place_order(other_channel.app)
    refund = RefundFactory(bag=theirs.bag)
    cases = {
        f"/v1/orders/{theirs.order.pk}/refunds/{refund.pk}": "Refund not found.",
        f"/v1/orders/{mine.order.pk}/refunds/{refund.pk}": "Refund not found.",
        f"/v1/orders/{2**63 - 1}/refunds/{2**63 - 1}": "Refund not found.",
        f"/v1/orders/{2**64}/refunds/1": "Refund not found.",
        f"/v1/orders/{theirs.order.pk}/refunds": "Order not found.",
        f"/v1/orders/{2**64}/refunds": "Order not found.",
        f"/v1/orders/{theirs.order.pk}/bags/{theirs.bag.pk}/refunds": "Bag not found.",
        f"/v1/orders/{mine.order.pk}/bags/{theirs.bag.pk}/refunds": "Bag not found.",
    }
    for url, message in cases.items():
        response = api_client.get(url, headers=channel.headers)
        assert response.status_code == 404, url
        body = response.json()
        assert (body["status"], body["message"], body["error_code"]) == (404, message, "not_found"), url


@pytest.mark.parametrize("sku_count", [1, 50])
@pytest.mark.parametrize("kind", ["detail", "order list", "bag list"])
def test_a_read_costs_two_queries_credentials_and_the_refunds(
    require_postgres, api_client, channel, django_assert_max_num_queries, sku_count, kind
):
    placed = place_order(channel.app)
    refund = RefundFactory(bag=placed.bag)
    for _ in range(sku_count):
        RefundSkuFactory(refund=refund, order_sku=OrderSkuFactory(bag=placed.bag))
    RefundErrorFactory(refund=refund)
    TransferReversalFactory(refund=refund, gateway_reversal_id="trr_1")
    RefundFactory(bag=BagFactory(order=placed.order))
    url = {
        "detail": f"/v1/orders/{placed.order.pk}/refunds/{refund.pk}",
        "order list": f"/v1/orders/{placed.order.pk}/refunds",
        "bag list": f"/v1/orders/{placed.order.pk}/bags/{placed.bag.pk}/refunds",
    }[kind]
    api_client.get(url, headers=channel.headers)  # the app secret's hash is checked once per process

    with django_assert_max_num_queries(2):
        response = api_client.get(url, headers=channel.headers)

    assert response.status_code == 200
    body = response.json()
    shown = body if kind == "detail" else body[0]
    assert len(shown["skus"]) == sku_count
    assert shown["transfer_reversals"] == ["trr_1"]


def test_a_revoked_owner_is_refused_on_the_next_read(api_client, channel):
    placed = place_order(channel.app)
    refund = RefundFactory(bag=placed.bag)
    url = f"/v1/orders/{placed.order.pk}/refunds/{refund.pk}"
    assert api_client.get(url, headers=channel.headers).status_code == 200

    channel.app.memberships.filter(user=channel.owner).delete()

    response = api_client.get(url, headers=channel.headers)
    assert response.status_code == 401
    assert response.json()["error_code"] == "token_invalid"


def test_a_deactivated_owner_is_refused_on_the_next_read(api_client, channel):
    placed = place_order(channel.app)
    url = f"/v1/orders/{placed.order.pk}/refunds"
    assert api_client.get(url, headers=channel.headers).status_code == 200

    type(channel.owner).objects.filter(pk=channel.owner.pk).update(is_active=False)

    assert api_client.get(url, headers=channel.headers).status_code == 401


def test_the_authenticated_app_and_owner_are_whole_rows(api_client, channel):
    """The raw credentials statement builds the same App and user the ORM would."""
    app, user = selectors.app_owner_credentials_get(app_id=channel.app.pk, user_id=channel.owner.pk)
    orm_app = type(channel.app).objects.get(pk=channel.app.pk)
    orm_user = type(channel.owner).objects.get(pk=channel.owner.pk)
    for instance, expected in ((app, orm_app), (user, orm_user)):
        for field in type(expected)._meta.concrete_fields:
            assert getattr(instance, field.attname) == getattr(expected, field.attname), field.name
            assert type(getattr(instance, field.attname)) is type(getattr(expected, field.attname)), field.name
    assert selectors.app_owner_credentials_get(app_id=channel.app.pk, user_id=channel.owner.pk + 1000) is None


@pytest.mark.parametrize("in_sql", [True, False], ids=["postgresql", "plain"])
def test_the_outbox_sends_what_the_api_returns(request, api_client, channel, settings, in_sql):
    if in_sql:
        request.getfixturevalue("require_postgres")
    settings.REFUND_JSON_IN_SQL = in_sql
    full = next(r for r in _shapes(channel.app) if r.reason == AWKWARD_TEXT)

    event = announcements.refund_event_emit(full)

    response = api_client.get(f"/v1/orders/{full.bag.order_id}/refunds/{full.pk}", headers=channel.headers)
    assert event is not None and WebhookEvent.objects.filter(pk=event.pk).exists()
    assert json.loads(event.body) == response.json()
    assert len(response.json()["skus"]) == 51


def test_the_order_body_renders_what_its_serializer_documents():
    order = OrderFactory()
    for _ in range(2):
        bag = BagFactory(order=order, external_id=None)
        for _ in range(3):
            OrderSkuFactory(bag=bag, name=AWKWARD_TEXT)
    order = Order.objects.prefetch_related("bags__merchant", "bags__skus").get(pk=order.pk)

    plain = representation.order_representation(order)

    documented = representation.OrderPayloadSerializer(order).data
    assert _render(plain) == _render(documented)
    assert [len(bag["skus"]) for bag in plain["bags"]] == [3, 3]
    bags = list(order.bags.all())
    assert _render(representation.bags_representation(bags)) == _render(
        representation.BagPayloadSerializer(bags, many=True).data
    )
