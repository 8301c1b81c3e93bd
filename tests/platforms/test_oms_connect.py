"""Connecting an SFCC merchant's Salesforce Order Management org (issue #25 item 2): real token and
test-query calls (recorded) before anything is saved; credentials encrypted; disconnect."""

import pytest
import responses
from django.db import connection as db_connection

from platforms.models import OmsConnection, Platform, SfccRefundMode, StoreConnection
from platforms.oms.connect import oms_connect, oms_disconnect
from tests.factories import MerchantFactory
from tests.platforms.salesforce_org import BASE_URL, CLIENT_ID, CLIENT_SECRET, SalesforceOrg
from violet_refunds.exceptions import ValidationFailed


def _sfcc_merchant(mode=SfccRefundMode.MANUAL_NOTICE):
    return MerchantFactory(platform=Platform.SFCC, sfcc_refund_mode=mode)


@responses.activate
def test_connect_checks_a_token_and_a_test_query_then_stores_encrypted(db):
    merchant = _sfcc_merchant()
    org = SalesforceOrg(responses)

    oms = oms_connect(
        merchant=merchant,
        base_url=f" {BASE_URL}/lightning/page/home ",
        client_id=f" {CLIENT_ID}",
        client_secret=CLIENT_SECRET,
    )

    assert org.tokens_issued == 1
    assert org.queries == ["SELECT Id FROM CreditMemo ORDER BY LastModifiedDate DESC LIMIT 1"]
    oms.refresh_from_db()
    assert (oms.base_url, oms.status, oms.system) == (BASE_URL, OmsConnection.Status.CONNECTED, "SALESFORCE_OM")
    assert oms.credentials == {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT credentials::text FROM platforms_omsconnection WHERE id = %s", [oms.pk])
        assert CLIENT_SECRET not in cursor.fetchone()[0]
    merchant.refresh_from_db()
    assert merchant.sfcc_refund_mode == SfccRefundMode.ORDER_MANAGEMENT
    assert StoreConnection.objects.get(merchant=merchant).status == StoreConnection.Status.CONNECTED


@responses.activate
def test_refused_credentials_save_nothing(db):
    merchant = _sfcc_merchant()
    SalesforceOrg(responses)

    with pytest.raises(ValidationFailed) as raised:
        oms_connect(merchant=merchant, base_url=BASE_URL, client_id=CLIENT_ID, client_secret="wrong-secret")

    assert "client_id" in raised.value.field_errors
    assert not OmsConnection.objects.exists()
    merchant.refresh_from_db()
    assert merchant.sfcc_refund_mode == SfccRefundMode.MANUAL_NOTICE


@responses.activate
def test_a_user_without_access_to_credit_memos_is_refused(db):
    merchant = _sfcc_merchant()
    org = SalesforceOrg(responses)
    org.credit_memos_hidden = True

    with pytest.raises(ValidationFailed):
        oms_connect(merchant=merchant, base_url=BASE_URL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert not OmsConnection.objects.exists()


@pytest.mark.parametrize(
    "url",
    ["http://acme.my.salesforce.com", "acme.my.salesforce.com", "https://127.0.0.1", "https://10.0.0.7:8443"],
)
def test_the_my_domain_url_must_be_https_and_public(db, url):
    with pytest.raises(ValidationFailed) as raised:
        oms_connect(merchant=_sfcc_merchant(), base_url=url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert "base_url" in raised.value.field_errors
    assert not OmsConnection.objects.exists()


def test_only_sfcc_merchants_connect_an_oms(db):
    with pytest.raises(ValidationFailed) as raised:
        oms_connect(
            merchant=MerchantFactory(platform=Platform.SHOPIFY), base_url=BASE_URL, client_id="a", client_secret="b"
        )
    assert "merchant" in raised.value.field_errors


def test_disconnect_wipes_the_credentials_and_goes_back_to_option_2(db):
    merchant = _sfcc_merchant(SfccRefundMode.ORDER_MANAGEMENT)
    oms = OmsConnection.objects.create(
        merchant=merchant, base_url=BASE_URL, credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    )

    oms_disconnect(merchant=merchant)

    oms.refresh_from_db()
    assert (oms.status, oms.credentials) == (OmsConnection.Status.DISCONNECTED, None)
    merchant.refresh_from_db()
    assert merchant.sfcc_refund_mode == SfccRefundMode.MANUAL_NOTICE
