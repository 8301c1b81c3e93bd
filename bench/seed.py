"""Benchmark data, built fast: set-based SQL (`INSERT ... SELECT generate_series`) in PostgreSQL.

A million refunds cannot be built through the ORM inside the time budget, so each table is filled
by one statement over a temporary table of refund numbers. Every row satisfies the product's
constraints (amount = parts, reversals within transfers, one shopper refund per refund...), so the
admin and the API read exactly what the engine would have written.

Refund number i owns order i, payment i, bag i and refund i (the same id in each table), `skus`
order lines, two transfers (merchant, channel), a reversal per transfer, a shopper refund and, when
it failed, a refund error. Statuses by number: every 100th refund needs an operator (even hundreds
FAILED, odd ones PARTIALLY_COMPLETED: 1% in all), every 10,000th (offset 5) is stuck in PROCESSING,
the rest COMPLETED. Refunds are spread two seconds apart, the newest now.
"""

from __future__ import annotations

import datetime as dt

from django.db import connection, transaction

SECONDS_BETWEEN_REFUNDS = 2
UNIT_PRICE = 5000  # minor units; each order line is one unit
SHIPPING = 500
TAX = 800
COMMISSION_PERCENT = 10

_SEED_NUMBERS = """
CREATE TEMP TABLE bench_seed AS
SELECT
    i,
    %(origin)s::timestamptz + i * %(spacing)s * interval '1 second' AS ts,
    CASE
        WHEN i %% 10000 = 5 THEN 'PROCESSING'
        WHEN i %% 100 = 0 AND (i / 100) %% 2 = 0 THEN 'FAILED'
        WHEN i %% 100 = 0 THEN 'PARTIALLY_COMPLETED'
        ELSE 'COMPLETED'
    END AS status,
    %(price)s::bigint * %(skus)s AS sub_total,
    %(price)s::bigint * %(skus)s + %(shipping)s + %(tax)s AS total,
    %(price)s::bigint * %(skus)s * %(commission)s / 100 AS commission
FROM generate_series(%(first)s, %(last)s) AS i
"""

