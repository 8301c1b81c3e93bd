"""Salesforce Order Management (SOM): the OMS Salesforce pairs with B2C Commerce (issue #25).

How SOM holds a refund, and what we read (each fact with the page it comes from; ⚠️ = our reading
where the documentation does not say it outright):

- B2C orders are imported as an `OrderSummary` carrying the storefront order number in
  `OrderNumber` (Salesforce B2C Commerce Storefront Order Data Map,
  https://developer.salesforce.com/docs/commerce/salesforce-order-management/guide/order-management-b2c-commerce-data-map.html;
  OrderSummary field reference,
  https://developer.salesforce.com/docs/platform/field-reference/references/field-reference/salesforce-field-reference-ordersummary.html).
  Our bag's `external_id` for an SFCC order is that order number (`orderNo`).
- Cancellations, returns and price adjustments create change orders; the money owed back is a
  `CreditMemo` created by the `create-credit-memo` action from those change orders
  (https://developer.salesforce.com/docs/atlas.en-us.224.0.chatterapi.meta/chatterapi/connect_resources_sfom_order_summaries_create_credit_memo.htm;
  Summary Objects and Change Objects, https://help.salesforce.com/s/articleView?id=commerce.om_summary_change_objects.htm).
  One credit memo = one refund here (external id = the credit memo's Id), whatever made it: a
  cancellation that SOM turns into a credit memo is that one refund, never a second one.
- `CreditMemo` (API 48.0+; query() supported; object reference
  https://developer.salesforce.com/docs/atlas.en-us.264.0.object_reference.meta/object_reference/sforce_api_objects_creditmemo.htm):
  we read `Id, ReferenceEntityId, TotalAmount, TotalTaxAmount, TotalAmountWithTax, CreatedDate,
  LastModifiedDate`. ⚠️ `ReferenceEntityId` names the OrderSummary for SOM memos; ⚠️
  `TotalAmountWithTax` (the Data Cloud DMO lists it as TotalWithTaxAmount; when absent we add
  TotalAmount + TotalTaxAmount). `CurrencyIsoCode` exists only in multi-currency orgs, so it is not
  queried: amounts are in the merchant's currency (⚠️ a single-currency org per merchant).
- `CreditMemoLine` (object reference
  https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_creditmemoline.htm;
  Credit Memo Line Fields https://help.salesforce.com/apex/HTViewHelpDoc?id=commerce.om_credit_memo_line_fields.htm):
  product, charge, adjustment or tax lines; `ChargeAmount`, `ChargeTaxAmount`, `AdjustmentAmount`,
  `Product2Id`, `ReferenceEntityItemType` (documented values `DeliveryCharge` and `OrderProduct`).
  Delivery-charge lines are shipping, the other charge lines products; ⚠️ lines of `Type` "Tax"
  are not added to products (tax is the memo's TotalTaxAmount). ⚠️ A line has no quantity: the
  quantity of a product line is its amount over the bag line's unit price (at least 1).
- Products: the B2C integration matches `Product2.ProductCode` or `Product2.StockKeepingUnit` to
  the B2C product ID (Importing Data When Using Salesforce B2C Commerce,
  https://developer.salesforce.com/docs/commerce/salesforce-order-management/guide/order-management-importing-data-using-b2c-commerce.html),
  so a product line is matched to the bag's SKU whose `sku_id` (the storefront productId) is one of them.
- API: SOQL over `GET /services/data/vXX.X/query?q=...`; a response has `totalSize`, `done`,
  `records` (each with `attributes`) and, while `done` is false, `nextRecordsUrl` to GET next
  (https://developer.salesforce.com/docs/platform/api-rest/guide/resources-query.md). The version is
  the SALESFORCE_OM_API_VERSION setting.
- Auth: OAuth 2.0 client credentials flow of a connected app (server-to-server; the flow runs as
  the app's configured integration user): `POST https://<My Domain>/services/oauth2/token` with
  grant_type=client_credentials, client_id, client_secret (OAuth 2.0 Client Credentials Flow for
  Server-to-Server Integration, https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_flows_ca.htm).
  No refresh token: on a 401 ("The session ID or OAuth token used has expired or is invalid",
  https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm) a new
  token is fetched once and the call repeated.
- Limits: every REST response carries `Sforce-Limit-Info: api-usage=<used>/<limit>`
  (https://developer.salesforce.com/docs/atlas.en-us.264.0.api_rest.meta/api_rest/headers_api_usage.htm);
  a 403 with errorCode `REQUEST_LIMIT_EXCEEDED` means the org's API request limit is exceeded
  (errorcodes page above). Either (usage at OMS_API_USAGE_MAX_PERCENT or more) makes discovery back
  off the org for OMS_LIMIT_BACKOFF_SECONDS.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlsplit

import requests
from django.conf import settings

from platforms.adapters.base import (
    EventIgnored,
    OrderState,
    PlatformDataInvalid,
    PlatformRefund,
    RefundLine,
    parse_datetime,
    to_minor_units,
)
from platforms.clients.base import (
    ConnectionMisconfigured,
    PlatformAuthenticationFailed,
    PlatformHttpClient,
    PlatformRequestRejected,
    PlatformResponseInvalid,
)
from platforms.oms.base import OMS_TOPIC, DiscoveredRefund, Discovery, OmsLimitReached
from violet_refunds.money import AmountParts

SYSTEM = "SALESFORCE_OM"
LIMIT_EXCEEDED_CODE = "REQUEST_LIMIT_EXCEEDED"
DELIVERY_CHARGE = "DeliveryCharge"
# The SOQL fields we read, in one place (see the module docstring for each).
CREDIT_MEMO_FIELDS = (
    "Id, ReferenceEntityId, TotalAmount, TotalTaxAmount, TotalAmountWithTax, CreatedDate, LastModifiedDate"
)
CREDIT_MEMO_LINE_FIELDS = (
    "Id, CreditMemoId, Type, ChargeAmount, ChargeTaxAmount, AdjustmentAmount, Product2Id, ReferenceEntityItemType"
)
# Ids per `WHERE Id IN (...)` query: keeps the GET URL well under Salesforce's limits.
IDS_PER_QUERY = 100
_SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_API_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def soql_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def soql_string(value: str) -> str:
    """A SOQL string literal: backslash and quote escaped (SOQL's escaping rules)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def soql_ids(ids: Iterable[str]) -> str:
    """An IN list of Salesforce record ids; anything that is not an id is our data problem."""
    checked = []
    for value in ids:
        if not _SALESFORCE_ID.match(str(value)):
            raise PlatformDataInvalid(f"Salesforce returned a malformed record id {str(value)[:40]!r}")
        checked.append(f"'{value}'")
    return ", ".join(checked)


def _chunks(values: list[str], size: int = IDS_PER_QUERY) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def normalize_base_url(value: str) -> str:
    """https://<host> of the org's My Domain (path, query and trailing slash dropped)."""
    parts = urlsplit(str(value or "").strip())
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("The My Domain URL must start with https:// and name a host.")
    return f"https://{parts.netloc.lower()}"


class SalesforceOmClient(PlatformHttpClient):
    platform = SYSTEM

    def __init__(self, *, base_url: str, client_id: str, client_secret: str, session=None):
        super().__init__(session=session)
        self.base_url = normalize_base_url(base_url)
        self._client_id = client_id
        self._client_secret = client_secret
        self._token: str | None = None
        self.tokens_fetched = 0
        # The last Sforce-Limit-Info api-usage seen: (used, limit), and the header verbatim.
        self.api_usage: tuple[int, int] | None = None
        self.api_usage_text = ""

    @classmethod
    def from_connection(cls, connection, *, session=None) -> SalesforceOmClient:
        credentials = connection.credentials or {}
        client_id = str(credentials.get("client_id") or "").strip()
        client_secret = str(credentials.get("client_secret") or "").strip()
        if not (client_id and client_secret and connection.base_url):
            raise ConnectionMisconfigured(
                f"The OMS connection of {connection.merchant} lacks its My Domain URL or client credentials.",
                platform=SYSTEM,
            )
        return cls(base_url=connection.base_url, client_id=client_id, client_secret=client_secret, session=session)

    @property
    def query_url(self) -> str:
        return f"{self.base_url}/services/data/v{settings.SALESFORCE_OM_API_VERSION}/query"

    # --- HTTP hooks: limits and 403 REQUEST_LIMIT_EXCEEDED ----------------------------------------

    def _decode(self, response: requests.Response) -> dict | list:
        self._note_limit_info(response)
        return super()._decode(response)

    def _rejection(self, response: requests.Response) -> PlatformRequestRejected:
        self._note_limit_info(response)
        if response.status_code == 403 and LIMIT_EXCEEDED_CODE in (response.text or ""):
            raise OmsLimitReached(
                "Salesforce: the org's API request limit is exceeded (REQUEST_LIMIT_EXCEEDED).",
                platform=SYSTEM,
                http_status=403,
            )
        return super()._rejection(response)

    def _note_limit_info(self, response: requests.Response) -> None:
        header = response.headers.get("Sforce-Limit-Info") or ""
        match = _API_USAGE.search(header)
        if match:
            self.api_usage = (int(match.group(1)), int(match.group(2)))
            self.api_usage_text = header[:100]

    def usage_near_limit(self) -> bool:
        if not self.api_usage or self.api_usage[1] <= 0:
            return False
        used, limit = self.api_usage
        return used * 100 >= limit * settings.OMS_API_USAGE_MAX_PERCENT

    # --- token and queries --------------------------------------------------------------------

    def access_token(self, *, renew: bool = False) -> str:
        if self._token and not renew:
            return self._token
        body = self.request_json(
            "POST",
            f"{self.base_url}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            },
            headers={"Accept": "application/json"},
        )
        token = body.get("access_token")
        if not token:
            raise PlatformResponseInvalid("Salesforce token response has no access_token.", platform=SYSTEM)
        self._token = str(token)
        self.tokens_fetched += 1
        return self._token

    def _get(self, url: str, params: dict | None = None) -> dict:
        """GET with the bearer token; a 401 (token expired or revoked) fetches a new token once."""
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.access_token(renew=attempt == 2)}", "Accept": "application/json"}
            try:
                return self.request_json("GET", url, headers=headers, params=params)
            except PlatformAuthenticationFailed as exc:
                if exc.http_status != 401 or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def query_pages(self, soql: str) -> Iterator[dict]:
        """The query's result pages, following nextRecordsUrl (on the same host only)."""
        page = self._get(self.query_url, params={"q": soql})
        while True:
            records = page.get("records")
            if not isinstance(records, list) or "done" not in page:
                raise PlatformResponseInvalid("Salesforce query result without records/done.", platform=SYSTEM)
            yield page
            next_url = page.get("nextRecordsUrl")
            if page.get("done") or not next_url:
                return
            if not str(next_url).startswith("/services/data/"):
                raise PlatformResponseInvalid("Salesforce nextRecordsUrl is not a query path.", platform=SYSTEM)
            page = self._get(f"{self.base_url}{next_url}")

    def query_records(self, soql: str) -> list[dict]:
        return [r for page in self.query_pages(soql) for r in page["records"] if isinstance(r, dict)]


