"""Wix REST APIs with a merchant's API key (seed 003 "Violet Connect", docs/platforms.md 3.6-3.7).

A merchant gives three values: API Key, Account ID, Site ID. `validate_wix_credentials` proves they
belong together with two cheap calls before the portal stores them:
1. account level: Query Sites with `wix-account-id` (the key's "Get Sites List" permission); the
   site id must be one of the account's sites;
2. site level: Site Properties with `wix-site-id` (the key's "Business Info" permission).

⚠️ Spec 3.6: examples send the bare key (`Authorization: <key>`, no `Bearer`), and exactly one of
`wix-site-id` / `wix-account-id` per call; both read the most likely way and kept here.

Writes (issue 14; the request bodies are built in platforms/adapters/wix.py, the one place their
field names live): Refund Payments (`POST /ecom/v1/order-billing/refund-payments`) is sent once, never
retried (Wix takes no idempotency key for it); Cancel Order (`POST /ecom/v1/orders/{id}/cancel`) is
retried like a read, since cancelling twice cancels once (the adapter reads a refusal back).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from platforms.clients.base import (
    PlatformAuthenticationFailed,
    PlatformClientError,
    PlatformHttpClient,
    PlatformNotFound,
    SettingUrl,
    required_credentials,
)

GUID_PATTERN = _GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Wix API keys are long opaque tokens ("IST.eyJ…"); anything short or with spaces is a copy/paste slip.
_API_KEY = re.compile(r"^\S{20,4096}$")
# Query Sites lists at most 1,000 sites per account (spec 3.7); pages of 50.
_SITES_PAGE_SIZE = 50
_SITES_MAX_PAGES = 20


class WixCredentialsInvalid(PlatformClientError):
    """Wix rejected (or the format rules out) the API key / Account ID / Site ID combination.
    `field_errors` names the field(s) to fix, for the connect-your-store form."""

    status_code = 400
    error_code = "wix_credentials_invalid"


@dataclass(frozen=True)
class WixCredentials:
    api_key: str
    account_id: str
    site_id: str


@dataclass(frozen=True)
class WixSite:
    site_id: str
    display_name: str
    currency: str


def clean_wix_credentials(*, api_key: str, account_id: str, site_id: str) -> WixCredentials:
    """Trim whitespace (seed 003: "check for any spaces or other copy/paste errors") and check formats.
    Raises WixCredentialsInvalid with per-field messages."""
    cleaned = WixCredentials(
        api_key=(api_key or "").strip(), account_id=(account_id or "").strip(), site_id=(site_id or "").strip()
    )
    errors: dict[str, list[str]] = {}
    if not _API_KEY.match(cleaned.api_key):
        errors["api_key"] = ["Paste the whole API key exactly as Wix showed it (no spaces)."]
    if not _GUID.match(cleaned.account_id):
        errors["account_id"] = ["The Account ID looks like 1a2b3c4d-0000-0000-0000-000000000000."]
    if not _GUID.match(cleaned.site_id):
        errors["site_id"] = [
            "The Site ID is the id between /dashboard/ and /home in your Wix dashboard URL "
            "(like 83799f16-12a9-4803-963e-ed6fed6c7e4d)."
        ]
    if errors:
        raise WixCredentialsInvalid("The Wix credentials are not in the expected format.", field_errors=errors)
    return cleaned


class WixClient(PlatformHttpClient):
    platform = "Wix"
    base_url = SettingUrl("WIX_API_BASE_URL")

    def __init__(self, *, api_key: str, account_id: str = "", site_id: str = "", session=None):
        super().__init__(session=session)
        self._api_key = api_key
        self.account_id = account_id
        self.site_id = site_id

    @classmethod
    def from_connection(cls, connection) -> WixClient:
        creds = required_credentials(connection, "Wix", "api_key", "account_id", "site_id")
        return cls(api_key=creds["api_key"], account_id=creds["account_id"], site_id=creds["site_id"])

    def _account_headers(self) -> dict[str, str]:
        return {"Authorization": self._api_key, "wix-account-id": self.account_id, "Accept": "application/json"}

    def _site_headers(self) -> dict[str, str]:
        return {"Authorization": self._api_key, "wix-site-id": self.site_id, "Accept": "application/json"}

    def query_sites(self) -> list[dict]:
        """Every site of the account (account-level call)."""
        sites: list[dict] = []
        cursor = None
        for _ in range(_SITES_MAX_PAGES):
            paging = {"limit": _SITES_PAGE_SIZE, **({"cursor": cursor} if cursor else {})}
            body = self.request_json(
                "POST",
                f"{self.base_url}/site-list/v2/sites/query",
                headers=self._account_headers(),
                json={"query": {"cursorPaging": paging}},
            )
            sites.extend(site for site in body.get("sites") or [] if isinstance(site, dict))
            cursor = ((body.get("metadata") or {}).get("cursors") or {}).get("next")
            if not cursor:
                break
        return sites

    def get_site_properties(self) -> dict:
        body = self.request_json("GET", f"{self.base_url}/site-properties/v4/properties", headers=self._site_headers())
        return body.get("properties") or {}

    def get_order(self, order_id: str) -> dict:
        body = self.request_json(
            "GET", f"{self.base_url}/ecom/v1/orders/{quote(order_id, safe='')}", headers=self._site_headers()
        )
        return body.get("order") or {}

    def get_order_transactions(self, order_id: str) -> dict:
        """An order's payments and refunds ("List Transactions For Single Order",
        `GET /ecom/v1/payments/orders/{orderId}`): `{orderId, payments[], refunds[]}` (the parity check)."""
        body = self.request_json(
            "GET", f"{self.base_url}/ecom/v1/payments/orders/{quote(order_id, safe='')}", headers=self._site_headers()
        )
        return body.get("orderTransactions") or {}

    def _site_write_headers(self) -> dict[str, str]:
        return {**self._site_headers(), "Content-Type": "application/json"}

    def refund_payments(self, body: dict) -> dict:
        """Refund Payments (dev.wix.com .../e-commerce/order-billing/refund-payments): the whole answer,
        `{refund, orderTransactions}`. No idempotency key exists, so it is sent once: after a timeout or
        5xx the caller looks for our marker in the order's refunds before anything is sent again."""
        return self.request_json(
            "POST",
            f"{self.base_url}/ecom/v1/order-billing/refund-payments",
            headers=self._site_write_headers(),
            json=body,
            max_attempts=1,
        )

    def cancel_order(self, order_id: str, body: dict) -> dict:
        """Cancel Order (dev.wix.com .../e-commerce/orders/cancel-order): `{order}` with status CANCELED."""
        answer = self.request_json(
            "POST",
            f"{self.base_url}/ecom/v1/orders/{quote(order_id, safe='')}/cancel",
            headers=self._site_write_headers(),
            json=body,
        )
        return answer.get("order") or {}