_TABLES = [
    # orders
    """
    INSERT INTO refunds_order (id, date_created, date_last_modified, app_order_id, status, customer_email,
        currency, sub_total, shipping_total, tax_total, discount_total, total, app_id, status_before_refund)
    SELECT i, ts - interval '1 day', ts, 'app-order-' || i, 'COMPLETED', 'shopper' || i || '@example.com',
        'USD', sub_total, %(shipping)s, %(tax)s, 0, total, %(app_id)s, ''
    FROM bench_seed
    """,
    # the shopper's payment
    """
    INSERT INTO payments_paymenttransaction (id, date_created, date_last_modified, gateway_transaction_id,
        gateway_charge_id, amount, amount_refunded, currency, capture_status, order_id,
        dispute_id, dispute_status, dispute_reason, dispute_amount)
    SELECT i, ts - interval '1 day', ts, 'pi_bench_' || i, 'ch_bench_' || i, total,
        CASE WHEN status IN ('COMPLETED', 'PARTIALLY_COMPLETED') THEN total ELSE 0 END, 'USD', 'CAPTURED', i,
        '', '', '', 0
    FROM bench_seed
    """,
    # bags
    """
    INSERT INTO refunds_bag (id, date_created, date_last_modified, external_id, status, fulfillment_status,
        financial_status, currency, sub_total, shipping_total, tax_total, discount_total, total, commission_rate,
        placed_at, merchant_id, order_id, status_before_refund, financial_status_before_refund)
    SELECT i, ts - interval '1 day', ts, 'bench-order-' || i, 'COMPLETED', 'DELIVERED',
        CASE WHEN status IN ('COMPLETED', 'PARTIALLY_COMPLETED') THEN 'REFUNDED' ELSE 'PAID' END,
        'USD', sub_total, %(shipping)s, %(tax)s, 0, total, %(commission)s, ts - interval '1 day', %(merchant_id)s, i,
        '', ''
    FROM bench_seed
    """,
    # order lines
    """
    INSERT INTO refunds_ordersku (date_created, date_last_modified, external_id, sku_id, name, quantity, price,
        line_price, quantity_refunded, bag_id)
    SELECT ts - interval '1 day', ts, 'line-' || i || '-' || j, 'SKU-' || j, 'Bench item ' || j, 1, %(price)s,
        %(price)s, 1, i
    FROM bench_seed CROSS JOIN generate_series(1, %(skus)s) AS j
    """,
    # payouts: the merchant's share and the channel's commission
    """
    INSERT INTO payments_transfer (date_created, date_last_modified, recipient, destination_account_id,
        gateway_transfer_id, bag_amount, bag_currency, amount, currency, reversed_amount, status, bag_id,
        payment_transaction_id)
    SELECT ts - interval '1 day', ts, recipient,
        CASE recipient WHEN 'MERCHANT' THEN 'acct_benchmerchant01' ELSE 'acct_benchchannel001' END,
        'tr_bench_' || lower(recipient) || '_' || i, share, 'USD', share, 'USD',
        CASE WHEN status IN ('COMPLETED', 'FAILED') THEN share
             WHEN status = 'PARTIALLY_COMPLETED' AND recipient = 'MERCHANT' THEN share ELSE 0 END,
        CASE WHEN status IN ('COMPLETED', 'FAILED') THEN 'REVERSED'
             WHEN status = 'PARTIALLY_COMPLETED' AND recipient = 'MERCHANT' THEN 'REVERSED' ELSE 'SENT' END,
        i, i
    FROM bench_seed
    CROSS JOIN LATERAL (VALUES ('MERCHANT', total - commission), ('DEVELOPER', commission)) AS v(recipient, share)
    """,
    # refunds
    """
    INSERT INTO refunds_refund (id, date_created, date_last_modified, external_id, status, amount, sub_total_amount,
        shipping_amount, shipping_tax_amount, tax_amount, shipping_full_refund, shipping_discrepancy_reason,
        refund_currency, platform_currency, merchant_transfer_reversal_amount_usd,
        developer_transfer_reversal_amount_usd, merchant_transfer_reversal_amount_platform_currency,
        developer_transfer_reversal_amount_platform_currency, reason, reason_code, restock_items, notify_customer,
        source, request_key, attempts, processing_started_at, next_attempt_at, date_completed, bag_id,
        created_by_id, inbound_event_id)
    SELECT i, ts, ts, 'bench-refund-' || i, status, total, sub_total, %(shipping)s, 0, %(tax)s, true, '', 'USD', 'USD',
        total - commission, commission, total - commission, commission, 'Customer returned the items', 'CUSTOMER',
        false, false, 'PLATFORM_WEBHOOK', NULL, 1, CASE WHEN status = 'PROCESSING' THEN ts END, NULL,
        CASE WHEN status = 'COMPLETED' THEN ts + interval '5 seconds' END, i, NULL, NULL
    FROM bench_seed
    """,
    # refunded lines
    """
    INSERT INTO refunds_refundsku (date_created, date_last_modified, quantity_refunded, amount_refunded,
        external_id, order_sku_id, refund_id)
    SELECT s.ts, s.ts, 1, %(price)s, line.external_id, line.id, s.i
    FROM bench_seed AS s JOIN refunds_ordersku AS line ON line.bag_id = s.i
    """,
    # reversals (PARTIALLY_COMPLETED: the channel's failed for good; PROCESSING: none answered yet)
    """
    INSERT INTO payments_transferreversal (date_created, date_last_modified, amount, currency, bag_amount,
        gateway_reversal_id, idempotency_key, status, attempts, error_code, error_message, refund_id, transfer_id)
    SELECT s.ts, s.ts, t.amount, 'USD', t.bag_amount,
        CASE WHEN r.state = 'COMPLETE' THEN 'trr_bench_' || t.id END,
        'refund-' || s.i || '-'
            || CASE t.recipient WHEN 'MERCHANT' THEN 'MERCHANT_REVERSAL' ELSE 'CHANNEL_REVERSAL' END,
        r.state, 1,
        CASE WHEN r.state = 'FAILED' THEN 'balance_insufficient' ELSE '' END,
        CASE WHEN r.state = 'FAILED' THEN 'The connected account has insufficient funds.' ELSE '' END,
        s.i, t.id
    FROM bench_seed AS s
    JOIN payments_transfer AS t ON t.bag_id = s.i
    CROSS JOIN LATERAL (
        SELECT CASE WHEN s.status = 'PROCESSING' THEN 'PENDING'
                    WHEN s.status = 'PARTIALLY_COMPLETED' AND t.recipient = 'DEVELOPER' THEN 'FAILED'
                    ELSE 'COMPLETE' END AS state
    ) AS r
    """,
    # the shopper's refund (FAILED: the card refund failed for good)
    """
    INSERT INTO payments_shopperrefund (date_created, date_last_modified, amount, currency, gateway_refund_id,
        idempotency_key, status, failure_reason, attempts, error_code, error_message, payment_transaction_id,
        refund_id)
    SELECT ts, ts, total, 'USD',
        CASE WHEN status IN ('COMPLETED', 'PARTIALLY_COMPLETED', 'FAILED') THEN 're_bench_' || i END,
        'refund-' || i || '-SHOPPER_REFUND',
        CASE status WHEN 'FAILED' THEN 'FAILED' WHEN 'PROCESSING' THEN 'PENDING' ELSE 'SUCCEEDED' END,
        CASE WHEN status = 'FAILED' THEN 'expired_or_canceled_card' ELSE '' END, 1, '', '', i, i
    FROM bench_seed
    """,
    # what an operator must look at
    """
    INSERT INTO refunds_refunderror (error_code, error_message, step, gateway_code, resolved, date_resolved,
        date_created, refund_id, resolved_by_id)
    SELECT CASE status WHEN 'FAILED' THEN 3006 ELSE 3002 END,
        CASE status WHEN 'FAILED' THEN 'The shopper''s card refund failed: expired_or_canceled_card.'
            ELSE 'Channel transfer reversal failed: the connected account has insufficient funds.' END,
        CASE status WHEN 'FAILED' THEN 'SHOPPER_REFUND' ELSE 'CHANNEL_REVERSAL' END,
        CASE status WHEN 'FAILED' THEN 'expired_or_canceled_card' ELSE 'balance_insufficient' END,
        false, NULL, ts, i, NULL
    FROM bench_seed WHERE status IN ('FAILED', 'PARTIALLY_COMPLETED')
    """,
]

