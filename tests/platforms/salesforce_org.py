"""A recorded Salesforce Order Management org for tests: the token endpoint and the REST query
resource answered in Salesforce's documented shapes (`totalSize`, `done`, `nextRecordsUrl`,
`records` with `attributes`; errors as `[{"message", "errorCode"}]`; `Sforce-Limit-Info` on every
reply), serving the credit memos, lines, order summaries and products a test puts in it.

The queries our adapter sends are answered by what they select FROM and their WHERE clause (ids in
`IN (...)`, `OrderNumber = '...'`, `LastModifiedDate > ... AND <= ...`, `LIMIT n`)."""

from __future__ import annotations

import itertools
import json
import re
from datetime import datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

import responses

BASE_URL = "https://acme.my.salesforce.com"
API_VERSION = "62.0"
QUERY_PATH = f"/services/data/v{API_VERSION}/query"
TOKEN_URL = f"{BASE_URL}/services/oauth2/token"
CLIENT_ID = "3MVG9fe4g9fhX0E5test.consumer.key"
CLIENT_SECRET = "E5A1C0FFEE0123456789SECRET"

_ids = itertools.count(1)


def sf_id(prefix: str) -> str:
    """An 18-character Salesforce record id with the object's key prefix."""
    return f"{prefix}RM{next(_ids):010d}AAA"[:18].ljust(18, "A")