def validate_wix_credentials(*, api_key: str, account_id: str, site_id: str, session=None) -> WixSite:
    """Clean, format-check and prove the credentials with real calls to Wix.

    Raises WixCredentialsInvalid (fix the form), PlatformUnavailable (Wix down: try again later).
    """
    creds = clean_wix_credentials(api_key=api_key, account_id=account_id, site_id=site_id)
    client = WixClient(api_key=creds.api_key, account_id=creds.account_id, site_id=creds.site_id, session=session)
    try:
        sites = client.query_sites()
    except PlatformAuthenticationFailed as exc:
        raise WixCredentialsInvalid(
            "Wix did not accept this API key for this account.",
            field_errors={
                "api_key": ["Check the key, and that it has the 'Get Sites List' and 'Manage Sites' permissions."],
                "account_id": ["Check the Account ID shown on the API Keys page."],
            },
            platform="Wix",
            http_status=exc.http_status,
        ) from exc
    except PlatformNotFound as exc:
        raise WixCredentialsInvalid(
            "Wix does not know this account.",
            field_errors={"account_id": ["Check the Account ID shown on the API Keys page."]},
            platform="Wix",
            http_status=exc.http_status,
        ) from exc
    site_ids = {str(site.get("id", "")).lower() for site in sites}
    if creds.site_id.lower() not in site_ids:
        raise WixCredentialsInvalid(
            "The site is not one of this account's sites.",
            field_errors={"site_id": ["This Site ID does not belong to the account of the API key."]},
            platform="Wix",
        )
    try:
        properties = client.get_site_properties()
    except PlatformAuthenticationFailed as exc:
        raise WixCredentialsInvalid(
            "The API key cannot read this site.",
            field_errors={
                "api_key": ["Give the key access to this site with the 'Wix Stores' and 'Business Info' permissions."]
            },
            platform="Wix",
            http_status=exc.http_status,
        ) from exc
    except PlatformNotFound as exc:
        raise WixCredentialsInvalid(
            "Wix does not know this site.",
            field_errors={"site_id": ["Check the Site ID in your dashboard URL."]},
            platform="Wix",
            http_status=exc.http_status,
        ) from exc
    site = next(s for s in sites if str(s.get("id", "")).lower() == creds.site_id.lower())
    return WixSite(
        site_id=creds.site_id,
        display_name=str(properties.get("siteDisplayName") or site.get("displayName") or ""),
        currency=str(properties.get("paymentCurrency") or ""),
    )
