"""Events for an order that is not (yet) a bag: AWAITING_ORDER, visible in triage, processed when the
bag appears (at once from the bag's creation, or by the beat sweep), IGNORED (default) or FAILED (the
setting INBOUND_EVENT_AWAITING_ORDER_EXPIRED_STATUS) past the expiry, and
included in `replay_events --failed`. Events that are no refund at all stay IGNORED."""

import datetime as dt
from io import StringIO

import pytest
import responses
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from platforms import services, tasks
from platforms.models import InboundEvent, Platform
from refunds.admin.selectors import triage_counts
from refunds.models import Bag, Refund
from tests.factories import BagFactory, OperatorFactory, OrderSkuFactory
from tests.platforms.delivery import deliver

EARLY_ORDER = "820982911946154508"


@pytest.fixture
def operator_client(client, db):
    client.force_login(OperatorFactory())
    return client


def _deliver_early_refund(store, event_id="wh-early"):
    """Shopify's refunds/create for an order the network has not recorded yet."""
    return deliver(store, "refunds_create", changes={"order_id": int(EARLY_ORDER)}, event_id=event_id).event


def _bag_for_early_order(store, external_id=EARLY_ORDER):
    bag = BagFactory(
        merchant=store.merchant, external_id=external_id, sub_total=10000, shipping_total=1000, tax_total=800
    )
    OrderSkuFactory(bag=bag, external_id=store.mug.external_id, sku_id="MUG-BLUE", quantity=2, price=4000)
    OrderSkuFactory(bag=bag, external_id=store.towel.external_id, sku_id="TOWEL-1", quantity=1, price=2000)
    return bag


def test_an_event_before_its_order_is_refunded_when_the_order_appears(
    shopify_store, operator_client, django_capture_on_commit_callbacks
):
    event = _deliver_early_refund(shopify_store)

    assert (event.status, event.order_id) == (InboundEvent.Status.AWAITING_ORDER, EARLY_ORDER)
    assert "awaiting its order" in event.outcome
    assert not Refund.objects.exists()
    # Visible meanwhile: its own triage count and admin filter, not mixed with FAILED.
    assert triage_counts().inbound_awaiting_order == 1
    assert triage_counts().inbound_failed_last_24h == 0
    cards = {card["label"]: card for card in operator_client.get(reverse("admin:index")).context["triage"]["cards"]}
    assert cards["Inbound events awaiting their order"]["count"] == 1
    changelist = operator_client.get(reverse("admin:platforms_inboundevent_changelist") + "?triage=awaiting")
    assert [e.pk for e in changelist.context["cl"].result_list] == [event.pk]

    # The order is recorded: its bag's creation processes the waiting event at once.
    with django_capture_on_commit_callbacks(execute=True):
        bag = _bag_for_early_order(shopify_store)

    event.refresh_from_db()
    assert event.status == InboundEvent.Status.PROCESSED
    refund = Refund.objects.get()
    assert (refund.bag, refund.inbound_event) == (bag, event)
    assert triage_counts().inbound_awaiting_order == 0


def test_the_sweep_finds_a_bag_the_creation_hook_never_saw(shopify_store, django_capture_on_commit_callbacks):
    event = _deliver_early_refund(shopify_store)
    # A bag given its platform order id by a queryset update (no post_save): only the sweep sees it.
    bag = _bag_for_early_order(shopify_store, external_id=None)
    Bag.objects.filter(pk=bag.pk).update(external_id=EARLY_ORDER)

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep_events_awaiting_order.delay().get() == 1

    event.refresh_from_db()
    assert event.status == InboundEvent.Status.PROCESSED
    assert Refund.objects.get().bag == bag


def test_an_order_that_never_appears_expires_to_ignored_by_default(shopify_store, settings):
    settings.INBOUND_EVENT_AWAITING_ORDER_EXPIRY_SECONDS = 3600
    assert settings.INBOUND_EVENT_AWAITING_ORDER_EXPIRED_STATUS == "IGNORED"
    event = _deliver_early_refund(shopify_store)
    body = event.body
    InboundEvent.objects.filter(pk=event.pk).update(awaiting_since=timezone.now() - dt.timedelta(hours=2))

    result = services.events_awaiting_order_sweep()

    assert result.expired == (event.pk,)
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.IGNORED
    assert f"No bag with platform order id {EARLY_ORDER} appeared" in event.outcome
    assert "Taken for the merchant's own order, not placed through the network: nothing to do" in event.outcome
    assert "replay this event by id" in event.outcome
    assert (event.body, event.redacted_at) == (body, None)  # kept: it carried a refund signal
    counts = triage_counts()
    assert (counts.inbound_failed_last_24h, counts.inbound_awaiting_order) == (0, 0)

    # Should the order be a network order recorded late, the replay by id still refunds it.
    Bag.objects.filter(pk=_bag_for_early_order(shopify_store, external_id=None).pk).update(external_id=EARLY_ORDER)
    call_command("replay_events", "--ids", str(event.pk), stdout=StringIO())
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.PROCESSED and Refund.objects.count() == 1


