"""Shared pieces of the fault & bad-input matrix of docs/reliability.md, the test matrix, rows 1-28, run in-process.

Tasks run eagerly (or the engine is called step by step where a test must look between attempts).
Every test ends with the Stripe sandbox as the oracle: how many refunds and reversals exist, their
sums, the connected balances, and whether our rows (Refund, ShopperRefund, TransferReversal,
RefundError, RefundEvent) say the same. Rows 29-40 (platform webhooks, portal, API input) belong to
other suites. Row 23 (warm shutdown) needs a real worker: see test_real_worker.py, which also runs
rows 3-4, 10, 15, 16, 18-21 against real prefork workers on Redis and PostgreSQL.

The matrix, by group of rows:
- test_fault_matrix_stripe_transport.py: rows 1-7, Stripe transport and idempotency;
- test_fault_matrix_stripe_refusals.py: rows 8-15, Stripe business refusals;
- test_fault_matrix_worker_and_queue.py: rows 16-24, crashes, redelivery, broker and sweeper;
- test_fault_matrix_concurrency.py: rows 19b, 25-28, duplicates, locks and concurrent sessions;
- test_fault_matrix_sequences.py: sequences and operator repairs.
"""

from payments.models import PaymentTransaction
from refunds.services import refund_process
from stripe_sandbox import ledger

REFUNDS = "/v1/refunds"
REVERSALS = "/v1/transfers/*/reversals"
FULL = 11300  # the `bag` fixture's total
MERCHANT_SHARE = 10300
CHANNEL_SHARE = 1000


def process(refund):
    """One delivery of the refund's task, run inline: the engine's claim, steps and outcome."""
    outcome = refund_process(refund_id=refund.pk)
    refund.refresh_from_db()
    return outcome


def refund_posts():
    return ledger.calls(REFUNDS, method="POST")


def payment_intent_of(bag) -> str:
    return PaymentTransaction.objects.get(order_id=bag.order_id).gateway_transaction_id
