"""Identifiers shaped like Stripe's: a type prefix and 24 random alphanumerics (pi_3Mtw…)."""

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits

PLATFORM_ACCOUNT_ID = "acct_1SandboxPlatform000"


def new_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{''.join(secrets.choice(_ALPHABET) for _ in range(length))}"


def new_request_id() -> str:
    return new_id("req", 14)
