"""Merchant API keys for the refund-notice API (SFCC Option 2): create, revoke, authenticate.

A key looks like `vrk_1a2b3c4d5e6f_<43 random url-safe characters>`. The first 16 characters are its
public prefix (stored, shown in the portal, used to find the row); only a SHA-256 of the whole key is
stored. The key has 256 bits of randomness, so a fast hash is enough (a slow password hash protects
guessable secrets, not random ones) and a stolen database gives nothing to replay. The plaintext
exists only in the response that created it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from platforms.models import Merchant, MerchantApiKey
from portal.selectors import api_key_active_for_prefix, merchant_accepts_refund_notices
from violet_refunds.exceptions import InvalidTransition, ValidationFailed

KEY_PREFIX_MARK = "vrk_"
PREFIX_LENGTH = 16  # "vrk_" + 12 hex characters; MerchantApiKey.prefix holds it
_SECRET_BYTES = 32
MAX_ACTIVE_KEYS_PER_MERCHANT = 10
NAME_MAX_LENGTH = 100
# Compared against when the prefix is unknown, so a miss costs the same as a hit.
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class CreatedKey:
    api_key: MerchantApiKey
    plaintext: str  # show once, never store


def api_key_hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def api_key_create(*, merchant: Merchant, name: str, user=None) -> CreatedKey:
    name = " ".join((name or "").split())
    if not name:
        raise ValidationFailed("Name the key.", field_errors={"name": ["Give the key a name, such as 'OMS'."]})
    if len(name) > NAME_MAX_LENGTH:
        raise ValidationFailed("Name too long.", field_errors={"name": [f"At most {NAME_MAX_LENGTH} characters."]})
    if not merchant_accepts_refund_notices(merchant):
        raise ValidationFailed(
            "This store does not send refund notices.",
            field_errors={"merchant": ["API keys are for Salesforce Commerce Cloud stores using Option 2."]},
        )
    with transaction.atomic():
        # Lock the merchant so two concurrent creations cannot both pass the limit.
        Merchant.objects.select_for_update().get(pk=merchant.pk)
        active = MerchantApiKey.objects.filter(merchant=merchant, revoked_at__isnull=True).count()
        if active >= MAX_ACTIVE_KEYS_PER_MERCHANT:
            raise ValidationFailed(
                "Too many active keys.",
                field_errors={"name": [f"Revoke a key first: at most {MAX_ACTIVE_KEYS_PER_MERCHANT} can be active."]},
            )
        for _ in range(5):  # a 48-bit prefix collision is rare; retry rather than fail
            prefix = f"{KEY_PREFIX_MARK}{secrets.token_hex((PREFIX_LENGTH - len(KEY_PREFIX_MARK)) // 2)}"
            if not MerchantApiKey.objects.filter(prefix=prefix).exists():
                break
        plaintext = f"{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        api_key = MerchantApiKey.objects.create(
            merchant=merchant, name=name, prefix=prefix, key_hash=api_key_hash(plaintext), created_by=user
        )
    return CreatedKey(api_key=api_key, plaintext=plaintext)


def api_key_revoke(*, api_key: MerchantApiKey, user=None) -> MerchantApiKey:
    if api_key.revoked_at is not None:
        raise InvalidTransition("This key is already revoked.")
    now = timezone.now()
    MerchantApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now, date_last_modified=now)
    api_key.refresh_from_db()
    return api_key


def api_key_authenticate(plaintext: str) -> MerchantApiKey | None:
    """The active key this plaintext is, or None. Constant-time comparison of the hashes."""
    plaintext = (plaintext or "").strip()
    well_formed = (
        plaintext.startswith(KEY_PREFIX_MARK)
        and len(plaintext) > PREFIX_LENGTH + 1
        and plaintext[PREFIX_LENGTH] == "_"
        and len(plaintext) <= 200
    )
    api_key = api_key_active_for_prefix(plaintext[:PREFIX_LENGTH]) if well_formed else None
    expected = api_key.key_hash if api_key else _DUMMY_HASH
    matches = hmac.compare_digest(api_key_hash(plaintext), expected)
    if api_key is None or not matches:
        return None
    now = timezone.now()
    MerchantApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now
    return api_key
