"""The receiver caches store connections per process (platforms.selectors): a rotated secret must
work at once, and the old one stops working when the cache entry expires (at most
WEBHOOK_CONNECTION_CACHE_SECONDS later: the accepted cost of not reading the row per delivery)."""

import time

from platforms import selectors
from platforms.models import InboundEvent, StoreConnection
from tests.platforms.delivery import post_webhook

NEW_SECRET = "rotated-shopify-app-secret"


def test_a_secret_rotated_after_a_cached_delivery_is_accepted_at_once(shopify_store):
    assert post_webhook(shopify_store, "refunds_create", event_id="wh-a").status_code == 200

    connection = StoreConnection.objects.get(pk=shopify_store.connection.pk)
    connection.webhook_secret = NEW_SECRET
    connection.save()

    rotated = post_webhook(shopify_store, "refunds_create", event_id="wh-b", secret=NEW_SECRET)
    assert rotated.status_code == 200
    assert set(InboundEvent.objects.values_list("event_id", flat=True)) == {"wh-a", "wh-b"}


def test_the_old_secret_is_refused_once_the_cache_entry_expires(shopify_store, monkeypatch):
    assert post_webhook(shopify_store, "refunds_create", event_id="wh-a").status_code == 200

    connection = StoreConnection.objects.get(pk=shopify_store.connection.pk)
    connection.webhook_secret = NEW_SECRET
    connection.save()
    later = time.monotonic() + selectors.WEBHOOK_CONNECTION_CACHE_SECONDS + 1
    monkeypatch.setattr(selectors.time, "monotonic", lambda: later)

    stale = post_webhook(shopify_store, "refunds_create", event_id="wh-c")
    assert stale.status_code == 401
    assert stale.json()["error_code"]
    assert not InboundEvent.objects.filter(event_id="wh-c").exists()
