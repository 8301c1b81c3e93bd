"""The web benchmark's world: the channel, the Shopify merchant and its connection, an operator; and the
files wrk reads (signed webhook deliveries, request paths).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from bench.measuring import WRK_THREADS
from bench.tools import ROOT

SHOPIFY_FIXTURE = ROOT / "tests" / "fixtures" / "shopify" / "refunds_create.json"
SHOP_DOMAIN = "bench-shop.myshopify.com"
BODIES_PER_THREAD = 2000


@dataclass
class World:
    app_id: int
    app_secret: str
    token: str
    merchant_id: int
    webhook_public_id: str
    webhook_secret: str
    operator_id: int


def build_world() -> World:
    """The channel (app, owner, token), the Shopify merchant and its connection, an operator."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from platforms.models import Merchant, Platform, StoreConnection
    from refunds.api.auth import TokenType, token_issue
    from refunds.models import App, AppMembership

    app_secret = secrets.token_urlsafe(24)
    app = App.objects.create(
        name="Bench channel",
        secret_hash=make_password(app_secret),  # the production hasher: the API's per-process cache is measured too
        stripe_account_id="acct_benchchannel001",
        commission_rate=10,
    )
    users = get_user_model()
    owner = users.objects.create_user("bench-owner", "owner@example.com", secrets.token_urlsafe(16))
    AppMembership.objects.create(app=app, user=owner, role=AppMembership.Role.OWNER)
    token = token_issue(user=owner, app=app, token_type=TokenType.ACCESS)
    merchant = Merchant.objects.create(
        name="Bench merchant",
        platform=Platform.SHOPIFY,
        store_url=f"https://{SHOP_DOMAIN}",
        currency="USD",
        stripe_account_id="acct_benchmerchant01",
    )
    webhook_secret = "shpss_" + secrets.token_hex(16)
    connection = StoreConnection.objects.create(
        merchant=merchant,
        webhook_secret=webhook_secret,
        credentials={"shop_domain": SHOP_DOMAIN, "access_token": "shpat_bench"},
        status=StoreConnection.Status.CONNECTED,
    )
    operator = users.objects.create_superuser("bench-operator", "operator@example.com", secrets.token_urlsafe(16))
    return World(
        app_id=app.pk,
        app_secret=app_secret,
        token=token,
        merchant_id=merchant.pk,
        webhook_public_id=str(connection.public_id),
        webhook_secret=webhook_secret,
        operator_id=operator.pk,
    )


def write_deliveries(directory: Path, name: str, *, secret: str, signer) -> str:
    """Signed Shopify refunds/create bodies (~2 KB, the captured fixture with a new refund id each),
    one file per wrk thread; returns the prefix bench/lua/signed_post.lua reads."""
    fixture = json.loads(SHOPIFY_FIXTURE.read_text())
    prefix = directory / name
    refund_id = 930_000_000
    for thread in range(WRK_THREADS):
        lines = []
        for _ in range(BODIES_PER_THREAD):
            refund_id += 1
            payload = {**fixture, "id": refund_id, "admin_graphql_api_id": f"gid://shopify/Refund/{refund_id}"}
            body = json.dumps(payload, separators=(",", ":")).encode()
            lines.append(f"{signer(secret, body)}\t{body.decode()}")
        Path(f"{prefix}.{thread}").write_text("\n".join(lines) + "\n")
    return str(prefix)


def delivery_body_size() -> int:
    fixture = json.loads(SHOPIFY_FIXTURE.read_text())
    return len(json.dumps({**fixture, "id": 930_000_001}, separators=(",", ":")).encode())


def write_paths(path: Path, template: str, ids: list[int]) -> str:
    path.write_text("\n".join(template.format(id=i) for i in ids) + "\n")
    return str(path)