# Tables given explicit ids above: their identity sequences must continue after the largest.
_EXPLICIT_ID_TABLES = ("refunds_order", "payments_paymenttransaction", "refunds_bag", "refunds_refund")


def origin_for(newest_number: int, *, now: dt.datetime) -> dt.datetime:
    """The timestamp of refund number 0, so that refund `newest_number` is created `now`."""
    return now - dt.timedelta(seconds=SECONDS_BETWEEN_REFUNDS * newest_number)


def seed_refunds(*, first: int, last: int, app_id: int, merchant_id: int, origin: dt.datetime, skus: int = 2) -> None:
    """Refund numbers first..last (inclusive), each with its order, bag, lines, transfers and money moves."""
    params = {
        "first": first,
        "last": last,
        "skus": skus,
        "app_id": app_id,
        "merchant_id": merchant_id,
        "origin": origin,
        "spacing": SECONDS_BETWEEN_REFUNDS,
        "price": UNIT_PRICE,
        "shipping": SHIPPING,
        "tax": TAX,
        "commission": COMMISSION_PERCENT,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        # A lost seed costs a rerun, never data: no need to wait for the WAL flush.
        cursor.execute("SET LOCAL synchronous_commit TO OFF")
        skip_triggers = _is_superuser(cursor)
        if skip_triggers:
            # The rows are consistent by construction; skipping the per-row foreign-key triggers
            # makes the build several times faster (only a superuser may).
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("DROP TABLE IF EXISTS bench_seed")
        cursor.execute(_SEED_NUMBERS, params)
        for statement in _TABLES:
            cursor.execute(statement, params)
        # Inside an outer transaction (tests) SET LOCAL would outlive this block: undo it here.
        cursor.execute("DROP TABLE bench_seed")
        if skip_triggers:
            cursor.execute("SET LOCAL session_replication_role = DEFAULT")
        cursor.execute("SET LOCAL synchronous_commit TO DEFAULT")
    reset_sequences()


def _is_superuser(cursor) -> bool:
    cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    row = cursor.fetchone()
    return bool(row and row[0])


def reset_sequences() -> None:
    with connection.cursor() as cursor:
        for table in _EXPLICIT_ID_TABLES:
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT max(id) FROM {table}), 1))"  # noqa: S608 - constant table names
            )


def seed_baseline_parents(*, count: int, children_per_parent: int = 3) -> None:
    """The one-row-plus-children baseline's rows: `count` parents with their children."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO bench_parent (id, name, amount, currency, date_created) "
            "SELECT i, 'Parent ' || i, 11300, 'USD', now() FROM generate_series(1, %s) AS i",
            [count],
        )
        cursor.execute(
            "INSERT INTO bench_child (parent_id, name, quantity, amount) "
            "SELECT i, 'Child ' || j, 1, 5000 FROM generate_series(1, %s) AS i CROSS JOIN generate_series(1, %s) AS j",
            [count, children_per_parent],
        )


def analyze() -> None:
    """Fresh statistics and visibility maps, as a database that has been running a while has."""
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
