"""The receiver caches store connections per process (platforms.selectors): a rotated secret must
work at once, and the old one stops working when the cache entry expires (at most
WEBHOOK_CONNECTION_CACHE_SECONDS later: the accepted cost of not reading the row per delivery)."""

import time

from platforms import selectors
from platforms.models import InboundEvent, StoreConnection
from tests.platforms.conftest import fixture_text, shopify_post

NEW_SECRET = "rotated-shopify-app-secret"


def test_a_secret_rotated_after_a_cached_delivery_is_accepted_at_once(client, shopify_store):
    body = fixture_text("shopify", "refunds_create.json").encode()
    assert shopify_post(client, shopify_store, body, topic="refunds/create", webhook_id="wh-a").status_code == 200

    connection = StoreConnection.objects.get(pk=shopify_store.connection.pk)
    connection.webhook_secret = NEW_SECRET
    connection.save()

    rotated = shopify_post(client, shopify_store, body, topic="refunds/create", webhook_id="wh-b", secret=NEW_SECRET)
    assert rotated.status_code == 200
    assert set(InboundEvent.objects.values_list("event_id", flat=True)) == {"wh-a", "wh-b"}


def test_the_old_secret_is_refused_once_the_cache_entry_expires(client, shopify_store, monkeypatch):
    body = fixture_text("shopify", "refunds_create.json").encode()
    assert shopify_post(client, shopify_store, body, topic="refunds/create", webhook_id="wh-a").status_code == 200

    connection = StoreConnection.objects.get(pk=shopify_store.connection.pk)
    connection.webhook_secret = NEW_SECRET
    connection.save()
    later = time.monotonic() + selectors.WEBHOOK_CONNECTION_CACHE_SECONDS + 1
    monkeypatch.setattr(selectors.time, "monotonic", lambda: later)

    stale = shopify_post(client, shopify_store, body, topic="refunds/create", webhook_id="wh-c")
    assert stale.status_code == 401
    assert stale.json()["error_code"]
    assert not InboundEvent.objects.filter(event_id="wh-c").exists()
