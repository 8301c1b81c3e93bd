"""GET refunds: the seed's exact contract (seed 004), the list endpoints, and constant query counts."""

import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from payments.models import Recipient
from refunds.models import ReasonCode, RefundStatus
from tests.factories import (
    BagFactory,
    OrderSkuFactory,
    RefundErrorFactory,
    RefundFactory,
    RefundSkuFactory,
    TransferFactory,
    TransferReversalFactory,
)
from tests.refunds.api.conftest import place_order

pytestmark = pytest.mark.django_db

# The contract seed as shipped beside the project (../shared/seeds); a copy is kept in the fixtures
# so the test also runs in a clone without shared/ next to it. Both are the same document.
_SHARED_SEED = Path(settings.BASE_DIR).parent / "shared" / "seeds" / "004_9de0626b80ef993b.txt"
_FIXTURE_SEED = Path(__file__).resolve().parents[2] / "fixtures" / "contract" / "004_9de0626b80ef993b.txt"
SEED = _SHARED_SEED if _SHARED_SEED.exists() else _FIXTURE_SEED
SEED_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0000$")
SEED_TYPES = {
    "integer": (int,),
    "string": (str,),
    "enum<string>": (str,),
    "object[]": (list,),
    "object | null": (dict, type(None)),
    "integer | null": (int, type(None)),
}
# Fields of the newer Order Refund schema (spec section 1) that the seed does not list.
SPEC_EXTRA_FIELDS = {
    "payment_transaction_id": (int,),
    "merchant_transfer_reversal_amount_platform_currency": (int,),
    "developer_transfer_reversal_amount_platform_currency": (int,),
    "platform_currency": (str,),
    "transfer_reversals": (list,),
}
SKU_FIELDS = {"id", "refund_id", "bag_id", "quantity_refunded", "external_id", "order_sku_id"}
ERROR_FIELDS = {"id", "refund_id", "error_code", "error_message", "resolved", "date_resolved", "date_created"}
SHIPPING_FIELDS = {"amount", "tax_amount", "full_refund", "discrepancy_reason"}


def _seed():
    """The seed's JSON example, and its documented response fields: name -> (type, required)."""
    text = SEED.read_text()
    example, _ = json.JSONDecoder().raw_decode(text[text.index("\n{\n") + 1 :])
    lines = [line.strip() for line in text[text.index("200 - application/json") :].splitlines()]
    lines = [line for line in lines if line]
    documented = {}
    for index, line in enumerate(lines[:-1]):
        if re.fullmatch(r"[a-z_]+", line) and lines[index + 1] in SEED_TYPES:
            required = index + 2 < len(lines) and lines[index + 2] == "required"
            documented[line] = (lines[index + 1], required)
    return example, documented


def _json_type(value):
    return type(value).__name__


def _refund_with_everything(app, *, sku_count=1, error_count=1):
    placed = place_order(app)
    refund = RefundFactory(
        bag=placed.bag,
        status=RefundStatus.COMPLETED,
        sub_total_amount=2500,
        shipping_amount=500,
        tax_amount=300,
        shipping_tax_amount=100,
        shipping_full_refund=True,
        reason="Item returned by customer.",
        reason_code=ReasonCode.CUSTOMER,
        merchant_transfer_reversal_amount_usd=2750,
        developer_transfer_reversal_amount_usd=250,
        merchant_transfer_reversal_amount_platform_currency=2750,
        developer_transfer_reversal_amount_platform_currency=250,
    )
    RefundSkuFactory(refund=refund, order_sku=placed.skus[0])
    for _ in range(sku_count - 1):
        RefundSkuFactory(refund=refund, order_sku=OrderSkuFactory(bag=placed.bag))
    for _ in range(error_count):
        RefundErrorFactory(refund=refund, resolved=True, date_resolved=timezone.now())
    merchant = TransferFactory(bag=placed.bag, payment_transaction=placed.payment)
    channel_transfer = TransferFactory(
        bag=placed.bag, payment_transaction=placed.payment, recipient=Recipient.DEVELOPER, bag_amount=1000
    )
    TransferReversalFactory(
        refund=refund, transfer=merchant, gateway_reversal_id=f"trr_merchant{refund.pk}", status="COMPLETE"
    )
    TransferReversalFactory(
        refund=refund,
        transfer=channel_transfer,
        gateway_reversal_id=f"trr_channel{refund.pk}",
        status="COMPLETE",
    )
    return placed, refund


def _detail_url(refund) -> str:
    return f"/v1/orders/{refund.bag.order_id}/refunds/{refund.pk}"


