"""A disputed payment refuses new refunds through the channel API with a clear 409 in the one error shape."""

import pytest

from payments.models import PaymentTransaction
from refunds.models import Refund
from tests.refunds.api.conftest import place_order

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("dispute_status", "refused"), [("needs_response", True), ("lost", True), ("won", False)])
def test_the_channel_api_refuses_a_refund_of_a_disputed_payment(api_client, channel, dispute_status, refused):
    placed = place_order(channel.app)
    PaymentTransaction.objects.filter(pk=placed.payment.pk).update(dispute_id="dp_api_1", dispute_status=dispute_status)
    response = api_client.post(
        f"/v1/orders/{placed.order.pk}/bags/{placed.bag.pk}/refunds",
        {"amount_refunded": 1000},
        format="json",
        headers=channel.headers,
    )
    if not refused:
        assert response.status_code == 201
        return
    assert response.status_code == 409
    body = response.json()
    assert (body["status"], body["error_code"]) == (409, "charge_disputed")
    assert "dp_api_1" in body["message"] and dispute_status in body["message"]
    assert not Refund.objects.exists()
