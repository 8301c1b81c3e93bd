"""Request fingerprints (issue 19, item 3): a key (Idempotency-Key, merchant reference, portal form
token) answers with its first refund only for the same request; another request under it is a 422
`idempotency_key_reused` naming that refund. Keys are scoped by sender: a channel's key belongs to
its app, a notice's to the merchant. One implementation (refunds.services.record) for every face.
"""

import functools
import json

import pytest
from django.test import Client

from portal.keys import api_key_create
from refunds.api.auth import TokenType, token_issue
from refunds.models import AppMembership, Refund, RefundSource
from refunds.services import RefundSkuLine, RequestMismatch, refund_notice_record, refund_record
from refunds.services.notices import NoticeLine
from refunds.services.record import request_fingerprint
from tests.factories import AppMembershipFactory, UserFactory
from tests.parallel import run_in_parallel
from tests.portal.conftest import logged_in, notice_bag, portal_user
from tests.portal.test_refund_report import notice_data, report_url
from tests.refunds.api.conftest import channel_headers, place_order

pytestmark = pytest.mark.django_db


def _url(placed_or_bag) -> str:
    bag = getattr(placed_or_bag, "bag", placed_or_bag)
    return f"/v1/orders/{bag.order_id}/bags/{bag.pk}/refunds"


def _post(headers, url, body, key=None):
    extra = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    http = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    raw = body if isinstance(body, str) else json.dumps(body)
    return Client().post(url, raw, content_type="application/json", **http, **extra)


def _mismatch(response, refund_id: int, field: str) -> dict:
    body = response.json()
    assert response.status_code == 422, body
    assert body["status"] == 422 and body["error_code"] == "idempotency_key_reused"
    assert f"refund {refund_id}" in body["message"]
    assert body["errors"] == {field: [f"Already used for refund {refund_id} with a different request."]}
    return body


# --- channel API ---------------------------------------------------------------------------------


def test_same_key_same_request_is_the_first_refund_and_another_request_is_422(channel):
    placed = place_order(channel.app)
    first = _post(channel.headers, _url(placed), {"amount_refunded": 500}, key="K")
    again = _post(channel.headers, _url(placed), {"amount_refunded": 500}, key="K")
    other = _post(channel.headers, _url(placed), {"amount_refunded": 900}, key="K")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    _mismatch(other, first.json()["id"], "Idempotency-Key")
    assert list(Refund.objects.values_list("amount", flat=True)) == [500]


def test_the_fingerprint_is_of_the_validated_request_not_of_its_bytes(channel):
    placed = place_order(channel.app)
    first_sku, second_sku = placed.skus
    lines = [
        {"order_sku_id": first_sku.pk, "quantity_refunded": 1},
        {"order_sku_id": second_sku.pk, "quantity_refunded": 1},
    ]
    body = {"skus": lines, "reason": "broken", "restock_items": True, "shipping": {"amount": 500}}
    first = _post(channel.headers, _url(placed), body, key="K")
    # Other key order, other line order, spacing, and defaults written out: the same request.
    same = (
        '{"shipping": {"amount": 500, "tax_amount": null}, "restock_items": true, "reason": "broken",'
        ' "notify_customer": false, "skus": ' + json.dumps(lines[::-1]) + "}"
    )
    again = _post(channel.headers, _url(placed), same, key="K")

    assert (first.status_code, again.status_code) == (201, 200)
    for change in ({"restock_items": False}, {"reason": "other"}, {"reason_code": "FRAUD"}, {"shipping": None}):
        _mismatch(
            _post(channel.headers, _url(placed), {**body, **change}, key="K"), first.json()["id"], "Idempotency-Key"
        )


def test_keys_are_scoped_per_bag_as_before(channel):
    one, two = place_order(channel.app), place_order(channel.app)
    assert _post(channel.headers, _url(one), {"amount_refunded": 500}, key="K").status_code == 201
    assert _post(channel.headers, _url(two), {"amount_refunded": 900}, key="K").status_code == 201


# --- sender scopes ---------------------------------------------------------------------------------


def _channel_headers_for(app):
    owner = UserFactory()
    AppMembershipFactory(app=app, user=owner, role=AppMembership.Role.OWNER)
    return channel_headers(app, token_issue(user=owner, app=app, token_type=TokenType.ACCESS))