def test_get_refund_matches_the_seed_contract_field_by_field(api_client, channel):
    example, documented = _seed()
    assert len(documented) >= 21 and {"gateway_transaction_id", "shipping", "tax_amount"} <= set(documented)
    placed, refund = _refund_with_everything(channel.app)

    response = api_client.get(_detail_url(refund), headers=channel.headers)

    assert response.status_code == 200
    body = response.json()
    # Every field of the example and of the documented response, nothing unknown besides the
    # newer schema's fields.
    assert set(example) <= set(body)
    assert set(documented) <= set(body)
    assert set(body) == set(example) | set(documented) | set(SPEC_EXTRA_FIELDS)
    for name, value in example.items():
        assert type(body[name]) is type(value), f"{name}: {_json_type(body[name])} vs {_json_type(value)}"
    for name, (type_name, required) in documented.items():
        assert isinstance(body[name], SEED_TYPES[type_name]), f"{name} is not {type_name}"
        assert not isinstance(body[name], bool), name
        if required:
            assert body[name] is not None, f"{name} is required"
    for name, types in SPEC_EXTRA_FIELDS.items():
        assert isinstance(body[name], types), name
    assert set(body["skus"][0]) == set(example["skus"][0]) == SKU_FIELDS
    for name, value in example["skus"][0].items():
        assert type(body["skus"][0][name]) is type(value), f"skus[].{name}"
    for stamp in ("date_created", "date_last_modified"):
        assert SEED_DATETIME.match(body[stamp]) and SEED_DATETIME.match(example[stamp])
    assert body["reason_code"] in {"OTHER", "CUSTOMER", "INVENTORY", "FRAUD", "DECLINED"}
    assert body["status"] in {"PROCESSING", "COMPLETED", "CANCELED", "PARTIALLY_COMPLETED", "FAILED", "EXTERNAL"}

    # And the values are this refund's.
    sku = refund.skus.get()
    assert body == {
        "id": refund.pk,
        "order_id": placed.order.pk,
        "bag_id": placed.bag.pk,
        "merchant_id": placed.bag.merchant_id,
        "app_id": channel.app.pk,
        "transaction_id": placed.payment.pk,
        "payment_transaction_id": placed.payment.pk,
        "gateway_transaction_id": placed.payment.gateway_transaction_id,
        "amount": 3300,
        "merchant_transfer_reversal_amount_usd": 2750,
        "developer_transfer_reversal_amount_usd": 250,
        "merchant_transfer_reversal_amount_platform_currency": 2750,
        "developer_transfer_reversal_amount_platform_currency": 250,
        "reason": "Item returned by customer.",
        "reason_code": "CUSTOMER",
        "refund_currency": "USD",
        "platform_currency": "USD",
        "status": "COMPLETED",
        "transfer_reversals": [f"trr_merchant{refund.pk}", f"trr_channel{refund.pk}"],
        "skus": [
            {
                "id": sku.pk,
                "refund_id": refund.pk,
                "bag_id": placed.bag.pk,
                "quantity_refunded": 1,
                "external_id": placed.skus[0].external_id,
                "order_sku_id": placed.skus[0].pk,
            }
        ],
        "date_created": refund.date_created.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "date_last_modified": refund.date_last_modified.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "external_id": refund.external_id,
        "errors": [
            {
                "id": error.pk,
                "refund_id": refund.pk,
                "error_code": 3001,
                "error_message": "Charge has already been refunded.",
                "resolved": True,
                "date_resolved": error.date_resolved.strftime("%Y-%m-%dT%H:%M:%S+0000"),
                "date_created": error.date_created.strftime("%Y-%m-%dT%H:%M:%S+0000"),
            }
            for error in refund.errors.all()
        ],
        "shipping": {"amount": 500, "tax_amount": 100, "full_refund": True, "discrepancy_reason": None},
        "tax_amount": 300,
    }
    assert set(body["errors"][0]) == ERROR_FIELDS
    assert set(body["shipping"]) == SHIPPING_FIELDS


def test_a_plain_refund_has_null_shipping_and_tax_zero_amounts_and_empty_lists(api_client, channel):
    placed = place_order(channel.app)
    refund = RefundFactory(bag=placed.bag, external_id=None, platform_currency="")
    transfer = TransferFactory(bag=placed.bag, payment_transaction=placed.payment)
    TransferReversalFactory(refund=refund, transfer=transfer, gateway_reversal_id=None)  # not sent yet

    body = api_client.get(_detail_url(refund), headers=channel.headers).json()

    assert body["shipping"] is None
    assert body["tax_amount"] is None
    # Seed 004 types these as a string and integers: never null (issue 19, item 5).
    assert body["external_id"] == ""
    assert body["platform_currency"] == "USD"
    assert body["transfer_reversals"] == []
    assert body["errors"] == []
    assert body["skus"] == []
    assert body["merchant_transfer_reversal_amount_usd"] == 0
    assert body["developer_transfer_reversal_amount_platform_currency"] == 0
    assert body["amount"] == 5000
    assert body["status"] == "PROCESSING"