def test_an_order_that_never_appears_expires_to_failed_when_so_configured(shopify_store, settings):
    settings.INBOUND_EVENT_AWAITING_ORDER_EXPIRY_SECONDS = 3600
    settings.INBOUND_EVENT_AWAITING_ORDER_EXPIRED_STATUS = "FAILED"
    event = _deliver_early_refund(shopify_store)
    assert "FAILED if none does by" in event.outcome
    InboundEvent.objects.filter(pk=event.pk).update(awaiting_since=timezone.now() - dt.timedelta(hours=2))

    result = services.events_awaiting_order_sweep()

    assert result.expired == (event.pk,)
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.FAILED
    assert f"No bag with platform order id {EARLY_ORDER} appeared" in event.outcome
    assert "record the order, then replay the event" in event.outcome
    assert triage_counts().inbound_failed_last_24h == 1


def test_an_awaiting_event_processed_again_past_the_expiry_settles_by_the_setting(shopify_store, settings):
    """The expiry is also applied when the event itself is processed again (a replay, a duplicate)."""
    settings.INBOUND_EVENT_AWAITING_ORDER_EXPIRY_SECONDS = 3600
    event = _deliver_early_refund(shopify_store)
    assert "IGNORED if none does by" in event.outcome
    InboundEvent.objects.filter(pk=event.pk).update(awaiting_since=timezone.now() - dt.timedelta(hours=2))

    services.event_process(event.pk)

    event.refresh_from_db()
    assert event.status == InboundEvent.Status.IGNORED and "merchant's own order" in event.outcome


def test_an_unknown_expired_status_is_refused(settings):
    settings.INBOUND_EVENT_AWAITING_ORDER_EXPIRED_STATUS = "PROCESSED"
    with pytest.raises(ImproperlyConfigured, match="IGNORED or FAILED"):
        services.event_awaiting_order_expired_status()


def test_replay_failed_includes_events_awaiting_their_order(shopify_store):
    event = _deliver_early_refund(shopify_store)
    Bag.objects.filter(pk=_bag_for_early_order(shopify_store, external_id=None).pk).update(external_id=EARLY_ORDER)

    out = StringIO()
    call_command("replay_events", "--failed", stdout=out)

    event.refresh_from_db()
    assert event.status == InboundEvent.Status.PROCESSED
    assert "1 PROCESSED" in out.getvalue()
    assert Refund.objects.count() == 1


def test_the_wait_survives_repeated_processing(shopify_store):
    """Re-processing an awaiting event (a duplicate message, a replay) keeps its original wait."""
    event = _deliver_early_refund(shopify_store)
    since = timezone.now() - dt.timedelta(days=2)
    InboundEvent.objects.filter(pk=event.pk).update(awaiting_since=since)

    services.event_process(event.pk)

    event.refresh_from_db()
    assert (event.status, event.awaiting_since) == (InboundEvent.Status.AWAITING_ORDER, since)


@responses.activate
def test_an_update_of_an_unknown_order_that_is_no_refund_stays_ignored(db):
    """WooCommerce fires order.updated for every order of the store: without a refund or a
    refunded/cancelled status it is nothing to wait for."""
    from tests.platforms.conftest import make_store
    from tests.platforms.test_woocommerce import MUG, PARTIAL_REFUND, TOWEL, WEBHOOK_SECRET

    store = make_store(Platform.WOOCOMMERCE, order_id="5120", line_ids=(MUG, TOWEL), webhook_secret=WEBHOOK_SECRET)
    event = deliver(store, PARTIAL_REFUND, changes={"id": 9999, "refunds": [], "status": "processing"}).event

    assert event.status == InboundEvent.Status.IGNORED
    assert "carries no refund signal" in event.outcome
    assert triage_counts().inbound_awaiting_order == 0
