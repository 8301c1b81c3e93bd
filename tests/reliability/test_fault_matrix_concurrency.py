"""Fault matrix rows 19b and 25-28 (docs/reliability.md, the test matrix): a second task copy blocked by the claim,
double submits, a killed database session, a refund locked elsewhere, concurrent writers on one bag.

Most need PostgreSQL (advisory locks, separate sessions); see matrix.py for the whole map.
"""

import functools
import threading

import pytest
from django.db import connection, transaction

from payments.models import Recipient, ShopperRefund, TransferReversal
from refunds.models import Bag, OrderSku, Refund, RefundStatus
from refunds.services import RefundSkuLine, engine, refund_cancel, refund_mark_external, refund_retry
from refunds.tasks import process_refund
from stripe_sandbox import ledger
from tests.parallel import run_in_parallel
from tests.reliability.conftest import record
from tests.reliability.matrix import process, refund_posts
from tests.reliability.oracle import assert_completed_once, money_at_stripe, step_rows, transfer_of
from tests.world import funded_bag
from violet_refunds.exceptions import InvalidTransition
from violet_refunds.locks import try_exclusive

pytestmark = pytest.mark.django_db


def _hold_refund_lock(refund_id: int):
    """Hold the refund's advisory lock from another database session (another worker)."""
    taken, release = threading.Event(), threading.Event()

    def holder():
        try:
            with try_exclusive("refund", refund_id) as acquired:
                assert acquired
                taken.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    assert taken.wait(timeout=10)
    return release, thread


@pytest.mark.postgres
def test_fault_19b_second_copy_blocked_by_claim(bag):
    """Row 19: 'Second copy blocked by DB claim (CAS/skip_locked); 1 refund'. While one worker holds
    the refund (its advisory lock), a second copy of the message makes no Stripe call and changes
    nothing; once the first is done, processing moves the money once."""
    refund = record(bag, enqueue=False, external_id="r19").refund
    release, thread = _hold_refund_lock(refund.pk)
    try:
        calls = ledger.call_count()
        assert process(refund).status == "LOCKED"
        assert ledger.call_count() == calls and refund.attempts == 0
    finally:
        release.set()
        thread.join(timeout=10)
    assert process(refund).status == RefundStatus.COMPLETED
    assert_completed_once(refund)


def test_fault_25_double_submit(bag, record_and_run):
    """Row 25: 'Unique refund-intent constraint => 1 intent; 2nd response returns the existing one'.
    The same external id, and the same client request key, submitted twice: one refund each, the
    second call returns the first, and Stripe refunds once per refund."""
    first = record_and_run(bag, amount=3000, external_id="shopify-77")
    again = record(bag, amount=3000, external_id="shopify-77")
    assert not again.created and again.refund.pk == first.pk

    by_key = record_and_run(bag, amount=2000, request_key="click-1")
    repeat = record(bag, amount=2000, request_key="click-1")
    assert not repeat.created and repeat.refund.pk == by_key.pk

    assert Refund.objects.filter(bag=bag).count() == 2
    assert_completed_once(first)
    assert_completed_once(by_key)
    stripe = money_at_stripe(bag)
    assert sorted(r.amount for r in stripe.refunds) == [2000, 3000]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fault_25b_concurrent_double_submit(eager_propagates):
    """Row 25 (concurrent): two requests with the same request key at the same moment, each in its
    own database session: one refund is recorded, both callers get it, Stripe refunds once."""
    bag = funded_bag()

    def submit():
        return record(Bag.objects.get(pk=bag.pk), amount=4000, request_key="double-click")

    results = run_in_parallel(submit, submit)  # fails the test if either raised

    assert sorted(r.created for r in results) == [False, True]
    assert results[0].refund.pk == results[1].refund.pk
    refund = Refund.objects.get(bag=bag)
    assert_completed_once(refund)
    assert [r.amount for r in money_at_stripe(bag).refunds] == [4000]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fault_26_db_connection_killed_after_stripe_ok(monkeypatch, settings, eager_propagates):
    """Row 26: 'Retry replays same key => same refund id recorded; no 2nd refund'. Right after Stripe
    refunded the shopper, the worker's own PostgreSQL session is terminated (pg_terminate_backend):
    the pass dies with a database error and its advisory lock goes with the session. The task retries
    it itself on a fresh connection (issue #20: not left to the 15-minute sweep); the look-up finds the
    refund Stripe made and records that id: one refund."""
    settings.STRIPE_SANDBOX_WEBHOOK_RECEIVER = ""  # only the task's passes (no in-process Stripe event)
    bag = funded_bag()
    refund = record(bag, enqueue=False, external_id="r26").refund
    killed = []
    recorded_before_retry = []

    def kill_own_session(point: str) -> None:
        if point == "after_stripe:SHOPPER_REFUND" and not killed:
            killed.append(point)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    real_plan = engine.database_retry_plan

    def plan(refund_id, exc, **kwargs):
        result = real_plan(refund_id, exc, **kwargs)
        recorded_before_retry.append(ShopperRefund.objects.get(refund_id=refund_id).gateway_refund_id)
        return result

    monkeypatch.setattr("refunds.services.steps.crash_point", kill_own_session)
    monkeypatch.setattr(engine, "database_retry_plan", plan)
    stripe_refunds_before = len(money_at_stripe(bag).refunds)

    assert process_refund.delay(refund.pk).result == "DATABASE_RETRY"  # its retry ran (eagerly) inside

    assert killed
    assert recorded_before_retry == [None]  # the answer was lost with the session
    stripe_refund = money_at_stripe(bag).refunds[stripe_refunds_before]
    assert_completed_once(refund)
    shopper, _ = step_rows(refund)
    assert shopper.gateway_refund_id == stripe_refund.stripe_id
    assert len(money_at_stripe(bag).refunds) == 1 and len(refund_posts()) == 1


