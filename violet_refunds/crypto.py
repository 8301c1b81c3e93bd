"""Encryption at rest for third-party credentials (Fernet, keys from FIELD_ENCRYPTION_KEY).

MultiFernet decrypts with any configured key and encrypts with the first, so keys rotate by
prepending a new one. A value that no configured key can decrypt raises CredentialsUnreadable,
which callers turn into a clear operator-facing error instead of a 500.
"""

import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


class CredentialsUnreadable(Exception):
    """Stored ciphertext cannot be decrypted with any configured FIELD_ENCRYPTION_KEY."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode() if isinstance(key, str) else key) for key in keys])


def get_fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt_str(value: str) -> str:
    return get_fernet().encrypt(value.encode()).decode()


def decrypt_str(token: str) -> str:
    try:
        return get_fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise CredentialsUnreadable(
            "Stored credentials cannot be decrypted with the configured FIELD_ENCRYPTION_KEY."
        ) from exc


class EncryptedTextField(models.TextField):
    """A text column whose database value is a Fernet token; Python sees the plaintext."""

    def get_prep_value(self, value):
        if value is None or value == "":
            return value
        return encrypt_str(str(value))

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt_str(value)


class EncryptedJSONField(models.TextField):
    """A JSON object stored as one Fernet token (so key names are not readable in a dump either)."""

    # For django-stubs (annotations only, nothing at runtime): Python sees the decoded JSON value.
    _pyi_private_set_type: Any
    _pyi_private_get_type: Any

    def get_prep_value(self, value):
        if value is None:
            return None
        return encrypt_str(json.dumps(value, sort_keys=True))

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return None
        return json.loads(decrypt_str(value))

    def to_python(self, value):
        if isinstance(value, str):
            return json.loads(value) if value else None
        return value

    def value_to_string(self, obj):
        return json.dumps(self.value_from_object(obj))


# --- key rotation ----------------------------------------------------------------------------------


def encrypted_fields() -> list[tuple[type[models.Model], models.Field]]:
    """Every encrypted column of every installed model (found by field type, so a new encrypted
    field is rotated without anyone remembering to list it)."""
    from django.apps import apps

    return [
        (model, field)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedTextField | EncryptedJSONField)
    ]


def token_is_current(token: str) -> bool:
    """Encrypted with the newest key (the first of FIELD_ENCRYPTION_KEY)?"""
    newest = settings.FIELD_ENCRYPTION_KEYS[0]
    try:
        Fernet(newest.encode() if isinstance(newest, str) else newest).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def token_rotate(token: str) -> str:
    """The same plaintext (and timestamp) encrypted with the newest key; CredentialsUnreadable if
    no configured key decrypts it."""
    try:
        return get_fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise CredentialsUnreadable("No configured FIELD_ENCRYPTION_KEY decrypts this value.") from exc