def test_a_channels_key_never_swallows_a_merchants_notice():
    bag = notice_bag()
    headers = _channel_headers_for(bag.order.app)
    channel_refund = _post(headers, _url(bag), {"amount_refunded": 500}, key="shared-key")
    assert channel_refund.status_code == 201

    key = api_key_create(merchant=bag.merchant, name="OMS")
    first_sku = bag.skus.order_by("pk")[0]
    notice = {"bag_id": bag.pk, "skus": [{"order_sku_id": first_sku.pk, "quantity": 1}], "reference": "RF-9"}
    response = Client().post(
        "/portal/api/refund-notices",
        json.dumps(notice),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key.plaintext}",
        HTTP_IDEMPOTENCY_KEY="shared-key",
    )

    assert response.status_code == 201, response.json()
    assert response.json()["id"] != channel_refund.json()["id"]
    scopes = dict(Refund.objects.values_list("source", "request_scope"))
    assert scopes == {
        RefundSource.CHANNEL_API: f"app:{bag.order.app_id}",
        RefundSource.MERCHANT_NOTICE: f"merchant:{bag.merchant_id}",
    }
    # And the other way round: the merchant's key does not answer the channel either.
    again = _post(headers, _url(bag), {"amount_refunded": 500}, key="shared-key")
    assert again.status_code == 200 and again.json()["id"] == channel_refund.json()["id"]


# --- notices: API, portal form, operator -----------------------------------------------------------


def _notice(bag, *, quantity=1, reference="RF-1", source=RefundSource.MERCHANT_NOTICE, request_key=None):
    first_sku = bag.skus.order_by("pk")[0]
    return refund_notice_record(
        bag=bag,
        actor="test",
        notices_enabled=True,
        lines=[NoticeLine(order_sku_id=first_sku.pk, quantity=quantity)],
        shipping_amount=0,
        tax_amount=0,
        reference=reference,
        request_key=request_key,
        source=source,
    )


@pytest.mark.parametrize("source", [RefundSource.MERCHANT_NOTICE, RefundSource.OPERATOR])
def test_a_notice_reference_reused_for_another_notice_is_refused(source):
    bag = notice_bag()
    first = _notice(bag, source=source)
    assert not _notice(bag, source=source).created

    with pytest.raises(RequestMismatch) as raised:
        _notice(bag, quantity=2, source=source)
    assert raised.value.status_code == 422
    assert raised.value.field_errors == {
        "reference": [f"Already used for refund {first.refund.pk} with a different request."]
    }
    assert Refund.objects.count() == 1


def test_the_portal_form_repost_is_the_first_refund_and_a_changed_notice_names_it():
    bag = notice_bag()
    user = portal_user(bag.merchant)
    client = logged_in(user)
    data = notice_data(bag, client)
    first = client.post(report_url(bag), data)
    refund = Refund.objects.get(bag=bag)
    assert first.status_code == 302

    again = client.post(report_url(bag), data)  # double click, reload
    assert again.status_code == 302 and again["Location"] == first["Location"]

    skus = list(bag.skus.order_by("pk"))
    changed = client.post(report_url(bag), {**data, f"qty_{skus[0].pk}": "2", "form_token": "x" * 24})
    assert changed.status_code == 400
    assert f"Already used for refund {refund.pk}" in changed.content.decode()
    assert Refund.objects.count() == 1


def test_platform_signals_are_not_fingerprinted():
    bag = notice_bag()
    record = functools.partial(
        refund_record, bag=bag, source=RefundSource.PLATFORM_WEBHOOK, actor="test", external_id="shopify-1"
    )
    first = record(amount=1000)
    assert record(amount=2000).refund.pk == first.refund.pk  # reconcile: the same platform refund
    assert first.refund.request_fingerprint == ""


def test_the_fingerprint_normalizes_line_order_currency_and_reason():
    base = {
        "external_id": None,
        "amount": None,
        "sub_total_amount": None,
        "shipping_amount": 5,
        "tax_amount": None,
        "shipping_tax_amount": 0,
        "reason_code": "OTHER",
        "restock_items": False,
        "notify_customer": False,
        "shipping_full_refund": False,
    }
    one = request_fingerprint(**base, skus=[RefundSkuLine(1, 1), RefundSkuLine(2, 3)], currency="usd", reason=" late ")
    two = request_fingerprint(**base, skus=[RefundSkuLine(2, 3), RefundSkuLine(1, 1)], currency="USD", reason="late")
    three = request_fingerprint(**base, skus=[RefundSkuLine(2, 3), RefundSkuLine(1, 2)], currency="USD", reason="late")
    assert one == two != three and len(one) == 64


# --- concurrency (PostgreSQL: real row locks) ------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_identical_concurrent_requests_record_one_refund(channel):
    placed = place_order(channel.app)
    call = functools.partial(_post, channel.headers, _url(placed), {"amount_refunded": 700}, "race")

    responses = run_in_parallel(call, call, call)

    assert sorted(r.status_code for r in responses) == [200, 200, 201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert Refund.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_different_concurrent_requests_under_one_key_record_one_and_refuse_the_other(channel):
    placed = place_order(channel.app)
    calls = [
        functools.partial(_post, channel.headers, _url(placed), {"amount_refunded": n}, "race") for n in (300, 400)
    ]

    responses = run_in_parallel(*calls)

    assert sorted(r.status_code for r in responses) == [201, 422]
    created = next(r for r in responses if r.status_code == 201).json()
    refused = next(r for r in responses if r.status_code == 422)
    _mismatch(refused, created["id"], "Idempotency-Key")
    assert Refund.objects.count() == 1
