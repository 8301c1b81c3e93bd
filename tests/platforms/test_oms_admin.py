"""Operators see each OMS org's cursor, last run and last error, connect one (validated by the org)
and disconnect it (issue #25)."""

import datetime as dt

import pytest
import responses
from django.urls import reverse

from platforms.models import OmsConnection, Platform, SfccRefundMode
from tests.factories import MerchantFactory, OperatorFactory
from tests.platforms.salesforce_org import BASE_URL, CLIENT_ID, CLIENT_SECRET, SalesforceOrg


@pytest.fixture
def operator_client(client, db):
    client.force_login(OperatorFactory())
    return client


def test_changelist_shows_cursor_last_run_and_last_error_never_credentials(operator_client):
    merchant = MerchantFactory(platform=Platform.SFCC, sfcc_refund_mode=SfccRefundMode.ORDER_MANAGEMENT, name="Cedar")
    oms = OmsConnection.objects.create(
        merchant=merchant,
        base_url=BASE_URL,
        credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        cursor=dt.datetime(2026, 3, 3, 13, 0, tzinfo=dt.UTC),
        last_run_at=dt.datetime(2026, 3, 3, 14, 0, tzinfo=dt.UTC),
        last_error="Salesforce: the org's API request limit is exceeded (REQUEST_LIMIT_EXCEEDED).",
    )

    listing = operator_client.get(reverse("admin:platforms_omsconnection_changelist")).content.decode()
    page = operator_client.get(reverse("admin:platforms_omsconnection_change", args=[oms.pk])).content.decode()

    for body in (listing, page):
        assert "REQUEST_LIMIT_EXCEEDED" in body
        assert CLIENT_SECRET not in body
    assert "March 3, 2026, 1 p.m." in listing or "2026-03-03 13:00" in listing


@responses.activate
def test_operator_connects_an_org_validated_by_salesforce(operator_client):
    merchant = MerchantFactory(platform=Platform.SFCC, sfcc_refund_mode=SfccRefundMode.CANCEL_AS_REFUND)
    org = SalesforceOrg(responses)
    url = reverse("admin:platforms_omsconnection_add")
    data = {"merchant": merchant.pk, "system": "SALESFORCE_OM", "base_url": BASE_URL, "client_id": CLIENT_ID}

    refused = operator_client.post(url, {**data, "client_secret": "wrong"})
    assert refused.status_code == 200 and "did not accept" in refused.content.decode()
    assert not OmsConnection.objects.exists()

    accepted = operator_client.post(url, {**data, "client_secret": CLIENT_SECRET})
    assert accepted.status_code == 302
    oms = OmsConnection.objects.get()
    assert oms.credentials == {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    token_requests = [c for c in responses.calls if c.request.url.endswith("/services/oauth2/token")]
    assert (len(token_requests), org.tokens_issued) == (2, 1)  # one refused, one accepted
    merchant.refresh_from_db()
    assert merchant.sfcc_refund_mode == SfccRefundMode.ORDER_MANAGEMENT


def test_disconnect_action(operator_client):
    merchant = MerchantFactory(platform=Platform.SFCC, sfcc_refund_mode=SfccRefundMode.ORDER_MANAGEMENT)
    oms = OmsConnection.objects.create(merchant=merchant, base_url=BASE_URL, credentials={"client_id": "a"})

    operator_client.post(
        reverse("admin:platforms_omsconnection_changelist"),
        {"action": "disconnect", "_selected_action": [oms.pk]},
    )

    oms.refresh_from_db()
    assert (oms.status, oms.credentials) == (OmsConnection.Status.DISCONNECTED, None)