@pytest.mark.postgres
def test_fault_27_refund_locked_elsewhere(bag):
    """Row 27: '`nowait` => task retries later; portal gets 409 text, not 500'. While a worker holds
    the refund, an operator's retry / cancel / mark-external is refused with InvalidTransition (an
    HTTP 409 with a message), and a second task copy does nothing; afterwards processing completes."""
    refund = record(bag, enqueue=False, external_id="r27").refund
    release, thread = _hold_refund_lock(refund.pk)
    try:
        for action in (
            lambda: refund_retry(refund=refund),
            lambda: refund_cancel(refund=refund),
            lambda: refund_mark_external(refund=refund, note="paid by cheque"),
        ):
            with pytest.raises(InvalidTransition) as refused:
                action()
            assert refused.value.status_code == 409 and "being processed" in refused.value.message
        assert process(refund).status == "LOCKED"
    finally:
        release.set()
        thread.join(timeout=10)
    assert process(refund).status == RefundStatus.COMPLETED
    assert_completed_once(refund)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fault_28_concurrent_writers_on_one_bag(eager_propagates):
    """Row 28: 'Fixed lock order or tx retry; final state correct'. Three sessions at once each record
    and process partial refunds of the same bag (bag row, refund rows, transfers and the sandbox's
    charge and balances all locked along the way): no deadlock or error, every refund completes,
    and the sums at Stripe are exact."""
    bag = funded_bag()
    amounts = [[1000, 1500], [2000, 700], [1200, 300]]

    def writer(index):
        for n, amount in enumerate(amounts[index]):
            record(Bag.objects.get(pk=bag.pk), amount=amount, external_id=f"w{index}-{n}")

    # No error in any writer (run_in_parallel fails the test with their tracebacks otherwise).
    run_in_parallel(*(functools.partial(writer, i) for i in range(len(amounts))), join_timeout=90)
    refunds = list(Refund.objects.filter(bag=bag))
    assert len(refunds) == 6
    for refund in refunds:
        assert_completed_once(refund)
    stripe = money_at_stripe(bag)
    total = sum(sum(a) for a in amounts)
    assert stripe.refunded_sum == total == stripe.charge_refunded
    merchant, channel = transfer_of(bag, Recipient.MERCHANT), transfer_of(bag, Recipient.DEVELOPER)
    assert stripe.merchant_reversed == merchant.reversed_amount and stripe.channel_reversed == channel.reversed_amount
    assert stripe.merchant_reversed + stripe.channel_reversed == total


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_plan_that_waited_for_the_bag_lock_sees_the_plan_committed_meanwhile():
    """Row 28, the plan's reads (issue #20): two partial refunds of one bag planned at the same time.
    The second waits for the bag lock the first holds; once it has the lock it must read the first
    one's plan (in READ COMMITTED a statement that waited for a row lock reads other tables as of its
    start, so the sums must not be read in the locking statement). Each refund reverses its own
    commission share: 10% of its 5000 sub_total from the channel, the rest from the merchant."""
    bag = funded_bag(skus=((5000, 2),))  # channel transfer 1000 (10% of 10000), merchant 10300
    sku = OrderSku.objects.get(bag=bag)

    def half(external_id):
        line = [RefundSkuLine(order_sku_id=sku.pk, quantity=1)]
        return record(bag, enqueue=False, external_id=external_id, skus=line, shipping_amount=0, tax_amount=0).refund

    first, second = half("p1"), half("p2")
    holding, release, planned = threading.Event(), threading.Event(), []

    def plan_first_and_hold_the_bag():
        try:
            with transaction.atomic():
                Bag.objects.select_for_update().get(pk=bag.pk)
                engine._ensure_plan(Refund.objects.select_related("bag").get(pk=first.pk), claim={}, note="")
                holding.set()
                release.wait(30)
        finally:
            connection.close()

    def plan_second():
        try:
            planned.append(
                engine._ensure_plan(Refund.objects.select_related("bag").get(pk=second.pk), claim={}, note="")
            )
        finally:
            connection.close()

    holder = threading.Thread(target=plan_first_and_hold_the_bag)
    holder.start()
    assert holding.wait(30)
    waiter = threading.Thread(target=plan_second)
    waiter.start()
    with connection.cursor() as cursor:  # until the second plan waits for the bag lock
        for _ in range(3000):
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            if cursor.fetchone()[0]:
                break
            threading.Event().wait(0.01)
        else:
            pytest.fail("the second plan never waited for the bag lock")
    release.set()
    holder.join(30)
    waiter.join(30)

    assert len(planned) == 1
    for refund in (first, second):
        reversals = {r.transfer.recipient: r.amount for r in TransferReversal.objects.filter(refund=refund)}
        assert reversals == {Recipient.DEVELOPER: 500, Recipient.MERCHANT: 4500}, (refund.external_id, reversals)