def test_an_unresolved_error_has_a_null_date_resolved(api_client, channel):
    placed = place_order(channel.app)
    error = RefundErrorFactory(refund__bag=placed.bag)

    body = api_client.get(_detail_url(error.refund), headers=channel.headers).json()

    assert body["errors"][0]["resolved"] is False
    assert body["errors"][0]["date_resolved"] is None


def test_a_refund_of_an_order_without_payment_has_null_transaction_ids(api_client, channel):
    placed = place_order(channel.app)
    refund = RefundFactory(bag=placed.bag)
    placed.payment.delete()

    body = api_client.get(_detail_url(refund), headers=channel.headers).json()

    assert (body["transaction_id"], body["payment_transaction_id"], body["gateway_transaction_id"]) == (
        None,
        None,
        None,
    )


def test_order_refunds_lists_every_bag_of_the_order_by_id(api_client, channel):
    placed = place_order(channel.app)
    second_bag = BagFactory(order=placed.order)
    first = RefundFactory(bag=placed.bag)
    second = RefundFactory(bag=second_bag)
    third = RefundFactory(bag=placed.bag)
    RefundFactory(bag=place_order(channel.app).bag)  # another order of the same app

    response = api_client.get(f"/v1/orders/{placed.order.pk}/refunds", headers=channel.headers)

    assert response.status_code == 200
    assert [item["id"] for item in response.json()] == [first.pk, second.pk, third.pk]


def test_bag_refunds_lists_only_that_bag(api_client, channel):
    placed = place_order(channel.app)
    other_bag = BagFactory(order=placed.order)
    first = RefundFactory(bag=placed.bag)
    RefundFactory(bag=other_bag)
    second = RefundFactory(bag=placed.bag)

    response = api_client.get(f"/v1/orders/{placed.order.pk}/bags/{placed.bag.pk}/refunds", headers=channel.headers)

    assert response.status_code == 200
    assert [item["id"] for item in response.json()] == [first.pk, second.pk]


def test_an_order_without_refunds_is_an_empty_list(api_client, channel, placed):
    response = api_client.get(f"/v1/orders/{placed.order.pk}/refunds", headers=channel.headers)

    assert response.status_code == 200
    assert response.json() == []


def _queries(api_client, url, headers) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert api_client.get(url, headers=headers).status_code == 200
    return len(captured)


def test_detail_query_count_does_not_grow_with_skus_errors_or_reversals(api_client, channel, django_assert_num_queries):
    _, small = _refund_with_everything(channel.app, sku_count=1, error_count=1)
    _, large = _refund_with_everything(channel.app, sku_count=20, error_count=20)
    _queries(api_client, _detail_url(small), channel.headers)  # warm the app-secret check
    baseline = _queries(api_client, _detail_url(small), channel.headers)

    with django_assert_num_queries(baseline):
        response = api_client.get(_detail_url(large), headers=channel.headers)

    assert len(response.json()["skus"]) == 20
    assert len(response.json()["errors"]) == 20
    assert baseline <= 7


def test_list_query_count_does_not_grow_with_refunds_or_skus(api_client, channel, django_assert_num_queries):
    small_order, _ = _refund_with_everything(channel.app, sku_count=1, error_count=1)
    large_order, _ = _refund_with_everything(channel.app, sku_count=20, error_count=20)
    for _ in range(5):
        refund = RefundFactory(bag=large_order.bag)
        for _ in range(3):
            RefundSkuFactory(refund=refund, order_sku=OrderSkuFactory(bag=large_order.bag))
    small_url = f"/v1/orders/{small_order.order.pk}/refunds"
    large_url = f"/v1/orders/{large_order.order.pk}/bags/{large_order.bag.pk}/refunds"
    _queries(api_client, small_url, channel.headers)
    baseline = _queries(api_client, small_url, channel.headers)

    with django_assert_num_queries(baseline):
        response = api_client.get(large_url, headers=channel.headers)

    assert len(response.json()) == 6
    assert baseline <= 8


def test_the_fixture_copy_of_the_contract_seed_matches_the_shared_one():
    if not _SHARED_SEED.exists():
        pytest.skip("../shared is not beside this clone; the fixture copy is the contract")
    assert _FIXTURE_SEED.read_text() == _SHARED_SEED.read_text()
