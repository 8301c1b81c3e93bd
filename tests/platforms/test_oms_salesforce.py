"""SFCC merchants refunding in Salesforce Order Management (issue #25): credit memos discovered by
beat become refunds through the platforms' common path (recorded HTTP: tests/platforms/salesforce_org.py)."""

import datetime as dt

import pytest
import responses
from django.utils import timezone

from platforms import selectors, services, tasks
from platforms.adapters.sfcc import SfccAdapter
from platforms.models import InboundEvent, OmsConnection, Platform, SfccRefundMode
from platforms.oms.base import OMS_TOPIC
from platforms.oms.discovery import oms_refunds_discover
from platforms.parity import bag_parity_check
from refunds.models import Refund, RefundSku, RefundSource
from tests.factories import BagFactory, OrderSkuFactory
from tests.platforms.conftest import make_store
from tests.platforms.salesforce_org import BASE_URL, CLIENT_ID, CLIENT_SECRET, SalesforceOrg

NOW = dt.datetime(2026, 3, 3, 14, 0, tzinfo=dt.UTC)
ORDER_NO = "00001234"


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.SALESFORCE_OM_API_VERSION = "62.0"
    settings.OMS_FIRST_LOOKBACK_SECONDS = 24 * 3600
    settings.OMS_MAX_REFUNDS_PER_RUN = 500
    settings.OMS_API_USAGE_MAX_PERCENT = 90
    settings.OMS_LIMIT_BACKOFF_SECONDS = 3600


def _oms_store(order_id=ORDER_NO, *, cursor=None):
    store = make_store(
        Platform.SFCC,
        order_id=order_id,
        line_ids=("a1b2c3d4e5f6a1b2c3d4e5f6", "f6e5d4c3b2a1f6e5d4c3b2a1"),
        sfcc_refund_mode=SfccRefundMode.ORDER_MANAGEMENT,
    )
    oms = OmsConnection.objects.create(
        merchant=store.merchant,
        base_url=BASE_URL,
        credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        cursor=cursor,
    )
    return store, oms


def _discover(capture, now=NOW):
    with capture(execute=True):
        return oms_refunds_discover(now=now)


def _partial_memo(org, summary_id, changed, *, mug_id):
    """One mug (40.00) + shipping (10.00, of which tax 0.80) + tax 4.00 = 54.00."""
    return org.credit_memo(
        summary_id=summary_id,
        changed=changed,
        lines=[
            {"kind": "product", "amount": "40.00", "product_id": mug_id},
            {"kind": "shipping", "amount": "10.00", "charge_tax": "0.80"},
        ],
        tax="4.00",
    )


