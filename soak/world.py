"""The soak's world, built with the project's own helpers (Django must be set up first):

- a channel app (known secret) with its owner user, who logs in over HTTP for the channel API;
- a Shopify merchant whose connection has the test suite's known webhook secret and shop domain;
- an SFCC Option 2 merchant with a merchant API key (the portal's own `api_key_create`);
- orders of one bag each, charged and paid out in the Stripe sandbox by `tests.world.funded_bag`
  (which goes through `refunds.services.checkout.order_charge_and_transfer`);
- an outbound webhook endpoint of the app pointing at the soak's own receiver.

Every bag is the same: 2 x 40.00 + 1 x 20.00, shipping 10.00, tax 8.00 (8 %), total 118.00 USD,
commission 10 %, so the intents can name exact amounts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

SKUS = ((4000, 2), (2000, 1))
SHIPPING = 1000
TAX = 800
COMMISSION = "10.00"
BAG_TOTAL = 4000 * 2 + 2000 + SHIPPING + TAX  # 11800
SHOP_DOMAIN = "soak-shop.myshopify.com"
APP_SECRET = "soak-app-secret"
API_USER = "soak-api"
API_PASSWORD = "soak-api-password-1"


@dataclass
class BagInfo:
    kind: str  # api_seq | api_concurrent | shopify | sfcc
    order_id: int
    bag_id: int
    external_id: str
    mug_line: str  # platform line ids (OrderSku.external_id) of the 40.00 and the 20.00 lines
    towel_line: str


@dataclass
class World:
    app_id: int
    shopify_public_id: str
    shopify_secret: str
    sfcc_api_key: str
    endpoint_id: int
    bags: list[BagInfo] = field(default_factory=list)


def build_world(*, kinds: list[str], receiver_url: str) -> World:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from notifications.models import WebhookEndpoint
    from notifications.signing import signing_secret_generate
    from platforms.models import Merchant, Platform, SfccRefundMode, StoreConnection
    from portal.keys import api_key_create
    from refunds.models import App, AppMembership
    from tests.platforms.delivery import SHOPIFY_SECRET
    from tests.world import ensure_sandbox_account

    app = App.objects.create(
        name="Soak channel",
        secret_hash=make_password(APP_SECRET),
        stripe_account_id="acct_soakchannel01",
        commission_rate=Decimal(COMMISSION),
    )
    owner = get_user_model().objects.create_user(API_USER, "soak-api@example.com", API_PASSWORD)
    AppMembership.objects.create(app=app, user=owner, role=AppMembership.Role.OWNER)
    # Registered directly: with DEBUG off the API accepts only public https URLs, and the receiver
    # is on loopback (see soak/README.md, "Hooks").
    endpoint = WebhookEndpoint.objects.create(app=app, url=receiver_url, signing_secret=signing_secret_generate())

    shopify = Merchant.objects.create(
        name="Soak Shopify store",
        platform=Platform.SHOPIFY,
        store_url=f"https://{SHOP_DOMAIN}",
        currency="USD",
        stripe_account_id="acct_soakshopify01",
    )
    shopify_connection = StoreConnection.objects.create(
        merchant=shopify,
        webhook_secret=SHOPIFY_SECRET,
        credentials={"shop_domain": SHOP_DOMAIN, "access_token": "shpat_soak"},
        status=StoreConnection.Status.CONNECTED,
    )
    sfcc = Merchant.objects.create(
        name="Soak SFCC store",
        platform=Platform.SFCC,
        sfcc_refund_mode=SfccRefundMode.MANUAL_NOTICE,
        store_url="https://sfcc-soak.example.com",
        currency="USD",
        stripe_account_id="acct_soaksfcc0001",
    )
    StoreConnection.objects.create(merchant=sfcc, credentials={}, status=StoreConnection.Status.CONNECTED)
    sfcc_key = api_key_create(merchant=sfcc, name="Soak OMS").plaintext
    for account in (app.stripe_account_id, shopify.stripe_account_id, sfcc.stripe_account_id):
        ensure_sandbox_account(account)

    world = World(
        app_id=app.pk,
        shopify_public_id=str(shopify_connection.public_id),
        shopify_secret=SHOPIFY_SECRET,
        sfcc_api_key=sfcc_key,
        endpoint_id=endpoint.pk,
    )
    for index, kind in enumerate(kinds):
        world.bags.append(_funded(kind, index, app=app, merchant=sfcc if kind == "sfcc" else shopify))
    return world


def _funded(kind: str, index: int, *, app, merchant) -> BagInfo:
    from tests.world import funded_bag

    external_id = f"{7_000_000_000 + index}" if merchant.platform == "SHOPIFY" else f"SOAK{index:06d}"
    bag = funded_bag(
        skus=SKUS,
        shipping=SHIPPING,
        tax=TAX,
        commission_rate=COMMISSION,
        app=app,
        merchant=merchant,
        external_id=external_id,
    )
    mug, towel = list(bag.skus.order_by("pk"))
    return BagInfo(
        kind=kind,
        order_id=bag.order_id,
        bag_id=bag.pk,
        external_id=external_id,
        mug_line=mug.external_id,
        towel_line=towel.external_id,
    )
