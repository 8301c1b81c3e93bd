"""The pipeline benchmark's throw-away world: its PostgreSQL database, its Redis queue keys, and the funded
bags it refunds.
"""

from __future__ import annotations


def configure_process_environment(database_url: str, redis_url: str) -> None:
    """This process's environment before django.setup(), in the production shape every bench process
    runs in (this one, the workers, the sandbox server): DEBUG off (no per-query bookkeeping), its own
    keys, the sandbox allowed explicitly, no simulated latency while building the world."""
    import os
    import secrets

    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "violet_refunds.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "STRIPE_SANDBOX_LATENCY_MS": "0",
            "LOG_LEVEL": "WARNING",
            "DEBUG": "false",
            "STRIPE_SANDBOX_ALLOWED": "true",
        }
    )
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    if "FIELD_ENCRYPTION_KEY" not in os.environ:
        from cryptography.fernet import Fernet

        os.environ["FIELD_ENCRYPTION_KEY"] = Fernet.generate_key().decode()


def create_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_queue_keys(redis_url: str, queue: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = [
            key
            for pattern in (f"{queue}*", f"_kombu.binding.{queue}*", f"_kombu.binding_permanent.{queue}*")
            for key in client.scan_iter(match=pattern)
        ]
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def build_bags(count: int) -> list:
    """`count` bags of $113.00 (2 x $50 + $5 shipping + $8 tax, 10% commission), each its own order,
    charged and paid out in the sandbox."""
    from decimal import Decimal

    from django.utils import timezone

    from platforms.models import Merchant, Platform
    from refunds.models import App, Bag, Order, OrderSku
    from refunds.services.checkout import order_charge_and_transfer
    from stripe_sandbox import ledger

    app = App.objects.create(
        name="Bench channel", secret_hash="!", stripe_account_id="acct_benchchannel0001", commission_rate=Decimal(10)
    )
    merchant = Merchant.objects.create(
        name="Bench merchant", platform=Platform.SHOPIFY, currency="USD", stripe_account_id="acct_benchmerchant001"
    )
    for account in (app.stripe_account_id, merchant.stripe_account_id):
        ledger.create_account(account_id=account, balance=0, currency="usd")
    bags = []
    for index in range(count):
        order = Order.objects.create(
            app=app, currency="USD", sub_total=10000, shipping_total=500, tax_total=800, discount_total=0, total=11300
        )
        bag = Bag.objects.create(
            order=order,
            merchant=merchant,
            external_id=f"bench-{index}",
            currency="USD",
            sub_total=10000,
            shipping_total=500,
            tax_total=800,
            discount_total=0,
            total=11300,
            commission_rate=Decimal(10),
            placed_at=timezone.now(),
        )
        OrderSku.objects.create(bag=bag, name="Bench item", quantity=2, price=5000, line_price=10000)
        order_charge_and_transfer(order=order)
        bags.append(bag)
    return bags