# --- the adapter ------------------------------------------------------------------------------------


def _amount(record: Mapping, name: str) -> Decimal:
    value = record.get(name)
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


class SalesforceOmAdapter:
    system = SYSTEM
    label = "Salesforce Order Management"

    def credentials_validate(self, *, base_url: str, credentials: Mapping[str, str], session=None) -> str:
        client = SalesforceOmClient(
            base_url=base_url,
            client_id=credentials.get("client_id", ""),
            client_secret=credentials.get("client_secret", ""),
            session=session,
        )
        client.access_token()
        # The test query: the integration user can read credit memos (what discovery needs).
        client.query_records("SELECT Id FROM CreditMemo ORDER BY LastModifiedDate DESC LIMIT 1")
        return urlsplit(client.base_url).hostname or client.base_url

    def refunds_discover(self, connection, *, since: datetime, until: datetime, limit: int, session=None) -> Discovery:
        client = SalesforceOmClient.from_connection(connection, session=session)
        soql = (
            f"SELECT {CREDIT_MEMO_FIELDS} FROM CreditMemo WHERE LastModifiedDate > {soql_datetime(since)} "  # noqa: S608 - SOQL values escaped (soql_*)
            f"AND LastModifiedDate <= {soql_datetime(until)} ORDER BY LastModifiedDate, Id LIMIT {int(limit)}"
        )
        memos: list[dict] = []
        limit_reached = False
        # A 403 REQUEST_LIMIT_EXCEEDED anywhere raises OmsLimitReached: nothing is stored, the cursor
        # stays, discovery backs off. Usage near the limit stops the paging after this page instead.
        for page in client.query_pages(soql):
            memos.extend(r for r in page["records"] if isinstance(r, dict))
            if client.usage_near_limit():
                limit_reached = True
                break
        if not memos:
            return Discovery(read_until=until, complete=True, api_usage=client.api_usage_text)
        refunds = self._refunds_for(client, memos)
        # A full batch (or a stop near the limits) reads on from the last memo's change next run
        # (`>` that instant, so a memo changed in the same second as the last one read is read
        # again and deduplicated: see platforms.oms.discovery for the overlap).
        cut_short = len(memos) >= limit or limit_reached
        last_changed = parse_datetime(memos[-1].get("LastModifiedDate")) or since
        return Discovery(
            refunds=tuple(refunds),
            read_until=last_changed if cut_short else until,
            complete=not cut_short,
            limit_reached=limit_reached,
            api_usage=client.api_usage_text,
        )

    def _refunds_for(self, client: SalesforceOmClient, memos: list[dict]) -> list[DiscoveredRefund]:
        """The memos with their lines, order numbers and product codes (three more queries per batch)."""
        memo_ids = [str(m.get("Id")) for m in memos if m.get("Id")]
        lines_by_memo: dict[str, list[dict]] = {}
        for chunk in _chunks(memo_ids):
            soql = f"SELECT {CREDIT_MEMO_LINE_FIELDS} FROM CreditMemoLine WHERE CreditMemoId IN ({soql_ids(chunk)})"  # noqa: S608 - SOQL values escaped (soql_*)
            for line in client.query_records(soql):
                lines_by_memo.setdefault(str(line.get("CreditMemoId")), []).append(line)
        summary_ids = sorted({str(m.get("ReferenceEntityId")) for m in memos if m.get("ReferenceEntityId")})
        order_numbers = self._order_numbers(client, summary_ids)
        product_ids = sorted(
            {str(line["Product2Id"]) for lines in lines_by_memo.values() for line in lines if line.get("Product2Id")}
        )
        products = self._products(client, product_ids)
        refunds = []
        for memo in memos:
            memo_id = str(memo.get("Id") or "")
            order_number = order_numbers.get(str(memo.get("ReferenceEntityId")), "")
            if not memo_id or not order_number:
                continue  # not a memo of an order summary (e.g. another app's): not a storefront refund
            lines = lines_by_memo.get(memo_id, [])
            body = {
                "system": SYSTEM,
                "credit_memo": _without_attributes(memo),
                "order_number": order_number,
                "lines": [_without_attributes(line) for line in lines],
                "products": {
                    pid: products[pid] for pid in sorted({str(ln.get("Product2Id")) for ln in lines}) if pid in products
                },
            }
            refunds.append(
                DiscoveredRefund(
                    external_id=memo_id,
                    order_number=order_number,
                    changed_at=parse_datetime(memo.get("LastModifiedDate")),
                    body=body,
                )
            )
        return refunds

    def _order_numbers(self, client: SalesforceOmClient, summary_ids: list[str]) -> dict[str, str]:
        numbers: dict[str, str] = {}
        for chunk in _chunks(summary_ids):
            for row in client.query_records(
                f"SELECT Id, OrderNumber FROM OrderSummary WHERE Id IN ({soql_ids(chunk)})"  # noqa: S608 - SOQL values escaped (soql_*)
            ):
                if row.get("OrderNumber"):
                    numbers[str(row.get("Id"))] = str(row["OrderNumber"])
        return numbers

    def _products(self, client: SalesforceOmClient, product_ids: list[str]) -> dict[str, dict]:
        products: dict[str, dict] = {}
        for chunk in _chunks(product_ids):
            soql = f"SELECT Id, ProductCode, StockKeepingUnit FROM Product2 WHERE Id IN ({soql_ids(chunk)})"  # noqa: S608 - SOQL values escaped (soql_*)
            for row in client.query_records(soql):
                products[str(row.get("Id"))] = {
                    "ProductCode": row.get("ProductCode") or "",
                    "StockKeepingUnit": row.get("StockKeepingUnit") or "",
                }
        return products

    def order_refunds_read(self, connection, order_number: str, *, topic: str) -> OrderState:
        """Parity: every credit memo of the order summary with this storefront order number."""
        client = SalesforceOmClient.from_connection(connection)
        summaries = client.query_records(
            f"SELECT Id, OrderNumber FROM OrderSummary WHERE OrderNumber = {soql_string(order_number)}"  # noqa: S608 - SOQL values escaped (soql_*)
        )
        summary_ids = [str(s["Id"]) for s in summaries if s.get("Id")]
        memos = (
            client.query_records(
                f"SELECT {CREDIT_MEMO_FIELDS} FROM CreditMemo WHERE ReferenceEntityId IN ({soql_ids(summary_ids)}) "  # noqa: S608 - SOQL values escaped (soql_*)
                "ORDER BY CreatedDate, Id"
            )
            if summary_ids
            else []
        )
        currency = connection.merchant.currency
        read = (self.refund_from_body(found.body, currency=currency) for found in self._refunds_for(client, memos))
        refunds = [refund for refund in read if refund.amount and refund.amount > 0]  # zero memos move nothing
        return OrderState(
            platform="SFCC",
            order_id=order_number,
            topic=topic,
            currency=connection.merchant.currency,
            refunds=tuple(refunds),
        )

    def order_state_from_body(self, body: Mapping, *, merchant, topic: str = OMS_TOPIC) -> OrderState:
        order_number = str(body.get("order_number") or "")
        if not order_number:
            raise PlatformDataInvalid("OMS refund without its storefront order number")
        refund = self.refund_from_body(body, currency=merchant.currency)
        if refund.amount is None or refund.amount <= 0:
            raise EventIgnored(f"Salesforce credit memo {refund.external_id} returns no money.")
        return OrderState(
            platform="SFCC", order_id=order_number, topic=topic, currency=merchant.currency, refunds=(refund,)
        )

    def refund_from_body(self, body: Mapping, *, currency: str) -> PlatformRefund:
        """One credit memo as a PlatformRefund: the money returned and its exact split. Product
        lines carry the storefront product ids (`product:<code>`); the SFCC adapter matches them
        to the bag's lines."""
        memo = body.get("credit_memo") or {}
        memo_id = str(memo.get("Id") or "")
        if not memo_id:
            raise PlatformDataInvalid("Salesforce credit memo without Id")

        def minor(value: Decimal) -> int:
            return to_minor_units(value, currency, round_half_up=True)

        products = body.get("products") or {}
        sub_total = shipping = shipping_tax = 0
        lines: list[RefundLine] = []
        for line in body.get("lines") or []:
            if str(line.get("Type") or "").lower() == "tax":
                continue
            amount = minor(_amount(line, "ChargeAmount") + _amount(line, "AdjustmentAmount"))
            if line.get("ReferenceEntityItemType") == DELIVERY_CHARGE:
                shipping += amount
                shipping_tax += minor(_amount(line, "ChargeTaxAmount"))
                continue
            sub_total += amount
            product = products.get(str(line.get("Product2Id"))) or {}
            codes = [c for c in (product.get("ProductCode"), product.get("StockKeepingUnit")) if c]
            if codes and amount > 0:
                lines.append(RefundLine(line_item_external_id="product:" + "|".join(codes), quantity=0, amount=amount))
        tax = minor(_amount(memo, "TotalTaxAmount"))
        if memo.get("TotalAmountWithTax") not in (None, ""):
            total = minor(_amount(memo, "TotalAmountWithTax"))
        else:
            total = minor(_amount(memo, "TotalAmount")) + tax
        return PlatformRefund(
            external_id=memo_id,
            amount=total,
            parts=AmountParts(sub_total=sub_total, shipping=shipping, tax=tax),
            shipping_tax=shipping_tax,
            lines=tuple(lines),
            reason=f"Salesforce Order Management credit memo {memo_id}",
            restock=bool(lines),
            created_at=parse_datetime(memo.get("CreatedDate")),
        )


def _without_attributes(record: Mapping) -> dict:
    return {key: value for key, value in record.items() if key != "attributes"}
