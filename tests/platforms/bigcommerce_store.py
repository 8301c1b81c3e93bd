"""The BigCommerce test store (the bc_store fixture in conftest.py) and its mocked API: the store's hash and
secrets, the captured hooks, order and refund payloads, mock_api; and readers of the Refund rows recorded.
"""

import responses

from refunds.models import Refund
from tests.platforms.delivery import fixture_json

STORE_HASH = "x7kq2m9d4f"
WEBHOOK_SECRET = "bc-hook-secret-6Qm1w2Yc0Jx9Rk4tVb7n"
ACCESS_TOKEN = "bc-api-token-test"
ORDER_URL = f"https://api.bigcommerce.com/stores/{STORE_HASH}/v2/orders/250"
REFUNDS_URL = f"https://api.bigcommerce.com/stores/{STORE_HASH}/v3/orders/250/payment_actions/refunds"
MUG, TOWEL = "101", "102"


REFUND_CREATED = "webhook_refund_created"  # captured hooks, signed (secret header) by deliver()
STATUS_UPDATED = "webhook_status_updated_cancelled"


def status_to(new_status_id: int) -> dict:
    """The changes that make the captured statusUpdated hook a change to `new_status_id`."""
    return {"data.status.new_status_id": new_status_id}


def order(status_id: int = 11) -> dict:
    return fixture_json("bigcommerce", "order.json") | {"status_id": status_id}


def refunds_body(*refunds: dict) -> dict:
    body = fixture_json("bigcommerce", "refunds_none.json")
    body["data"] = list(refunds)
    return body


def partial_refund() -> dict:
    return fixture_json("bigcommerce", "refunds_partial.json")["data"][0]


def full_refund(refund_id: int = 4) -> dict:
    """Everything in one refund: both lines, all shipping, all tax."""
    refund = partial_refund() | {"id": refund_id, "total_amount": 118, "total_tax": 8, "reason": "Full refund"}
    refund["payments"][0]["amount"] = 118
    refund["items"] = [
        {"item_type": "PRODUCT", "item_id": 101, "quantity": 2, "requested_amount": None},
        {"item_type": "PRODUCT", "item_id": 102, "quantity": 1, "requested_amount": None},
        {"item_type": "SHIPPING", "item_id": 51, "requested_amount": 10},
    ]
    return refund


def mock_api(*, status_id: int = 11, refunds: tuple = ()):
    order_call = responses.get(ORDER_URL, json=order(status_id))
    refunds_call = responses.get(REFUNDS_URL, json=refunds_body(*refunds))
    return order_call, refunds_call


def parts(refund: Refund) -> tuple[int, int, int, int]:
    return refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount


def skus(refund: Refund) -> dict[str, int]:
    return {line.order_sku.external_id: line.quantity_refunded for line in refund.skus.all()}
