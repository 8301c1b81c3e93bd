"""The operators' first screens: the failed-refunds list (what, oldest first, which money moved),
the index counts and chart, and a page cost that does not grow with the rows shown."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from payments.models import Recipient, ShopperRefund, TransferReversal
from platforms.models import InboundEvent
from refunds.admin.refunds import RefundAdmin
from refunds.admin.selectors import refunds_per_day, triage_counts
from refunds.models import Refund, RefundStatus
from tests.factories import (
    InboundEventFactory,
    RefundErrorFactory,
    RefundFactory,
    ShopperRefundFactory,
    TransferReversalFactory,
)

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:refunds_refund_changelist")


def aged(refund, *, days=0, minutes=0):
    """Backdate a refund (date_created is auto_now_add) and its engine clock together."""
    when = timezone.now() - dt.timedelta(days=days, minutes=minutes)
    Refund.objects.filter(pk=refund.pk).update(date_created=when, next_attempt_at=when, date_last_modified=when)
    return refund


@pytest.fixture
def triage_world(settings):
    settings.REFUND_STUCK_AFTER_SECONDS = 600
    return {
        "failed_old": aged(RefundFactory(status=RefundStatus.FAILED), days=3),
        "partial": aged(RefundFactory(status=RefundStatus.PARTIALLY_COMPLETED), days=2),
        "stuck": aged(RefundFactory(status=RefundStatus.PROCESSING), days=1),
        "failed_new": aged(RefundFactory(status=RefundStatus.FAILED), minutes=5),
        "processing_now": aged(RefundFactory(status=RefundStatus.PROCESSING), minutes=1),
        "completed": aged(RefundFactory(status=RefundStatus.COMPLETED), days=4),
        "external": aged(RefundFactory(status=RefundStatus.EXTERNAL), days=4),
        "canceled": aged(RefundFactory(status=RefundStatus.CANCELED), days=4),
    }


def listed(response):
    return [refund.pk for refund in response.context["cl"].result_list]


def test_failed_refunds_lists_what_needs_an_operator_oldest_first(operator_client, triage_world):
    response = operator_client.get(CHANGELIST, {"triage": "failed"})
    assert listed(response) == [triage_world[name].pk for name in ("failed_old", "partial", "stuck", "failed_new")]


def test_failed_refunds_page_says_what_it_is(operator_client, triage_world):
    response = operator_client.get(CHANGELIST, {"triage": "failed"})
    assert response.context["title"] == "Failed refunds: oldest first"
    assert [tab["label"] for tab in response.context["triage_tabs"] if tab["active"]] == ["Failed refunds"]


def test_refund_page_links_to_the_inbound_event_that_created_it(operator_client):
    event = InboundEventFactory()
    refund = RefundFactory(inbound_event=event)
    body = operator_client.get(reverse("admin:refunds_refund_change", args=[refund.pk])).content.decode()
    assert reverse("admin:platforms_inboundevent_change", args=[event.pk]) in body


def test_failed_refunds_has_a_stable_address(operator_client):
    response = operator_client.get(reverse("admin:refunds_refund_failed"))
    assert response.status_code == 302
    assert response["Location"] == f"{CHANGELIST}?triage=failed"


def test_stuck_tab_lists_only_processing_refunds_nobody_works_on(operator_client, triage_world):
    assert listed(operator_client.get(CHANGELIST, {"triage": "stuck"})) == [triage_world["stuck"].pk]


def test_failed_refunds_combine_with_filters_and_search(operator_client, triage_world):
    wanted = triage_world["partial"]
    by_merchant = operator_client.get(
        CHANGELIST, {"triage": "failed", "bag__merchant__id__exact": wanted.bag.merchant_id}
    )
    assert listed(by_merchant) == [wanted.pk]
    by_search = operator_client.get(CHANGELIST, {"triage": "failed", "q": wanted.bag.external_id})
    assert listed(by_search) == [wanted.pk]
    completed = triage_world["completed"]
    assert listed(operator_client.get(CHANGELIST, {"triage": "failed", "q": completed.external_id})) == []


def test_everything_else_lists_newest_first(operator_client, triage_world):
    pks = listed(operator_client.get(CHANGELIST))
    assert pks[0] == triage_world["processing_now"].pk
    assert len(pks) == len(triage_world)


def test_open_errors_filter(operator_client):
    with_error = RefundErrorFactory().refund
    RefundErrorFactory(resolved=True)
    assert listed(operator_client.get(CHANGELIST, {"open_errors": "yes"})) == [with_error.pk]
    assert with_error.pk not in listed(operator_client.get(CHANGELIST, {"open_errors": "no"}))


def test_failed_list_shows_what_failed_and_which_money_moved(
    operator_client, failed_refund, partially_completed_refund
):
    response = operator_client.get(CHANGELIST, {"triage": "failed"})
    body = response.content.decode()
    # FAILED: both transfers reversed, the shopper refund failed. PARTIALLY_COMPLETED: the reverse.
    assert 'refund-step--done" title="Reverse merchant transfer: money moved · 103.00 USD' in body
    assert 'refund-step--failed" title="Refund shopper: failed, no money moved · 113.00 USD' in body
    assert 'refund-step--failed" title="Reverse merchant transfer: failed, no money moved · 103.00 USD' in body
    assert 'refund-step--done" title="Refund shopper: money moved · 113.00 USD' in body
    error = failed_refund.errors.get()
    assert f"{error.error_code}: {error.error_message[:40]}" in body
    assert "Failed refunds" in body and "Export CSV" in body


def test_changelist_does_not_count_the_whole_table_twice(operator_client):
    assert RefundAdmin.show_full_result_count is False
    assert RefundAdmin.show_facets.name == "NEVER"


def _failed_refunds_with_history(count):
    for _ in range(count):
        refund = RefundFactory(status=RefundStatus.FAILED)  # own bag, merchant, order, app each
        shopper = ShopperRefundFactory(refund=refund, status=ShopperRefund.Status.FAILED, attempts=1)
        for recipient in (Recipient.MERCHANT, Recipient.DEVELOPER):
            TransferReversalFactory(
                refund=refund,
                transfer__recipient=recipient,
                transfer__payment_transaction=shopper.payment_transaction,
                status=TransferReversal.Status.COMPLETE,
            )
        RefundErrorFactory.create_batch(2, refund=refund)


@pytest.mark.parametrize("per_page", [50, 100])
def test_failed_refunds_page_costs_a_fixed_number_of_queries(
    operator_client, django_assert_max_num_queries, monkeypatch, per_page
):
    monkeypatch.setattr(RefundAdmin, "list_per_page", per_page)
    _failed_refunds_with_history(10)
    with CaptureQueriesContext(connection) as ten_rows:
        response = operator_client.get(CHANGELIST, {"triage": "failed"})
    assert len(response.context["cl"].result_list) == 10

    _failed_refunds_with_history(50)
    with django_assert_max_num_queries(len(ten_rows.captured_queries)):
        response = operator_client.get(CHANGELIST, {"triage": "failed"})
    assert len(response.context["cl"].result_list) == min(60, per_page)
    assert response.content.decode().count("refund-step refund-step--failed") == min(60, per_page)


# --- the admin index ---


def test_index_shows_the_triage_counts_linking_to_their_lists(operator_client, triage_world):
    InboundEventFactory(status=InboundEvent.Status.FAILED)
    old_failure = InboundEventFactory(status=InboundEvent.Status.FAILED)
    InboundEvent.objects.filter(pk=old_failure.pk).update(date_created=timezone.now() - dt.timedelta(hours=25))
    InboundEventFactory(status=InboundEvent.Status.PROCESSED)

    response = operator_client.get(reverse("admin:index"))
    triage = response.context["triage"]
    counts = {card["label"]: card["count"] for card in triage["cards"]}
    assert counts == {
        "Failed": 2,
        "Partially completed": 1,
        "Stuck in processing": 1,
        "Inbound events failed (24 h)": 1,
        "Inbound events awaiting their order": 0,
        "Store connections needing attention": 0,
        "Found by parity check (7 days)": 0,
        "Open findings with Stripe": 0,
    }
    assert triage["needing_attention"] == 4
    body = response.content.decode()
    assert "Failed refunds (4)" in body
    assert reverse("admin:refunds_refund_failed") in body
    # Each count opens the list it counts.
    for card in triage["cards"]:
        listed_there = operator_client.get(card["href"]).context["cl"].result_count
        assert listed_there == card["count"], card["label"]


def test_index_chart_counts_refunds_per_day_by_status(operator_client, triage_world):
    days = refunds_per_day(days=30)
    assert len(days) == 30 and days[-1].day == timezone.localdate()
    by_day = {day.day: day.counts for day in days}
    today = timezone.localdate()
    assert by_day[today - dt.timedelta(days=3)] == {RefundStatus.FAILED: 1}
    assert by_day[today - dt.timedelta(days=4)] == {
        RefundStatus.COMPLETED: 1,
        RefundStatus.EXTERNAL: 1,
        RefundStatus.CANCELED: 1,
    }
    aged(RefundFactory(status=RefundStatus.COMPLETED), days=40)  # outside the window
    assert sum(day.total for day in refunds_per_day(days=30)) == len(triage_world)

    chart = operator_client.get(reverse("admin:index")).context["triage"]["chart"]
    assert chart["total"] == len(triage_world) and chart["peak"] == 3
    four_days_ago = next(bar for bar in chart["bars"] if bar["day"] == today - dt.timedelta(days=4))
    assert [segment["status"] for segment in four_days_ago["segments"]] == ["COMPLETED", "EXTERNAL", "CANCELED"]
    assert sum(segment["height"] for segment in four_days_ago["segments"]) == pytest.approx(chart["height"], abs=0.05)
    assert four_days_ago["segments"][-1]["y"] == 0  # the busiest day reaches the top
    # A bar links to that day's refunds.
    assert operator_client.get(four_days_ago["href"]).context["cl"].result_count == 3
    assert '<svg viewBox="0 0' in operator_client.get(reverse("admin:index")).content.decode()


def test_triage_counts_selector(triage_world):
    counts = triage_counts()
    assert (counts.failed, counts.partially_completed, counts.stuck, counts.inbound_failed_last_24h) == (2, 1, 1, 0)


def test_viewer_sees_the_counts_but_not_the_notice_link(viewer_client, triage_world):
    triage = viewer_client.get(reverse("admin:index")).context["triage"]
    assert triage["needing_attention"] == 4
    assert triage["notice_url"] is None


def test_staff_without_refund_permissions_sees_no_triage(client):
    from tests.factories import UserFactory

    client.force_login(UserFactory(is_staff=True))
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert "triage" not in response.context
