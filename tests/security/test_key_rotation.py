"""`manage.py rotate_field_encryption` (issue 19, item 8): with two keys configured (new first), every
encrypted field is re-encrypted with the new key; afterwards the old key can be removed and
everything still decrypts. Idempotent (a second run rotates nothing) and resumable (a run stopped
half-way leaves rotated rows rotated; the next run finishes the rest)."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from notifications.models import WebhookEndpoint
from platforms.models import StoreConnection
from tests.factories import AppFactory, StoreConnectionFactory
from violet_refunds import crypto

pytestmark = pytest.mark.django_db

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
CREDENTIALS = {"api_key": "IST.secret-api-key", "site_id": "9c8b7a6d"}


@pytest.fixture(autouse=True)
def _fresh_fernet_cache():
    crypto._fernet.cache_clear()
    yield
    crypto._fernet.cache_clear()


def rotate(**options) -> str:
    out = StringIO()
    call_command("rotate_field_encryption", stdout=out, **options)
    return out.getvalue()


def raw(model, pk, column):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {model._meta.db_table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


@pytest.fixture
def stored_with_the_old_key(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    connections = [
        StoreConnectionFactory(credentials={**CREDENTIALS, "n": n}, webhook_secret=f"whsec-{n}") for n in range(3)
    ]
    endpoints = [
        WebhookEndpoint.objects.create(app=AppFactory(), url=f"https://h{n}.example/", signing_secret=f"sig-{n}")
        for n in range(2)
    ]
    return connections, endpoints


def test_every_encrypted_field_is_found():
    found = {(model._meta.label, field.name) for model, field in crypto.encrypted_fields()}
    assert {
        ("platforms.StoreConnection", "credentials"),
        ("platforms.StoreConnection", "webhook_secret"),
        ("notifications.WebhookEndpoint", "signing_secret"),
    } <= found


def test_after_rotation_the_old_key_can_be_retired(settings, stored_with_the_old_key):
    connections, endpoints = stored_with_the_old_key
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]

    output = rotate(batch_size=2)

    assert "platforms.StoreConnection.credentials: 3 rotated, 0 already current" in output
    assert "platforms.StoreConnection.webhook_secret: 3 rotated" in output
    assert "notifications.WebhookEndpoint.signing_secret: 2 rotated" in output
    old_only = Fernet(OLD_KEY.encode())
    token = raw(StoreConnection, connections[0].pk, "credentials")
    with pytest.raises(Exception):  # noqa: B017 - InvalidToken: the old key no longer reads it
        old_only.decrypt(token.encode())

    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]  # the old key is gone
    crypto._fernet.cache_clear()
    for n, conn in enumerate(connections):
        fresh = StoreConnection.objects.get(pk=conn.pk)
        assert fresh.credentials == {**CREDENTIALS, "n": n}
        assert fresh.webhook_secret == f"whsec-{n}"
    assert [WebhookEndpoint.objects.get(pk=e.pk).signing_secret for e in endpoints] == ["sig-0", "sig-1"]


def test_a_second_run_rotates_nothing(settings, stored_with_the_old_key):
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    rotate()
    connections, _ = stored_with_the_old_key
    before = raw(StoreConnection, connections[0].pk, "credentials")

    output = rotate()

    assert "Total: 0 rotated" in output
    assert raw(StoreConnection, connections[0].pk, "credentials") == before


def test_a_stopped_run_is_finished_by_the_next_one(settings, stored_with_the_old_key, monkeypatch):
    connections, endpoints = stored_with_the_old_key
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    calls = {"n": 0}
    real_rotate = crypto.token_rotate

    def crash_after_four(token):
        calls["n"] += 1
        if calls["n"] > 4:
            raise KeyboardInterrupt  # the operator's Ctrl-C, mid-batch
        return real_rotate(token)

    from platforms.management.commands import rotate_field_encryption

    monkeypatch.setattr(rotate_field_encryption, "token_rotate", crash_after_four)
    with pytest.raises(KeyboardInterrupt):
        rotate(batch_size=2)
    monkeypatch.undo()

    output = rotate(batch_size=2)

    # The credentials (two batches, 3 values) were committed before the stop; the interrupted batch
    # of webhook secrets was rolled back whole.
    assert "Total: 5 rotated, 3 already current" in output
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    crypto._fernet.cache_clear()
    assert all(StoreConnection.objects.get(pk=c.pk).credentials["api_key"] == "IST.secret-api-key" for c in connections)
    assert all(WebhookEndpoint.objects.get(pk=e.pk).signing_secret for e in endpoints)


def test_dry_run_counts_and_writes_nothing(settings, stored_with_the_old_key):
    connections, _ = stored_with_the_old_key
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    before = raw(StoreConnection, connections[0].pk, "credentials")
    output = rotate(dry_run=True)
    assert "Total: 8 to rotate" in output
    assert raw(StoreConnection, connections[0].pk, "credentials") == before


def test_unreadable_values_are_reported_and_fail_the_run(settings, stored_with_the_old_key):
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]  # the old key was dropped too early
    with pytest.raises(CommandError, match="cannot be decrypted"):
        rotate()