def sf_datetime(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _soql_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class SalesforceOrg:
    def __init__(self, mock: responses.RequestsMock, *, page_size: int = 2000):
        self.page_size = page_size
        self.memos: list[dict] = []
        self.lines: list[dict] = []
        self.summaries: list[dict] = []
        self.products: list[dict] = []
        self.tokens_issued = 0
        self.current_token = ""
        self.queries: list[str] = []
        self.expire_token_once = False
        self.limit_exceeded = False
        # The integration user may not read credit memos (the test query at connect time fails).
        self.credit_memos_hidden = False
        self.api_usage = (1200, 100000)
        self._cursors: dict[str, list[dict]] = {}
        mock.add_callback(responses.POST, TOKEN_URL, callback=self._token)
        mock.add_callback(responses.GET, re.compile(re.escape(BASE_URL + QUERY_PATH) + r".*"), callback=self._query)

    # --- data -----------------------------------------------------------------------------------

    def order_summary(self, order_number: str) -> str:
        summary_id = sf_id("1Os")
        self.summaries.append(
            {"attributes": self._attributes("OrderSummary", summary_id), "Id": summary_id, "OrderNumber": order_number}
        )
        return summary_id

    def product(self, product_code: str) -> str:
        product_id = sf_id("01t")
        self.products.append(
            {
                "attributes": self._attributes("Product2", product_id),
                "Id": product_id,
                "ProductCode": product_code,
                "StockKeepingUnit": product_code,
            }
        )
        return product_id

    def credit_memo(self, *, summary_id: str, changed: datetime, lines: list[dict], tax: str) -> str:
        """A credit memo of `lines` (dicts with kind "product"/"shipping", amount, product_id,
        charge_tax) plus `tax`, as SOM's create-credit-memo leaves it."""
        memo_id = sf_id("50g")
        total = Decimal(0)
        for spec in lines:
            line_id = sf_id("3tt")
            total += Decimal(spec["amount"])
            self.lines.append(
                {
                    "attributes": self._attributes("CreditMemoLine", line_id),
                    "Id": line_id,
                    "CreditMemoId": memo_id,
                    "Type": "Charge",
                    "ChargeAmount": float(spec["amount"]),
                    "ChargeTaxAmount": float(spec.get("charge_tax", "0")),
                    "AdjustmentAmount": 0.0,
                    "Product2Id": spec.get("product_id"),
                    "ReferenceEntityItemType": "DeliveryCharge" if spec["kind"] == "shipping" else "OrderProduct",
                }
            )
        if Decimal(tax):
            line_id = sf_id("3tt")
            self.lines.append(
                {
                    "attributes": self._attributes("CreditMemoLine", line_id),
                    "Id": line_id,
                    "CreditMemoId": memo_id,
                    "Type": "Tax",
                    "ChargeAmount": None,
                    "ChargeTaxAmount": None,
                    "AdjustmentAmount": None,
                    "Product2Id": None,
                    "ReferenceEntityItemType": None,
                }
            )
        self.memos.append(
            {
                "attributes": self._attributes("CreditMemo", memo_id),
                "Id": memo_id,
                "ReferenceEntityId": summary_id,
                "TotalAmount": float(total),
                "TotalTaxAmount": float(Decimal(tax)),
                "TotalAmountWithTax": float(total + Decimal(tax)),
                "CreatedDate": sf_datetime(changed),
                "LastModifiedDate": sf_datetime(changed),
            }
        )
        return memo_id

    @staticmethod
    def _attributes(sobject: str, record_id: str) -> dict:
        return {"type": sobject, "url": f"/services/data/v{API_VERSION}/sobjects/{sobject}/{record_id}"}

    # --- HTTP -----------------------------------------------------------------------------------

    def _headers(self) -> dict:
        used, limit = self.api_usage
        return {"Sforce-Limit-Info": f"api-usage={used}/{limit}", "Content-Type": "application/json;charset=UTF-8"}

    def _token(self, request):
        body = parse_qs(request.body)
        if body.get("grant_type") != ["client_credentials"] or body.get("client_secret") != [CLIENT_SECRET]:
            return 400, {}, json.dumps({"error": "invalid_client", "error_description": "invalid client credentials"})
        self.tokens_issued += 1
        self.current_token = f"00DRM0000000001!AQ.token{self.tokens_issued}"
        return (
            200,
            {"Content-Type": "application/json"},
            json.dumps(
                {
                    "access_token": self.current_token,
                    "instance_url": BASE_URL,
                    "id": "https://login.salesforce.com/id/00DRM0000000001/005RM0000000001",
                    "token_type": "Bearer",
                    "issued_at": "1772546400000",
                    "signature": "c2lnbmF0dXJl",
                }
            ),
        )

    def _query(self, request):
        if request.headers.get("Authorization") != f"Bearer {self.current_token}" or self.expire_token_once:
            self.expire_token_once = False
            self.current_token = "expired"
            error = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
            return 401, self._headers(), json.dumps(error)
        if self.limit_exceeded:
            error = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
            return 403, self._headers(), json.dumps(error)
        path = urlparse(request.url).path
        if path != QUERY_PATH:  # a nextRecordsUrl
            locator = path.rsplit("/", 1)[1]
            return self._page(locator, self._cursors.pop(locator))
        soql = parse_qs(urlparse(request.url).query)["q"][0]
        self.queries.append(soql)
        if self.credit_memos_hidden and " FROM CreditMemo" in soql:
            error = [{"message": "sObject type 'CreditMemo' is not supported.", "errorCode": "INVALID_TYPE"}]
            return 400, self._headers(), json.dumps(error)
        return self._page(None, self._answer(soql))

    def _page(self, locator: str | None, records: list[dict]):
        total = len(records)
        page, rest = records[: self.page_size], records[self.page_size :]
        body: dict = {"totalSize": total, "done": not rest, "records": page}
        if rest:
            next_locator = f"01gRM00000{len(self._cursors) + 1:05d}-{self.page_size}"
            self._cursors[next_locator] = rest
            body["nextRecordsUrl"] = f"{QUERY_PATH}/{next_locator}"
        return 200, self._headers(), json.dumps(body)

    def _answer(self, soql: str) -> list[dict]:
        ids = set(re.findall(r"'([A-Za-z0-9]{18})'", soql))
        if " FROM CreditMemoLine " in soql:
            return [line for line in self.lines if line["CreditMemoId"] in ids]
        if " FROM CreditMemo " in soql:
            memos = self.memos
            if "ReferenceEntityId IN" in soql:
                memos = [m for m in memos if m["ReferenceEntityId"] in ids]
            window = re.search(r"LastModifiedDate > (\S+) AND LastModifiedDate <= (\S+)", soql)
            if window:
                since, until = (_soql_datetime(value) for value in window.groups())
                memos = [m for m in memos if since < datetime.fromisoformat(m["LastModifiedDate"]) <= until]
            memos = sorted(memos, key=lambda m: (m["LastModifiedDate"], m["Id"]))
            limit = re.search(r"LIMIT (\d+)", soql)
            return memos[: int(limit.group(1))] if limit else memos
        if " FROM OrderSummary " in soql:
            number = re.search(r"OrderNumber = '([^']*)'", soql)
            if number:
                return [s for s in self.summaries if s["OrderNumber"] == number.group(1)]
            return [s for s in self.summaries if s["Id"] in ids]
        if " FROM Product2 " in soql:
            return [p for p in self.products if p["Id"] in ids]
        raise AssertionError(f"unexpected SOQL: {soql}")
