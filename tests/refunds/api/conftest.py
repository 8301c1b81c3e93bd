"""Fixtures for the channel API: an app with its owner and ready-made headers, and refund graphs."""

from dataclasses import dataclass, field

import pytest
from rest_framework.test import APIClient

from payments.models import PaymentTransaction
from refunds.api.auth import APP_ID_HEADER, APP_SECRET_HEADER, TOKEN_HEADER, TokenType, token_issue
from refunds.models import App, AppMembership, Bag, BagStatus, Order
from tests.factories import (
    DEFAULT_APP_SECRET,
    AppFactory,
    AppMembershipFactory,
    BagFactory,
    OrderFactory,
    OrderSkuFactory,
    PaymentTransactionFactory,
    UserFactory,
)


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


def channel_headers(app: App, token: str | None = None, secret: str = DEFAULT_APP_SECRET) -> dict:
    headers = {APP_ID_HEADER: str(app.pk), APP_SECRET_HEADER: secret}
    if token is not None:
        headers[TOKEN_HEADER] = token
    return headers


@dataclass
class Channel:
    app: App
    owner: object
    headers: dict = field(default_factory=dict)

    def refresh_token(self) -> str:
        return token_issue(user=self.owner, app=self.app, token_type=TokenType.REFRESH)


def make_channel() -> Channel:
    app = AppFactory()
    owner = UserFactory(first_name="Ada", last_name="Owner")
    AppMembershipFactory(app=app, user=owner, role=AppMembership.Role.OWNER)
    token = token_issue(user=owner, app=app, token_type=TokenType.ACCESS)
    return Channel(app=app, owner=owner, headers=channel_headers(app, token))


@pytest.fixture
def channel(db) -> Channel:
    return make_channel()


@pytest.fixture
def other_channel(db) -> Channel:
    return make_channel()


@dataclass
class PlacedOrder:
    order: Order
    payment: PaymentTransaction
    bag: Bag
    skus: list


def place_order(app: App, *, bag_status: str = BagStatus.COMPLETED) -> PlacedOrder:
    """An order of one bag: sub_total 10000 (2 × 2500 + 1 × 5000), shipping 500, tax 800."""
    order = OrderFactory(app=app, sub_total=10000, shipping_total=500, tax_total=800, total=11300)
    payment = PaymentTransactionFactory(order=order, amount=11300)
    bag = BagFactory(order=order, status=bag_status)
    skus = [
        OrderSkuFactory(bag=bag, quantity=2, price=2500),
        OrderSkuFactory(bag=bag, quantity=1, price=5000),
    ]
    return PlacedOrder(order=order, payment=payment, bag=bag, skus=skus)


@pytest.fixture
def placed(channel) -> PlacedOrder:
    return place_order(channel.app)


@pytest.fixture
def foreign(other_channel) -> PlacedOrder:
    return place_order(other_channel.app)
