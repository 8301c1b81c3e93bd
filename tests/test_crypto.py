"""Store credentials and webhook secrets are encrypted at rest (Fernet) and keys can be rotated."""

import json

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import connection

from platforms.models import StoreConnection
from tests.factories import StoreConnectionFactory
from violet_refunds import crypto
from violet_refunds.crypto import CredentialsUnreadable

WIX_CREDENTIALS = {
    "api_key": "IST.eyJraWQiOiJQb3pIX2FDMiIsImFsZyI6IlJTMjU2In0.wix-api-key",
    "account_id": "2f0d5a3c-4b6e-4c1f-9a0b-7d8e6f5c4b3a",
    "site_id": "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
}
WEBHOOK_SECRET = "whsec-shopify-app-secret-7f3a9c"


@pytest.fixture(autouse=True)
def _fresh_fernet_cache():
    # MultiFernet objects are cached per key tuple; start and end every test without stale ones.
    crypto._fernet.cache_clear()
    yield
    crypto._fernet.cache_clear()


@pytest.fixture
def new_key():
    return Fernet.generate_key().decode()


def _raw_columns(table, pk, *columns):
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(table)} WHERE id = %s",  # noqa: S608
            [pk],
        )
        return cursor.fetchone()


def _stored_connection(pk):
    return _raw_columns(StoreConnection._meta.db_table, pk, "credentials", "webhook_secret")


def _decrypt_with(key, token):
    return Fernet(key.encode()).decrypt(token.encode()).decode()


@pytest.mark.django_db
def test_credentials_and_webhook_secret_are_fernet_tokens_in_the_database():
    store = StoreConnectionFactory(credentials=WIX_CREDENTIALS, webhook_secret=WEBHOOK_SECRET)
    raw_credentials, raw_secret = _stored_connection(store.pk)

    for raw in (raw_credentials, raw_secret):
        assert raw.startswith("gAAAAA")  # Fernet version byte 0x80, base64
    for plaintext in (*WIX_CREDENTIALS.values(), *WIX_CREDENTIALS, WEBHOOK_SECRET):
        assert plaintext not in raw_credentials
        assert plaintext not in raw_secret
    # The tokens are what the configured key makes of the values, nothing else.
    key = settings.FIELD_ENCRYPTION_KEYS[0]
    assert json.loads(_decrypt_with(key, raw_credentials)) == WIX_CREDENTIALS
    assert _decrypt_with(key, raw_secret) == WEBHOOK_SECRET


@pytest.mark.django_db
def test_outbound_webhook_signing_secret_is_encrypted_too():
    from notifications.models import WebhookEndpoint
    from tests.factories import WebhookEndpointFactory

    endpoint = WebhookEndpointFactory(signing_secret="whsec-channel-outbound")
    (raw,) = _raw_columns(WebhookEndpoint._meta.db_table, endpoint.pk, "signing_secret")
    assert raw.startswith("gAAAAA")
    assert "whsec-channel-outbound" not in raw
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).signing_secret == "whsec-channel-outbound"


@pytest.mark.django_db
def test_round_trip_returns_the_plaintext():
    store = StoreConnectionFactory(credentials=WIX_CREDENTIALS, webhook_secret=WEBHOOK_SECRET)
    reloaded = StoreConnection.objects.get(pk=store.pk)
    assert reloaded.credentials == WIX_CREDENTIALS
    assert reloaded.webhook_secret == WEBHOOK_SECRET

    reloaded.credentials = {**WIX_CREDENTIALS, "api_key": "IST.rotated"}
    reloaded.save()
    assert StoreConnection.objects.get(pk=store.pk).credentials["api_key"] == "IST.rotated"


@pytest.mark.django_db
def test_same_secret_encrypts_differently_each_time():
    first = StoreConnectionFactory(webhook_secret=WEBHOOK_SECRET)
    second = StoreConnectionFactory(webhook_secret=WEBHOOK_SECRET)
    assert _stored_connection(first.pk)[1] != _stored_connection(second.pk)[1]


@pytest.mark.django_db
def test_empty_values_stay_empty():
    store = StoreConnectionFactory(credentials=None, webhook_secret="")
    assert _stored_connection(store.pk) == (None, "")
    reloaded = StoreConnection.objects.get(pk=store.pk)
    assert (reloaded.credentials, reloaded.webhook_secret) == (None, "")


@pytest.mark.django_db
def test_reading_with_a_different_key_raises_credentials_unreadable(settings, new_key):
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    store = StoreConnectionFactory(credentials=WIX_CREDENTIALS, webhook_secret=WEBHOOK_SECRET)
    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    crypto._fernet.cache_clear()

    with pytest.raises(CredentialsUnreadable, match="FIELD_ENCRYPTION_KEY"):
        StoreConnection.objects.get(pk=store.pk)

    # Nothing was lost: with the right key back the row reads again.
    settings.FIELD_ENCRYPTION_KEYS = [old_key]
    crypto._fernet.cache_clear()
    assert StoreConnection.objects.get(pk=store.pk).credentials == WIX_CREDENTIALS


@pytest.mark.django_db
def test_key_rotation_reads_old_rows_and_writes_with_the_new_key(settings, new_key):
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    old_row = StoreConnectionFactory(credentials=WIX_CREDENTIALS, webhook_secret=WEBHOOK_SECRET)

    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]  # new key first, old key second
    crypto._fernet.cache_clear()
    reloaded = StoreConnection.objects.get(pk=old_row.pk)
    assert reloaded.credentials == WIX_CREDENTIALS
    assert reloaded.webhook_secret == WEBHOOK_SECRET

    # Saving re-encrypts with the new key: after the old key is retired the row still reads.
    reloaded.save()
    new_row = StoreConnectionFactory(webhook_secret="whsec-after-rotation")
    for pk, secret in ((old_row.pk, WEBHOOK_SECRET), (new_row.pk, "whsec-after-rotation")):
        _raw_credentials, raw_secret = _stored_connection(pk)
        assert _decrypt_with(new_key, raw_secret) == secret
        with pytest.raises(InvalidToken):
            _decrypt_with(old_key, raw_secret)

    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    crypto._fernet.cache_clear()
    assert StoreConnection.objects.get(pk=old_row.pk).webhook_secret == WEBHOOK_SECRET
    assert StoreConnection.objects.get(pk=new_row.pk).webhook_secret == "whsec-after-rotation"