@responses.activate
def test_partial_credit_memo_is_one_refund_with_the_exact_split(db, django_capture_on_commit_callbacks):
    store, oms = _oms_store()
    org = SalesforceOrg(responses)
    summary = org.order_summary(ORDER_NO)
    memo_id = _partial_memo(org, summary, NOW - dt.timedelta(hours=1), mug_id=org.product("MUG-BLUE"))

    runs = _discover(django_capture_on_commit_callbacks)

    assert [(run.refunds_seen, run.events_created, run.error) for run in runs] == [(1, 1, "")]
    refund = Refund.objects.get()
    assert refund.bag == store.bag
    assert refund.external_id == memo_id
    assert refund.source == RefundSource.PLATFORM_POLL
    assert (refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (
        5400,
        4000,
        1000,
        400,
    )
    assert refund.shipping_tax_amount == 80
    assert list(RefundSku.objects.filter(refund=refund).values_list("order_sku_id", "quantity_refunded")) == [
        (store.mug.pk, 1)
    ]
    event = InboundEvent.objects.get()
    assert (event.platform, event.topic, event.status, event.connection) == (
        Platform.SFCC,
        OMS_TOPIC,
        InboundEvent.Status.PROCESSED,
        store.connection,
    )
    oms.refresh_from_db()
    assert (oms.cursor, oms.last_run_at, oms.last_success_at, oms.last_error) == (NOW, NOW, NOW, "")
    assert oms.api_usage == "api-usage=1200/100000"
    # The first run looks back OMS_FIRST_LOOKBACK_SECONDS, up to now, bounded, oldest first.
    assert org.queries[0] == (
        "SELECT Id, ReferenceEntityId, TotalAmount, TotalTaxAmount, TotalAmountWithTax, CreatedDate, LastModifiedDate "
        "FROM CreditMemo WHERE LastModifiedDate > 2026-03-02T14:00:00Z AND LastModifiedDate <= 2026-03-03T14:00:00Z "
        "ORDER BY LastModifiedDate, Id LIMIT 500"
    )


@responses.activate
def test_a_return_and_a_cancellation_are_one_refund_each(db, django_capture_on_commit_callbacks):
    store, _oms = _oms_store()
    org = SalesforceOrg(responses)
    summary = org.order_summary(ORDER_NO)
    towel_return = org.credit_memo(
        summary_id=summary,
        changed=NOW - dt.timedelta(hours=3),
        lines=[{"kind": "product", "amount": "20.00", "product_id": org.product("TOWEL-1")}],
        tax="1.60",
    )
    cancellation = org.credit_memo(
        summary_id=summary,
        changed=NOW - dt.timedelta(hours=2),
        lines=[{"kind": "product", "amount": "80.00", "product_id": org.product("MUG-BLUE")}],
        tax="6.40",
    )

    _discover(django_capture_on_commit_callbacks)

    refunds = {r.external_id: r for r in Refund.objects.all()}
    assert set(refunds) == {towel_return, cancellation}
    assert (refunds[towel_return].amount, refunds[towel_return].sub_total_amount, refunds[towel_return].tax_amount) == (
        2160,
        2000,
        160,
    )
    assert (refunds[cancellation].amount, refunds[cancellation].sub_total_amount, refunds[cancellation].tax_amount) == (
        8640,
        8000,
        640,
    )
    assert RefundSku.objects.get(refund=refunds[cancellation]).quantity_refunded == 2
    # The OMS merchant is never polled for Option 1 cancellations: the credit memo is the one refund.
    assert store.connection not in selectors.sfcc_connections_to_poll()


@responses.activate
def test_the_same_memo_seen_on_two_runs_is_one_refund(db, django_capture_on_commit_callbacks):
    _store, oms = _oms_store()
    org = SalesforceOrg(responses)
    _partial_memo(org, org.order_summary(ORDER_NO), NOW - dt.timedelta(seconds=30), mug_id=org.product("MUG-BLUE"))

    _discover(django_capture_on_commit_callbacks)
    later = NOW + dt.timedelta(minutes=1)
    runs = _discover(django_capture_on_commit_callbacks, now=later)

    # The second run starts at the cursor less the overlap, so it sees the memo again: a duplicate.
    assert "LastModifiedDate > 2026-03-03T13:58:00Z" in [q for q in org.queries if " FROM CreditMemo " in q][1]
    assert [(run.refunds_seen, run.events_created) for run in runs] == [(1, 0)]
    assert InboundEvent.objects.count() == 1
    assert Refund.objects.count() == 1
    oms.refresh_from_db()
    assert oms.cursor == later


@responses.activate
def test_paging_over_next_records_url_and_a_bounded_run(db, settings, django_capture_on_commit_callbacks):
    settings.OMS_MAX_REFUNDS_PER_RUN = 3
    _store_a, oms = _oms_store()
    org = SalesforceOrg(responses, page_size=2)
    orders = [f"0000{n}" for n in range(2000, 2004)]
    for index, order_no in enumerate(orders):
        make_bag = BagFactory(
            merchant=oms.merchant, external_id=order_no, sub_total=5000, shipping_total=0, tax_total=0
        )
        OrderSkuFactory(bag=make_bag, external_id=f"line{index}", sku_id="CAP", quantity=1, price=5000)
        org.credit_memo(
            summary_id=org.order_summary(order_no),
            changed=NOW - dt.timedelta(hours=4 - index),
            lines=[{"kind": "product", "amount": "10.00", "product_id": org.product("CAP")}],
            tax="0",
        )

    runs = _discover(django_capture_on_commit_callbacks)

    # 3 memos (the run's bound) over two pages of 2: the second through nextRecordsUrl; so are the
    # 3 lines, 3 order summaries and 3 products of those memos.
    assert runs[0].refunds_seen == 3
    page_calls = [c for c in responses.calls if "/query/01g" in c.request.url]
    assert len(page_calls) == 4
    assert all(c.request.headers["Authorization"].startswith("Bearer 00D") for c in page_calls)
    oms.refresh_from_db()
    assert oms.cursor == NOW - dt.timedelta(hours=2)  # the last memo read: the next run goes on from there
    assert oms.last_success_at is None

    runs = _discover(django_capture_on_commit_callbacks)
    # The last memo of the first run is read again (the overlap) and is a duplicate; the fourth is new.
    assert (runs[0].refunds_seen, runs[0].events_created) == (2, 1)
    assert Refund.objects.count() == 4
    assert sorted(Refund.objects.values_list("amount", flat=True)) == [1000] * 4
    oms.refresh_from_db()
    assert (oms.cursor, oms.last_success_at) == (NOW, NOW)


@responses.activate
def test_expired_token_is_renewed_once_and_the_query_succeeds(db, django_capture_on_commit_callbacks):
    _oms_store()
    org = SalesforceOrg(responses)
    _partial_memo(org, org.order_summary(ORDER_NO), NOW - dt.timedelta(hours=1), mug_id=org.product("MUG-BLUE"))
    org.expire_token_once = True

    runs = _discover(django_capture_on_commit_callbacks)

    assert runs[0].error == ""
    assert org.tokens_issued == 2
    assert Refund.objects.get().amount == 5400


@responses.activate
def test_request_limit_exceeded_backs_off_and_keeps_the_cursor(db, django_capture_on_commit_callbacks):
    cursor = NOW - dt.timedelta(hours=1)
    _store_a, oms = _oms_store(cursor=cursor)
    org = SalesforceOrg(responses)
    org.limit_exceeded = True

    runs = _discover(django_capture_on_commit_callbacks)

    assert runs[0].backed_off
    oms.refresh_from_db()
    assert oms.cursor == cursor
    assert oms.backoff_until == NOW + dt.timedelta(hours=1)
    assert "REQUEST_LIMIT_EXCEEDED" in oms.last_error
    # While backing off the org is not called at all; afterwards it is read again.
    calls = len(responses.calls)
    assert _discover(django_capture_on_commit_callbacks, now=NOW + dt.timedelta(minutes=30)) == []
    assert len(responses.calls) == calls
    org.limit_exceeded = False
    runs = _discover(django_capture_on_commit_callbacks, now=NOW + dt.timedelta(hours=1))
    assert runs[0].error == ""
    oms.refresh_from_db()
    assert oms.backoff_until is None


@responses.activate
def test_usage_near_the_limit_stops_after_the_page_and_backs_off(db, settings, django_capture_on_commit_callbacks):
    _store_a, oms = _oms_store()
    org = SalesforceOrg(responses, page_size=1)
    summary = org.order_summary(ORDER_NO)
    cap = org.product("MUG-BLUE")
    first = _partial_memo(org, summary, NOW - dt.timedelta(hours=2), mug_id=cap)
    _partial_memo(org, summary, NOW - dt.timedelta(hours=1), mug_id=cap)
    org.api_usage = (95000, 100000)

    runs = _discover(django_capture_on_commit_callbacks)

    assert runs[0].backed_off and runs[0].refunds_seen == 1
    assert list(Refund.objects.values_list("external_id", flat=True)) == [first]
    oms.refresh_from_db()
    assert oms.cursor == NOW - dt.timedelta(hours=2)
    assert oms.backoff_until == NOW + dt.timedelta(hours=1)


@responses.activate
def test_memo_for_an_unknown_order_awaits_it_and_is_refunded_when_the_bag_appears(
    db, django_capture_on_commit_callbacks
):
    store, _oms = _oms_store()
    org = SalesforceOrg(responses)
    memo_id = org.credit_memo(
        summary_id=org.order_summary("00009876"),
        changed=NOW - dt.timedelta(hours=1),
        lines=[{"kind": "product", "amount": "25.00", "product_id": org.product("HAT-1")}],
        tax="2.00",
    )

    _discover(django_capture_on_commit_callbacks)

    event = InboundEvent.objects.get()
    assert (event.status, event.order_id) == (InboundEvent.Status.AWAITING_ORDER, "00009876")
    assert not Refund.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        bag = BagFactory(
            merchant=store.merchant, external_id="00009876", sub_total=5000, shipping_total=0, tax_total=400
        )
        OrderSkuFactory(bag=bag, external_id="hatline", sku_id="HAT-1", quantity=2, price=2500)

    event.refresh_from_db()
    assert event.status == InboundEvent.Status.PROCESSED
    refund = Refund.objects.get()
    assert (refund.bag, refund.external_id, refund.amount, refund.sub_total_amount, refund.tax_amount) == (
        bag,
        memo_id,
        2700,
        2500,
        200,
    )


@responses.activate
@pytest.mark.parametrize("expired_status", ["IGNORED", "FAILED"])
def test_memo_for_an_order_never_learned_expires_by_the_setting(
    db, settings, django_capture_on_commit_callbacks, expired_status
):
    """A credit memo of the merchant's own (non-network) order: AWAITING_ORDER, then past the expiry
    IGNORED by default (out of triage) or FAILED when so configured; never a refund."""
    settings.INBOUND_EVENT_AWAITING_ORDER_EXPIRY_SECONDS = 3600
    settings.INBOUND_EVENT_AWAITING_ORDER_EXPIRED_STATUS = expired_status
    _store, _oms = _oms_store()
    org = SalesforceOrg(responses)
    org.credit_memo(
        summary_id=org.order_summary("00005555"),
        changed=NOW - dt.timedelta(hours=1),
        lines=[{"kind": "product", "amount": "25.00", "product_id": org.product("HAT-1")}],
        tax="2.00",
    )
    _discover(django_capture_on_commit_callbacks)
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.AWAITING_ORDER
    InboundEvent.objects.filter(pk=event.pk).update(awaiting_since=timezone.now() - dt.timedelta(hours=2))

    assert services.events_awaiting_order_sweep().expired == (event.pk,)

    event.refresh_from_db()
    assert event.status == expired_status
    assert "No bag with platform order id 00005555 appeared" in event.outcome
    assert ("merchant's own order" in event.outcome) == (expired_status == "IGNORED")
    assert not Refund.objects.exists()


@responses.activate
def test_parity_check_reads_the_oms_for_a_memo_discovery_missed(db, settings, django_capture_on_commit_callbacks):
    store, _oms = _oms_store()
    org = SalesforceOrg(responses)
    memo_id = _partial_memo(
        org, org.order_summary(ORDER_NO), NOW - dt.timedelta(days=3), mug_id=org.product("MUG-BLUE")
    )
    settings.PARITY_CHECK_GRACE_SECONDS = 0

    with django_capture_on_commit_callbacks(execute=True):
        outcome = bag_parity_check(store.bag, now=NOW)

    assert outcome.refunds_found == 1
    refund = Refund.objects.get()
    assert (refund.external_id, refund.source, refund.amount) == (memo_id, RefundSource.PARITY_CHECK, 5400)


@responses.activate
def test_the_beat_task_runs_discovery(db, django_capture_on_commit_callbacks):
    _oms_store()
    org = SalesforceOrg(responses)
    _partial_memo(
        org,
        org.order_summary(ORDER_NO),
        dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
        mug_id=org.product("MUG-BLUE"),
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.discover_oms_refunds.delay().get() == 1
    assert Refund.objects.count() == 1


def test_option_1_and_2_merchants_are_not_discovered(db):
    store = make_store(Platform.SFCC, order_id="1", line_ids=("a", "b"), sfcc_refund_mode=SfccRefundMode.MANUAL_NOTICE)
    OmsConnection.objects.create(merchant=store.merchant, base_url=BASE_URL, credentials={})
    assert oms_refunds_discover(now=NOW) == []


def test_a_storefront_cancellation_alone_is_no_refund_for_an_oms_merchant(db):
    """An Option 1 cancellation (e.g. polled before the merchant switched) records nothing: the
    credit memo SOM makes for the cancellation is the one refund."""
    store, _oms = _oms_store()
    state = SfccAdapter().state_from_order(
        {"orderNo": ORDER_NO, "status": "cancelled", "currency": "USD", "productItems": []}
    )

    decision = SfccAdapter().refund_decision(state, store.bag)

    assert decision.refunds == ()
    assert "order management system" in decision.ignored_reason


@responses.activate
def test_a_memo_that_returns_no_money_is_ignored(db, django_capture_on_commit_callbacks):
    _oms_store()
    org = SalesforceOrg(responses)
    org.credit_memo(
        summary_id=org.order_summary(ORDER_NO),
        changed=NOW - dt.timedelta(hours=1),
        lines=[{"kind": "product", "amount": "0.00", "product_id": org.product("MUG-BLUE")}],
        tax="0",
    )

    _discover(django_capture_on_commit_callbacks)

    event = InboundEvent.objects.get()
    assert (event.status, event.outcome) == (
        InboundEvent.Status.IGNORED,
        f"Salesforce credit memo {org.memos[0]['Id']} returns no money.",
    )
    assert not Refund.objects.exists()
