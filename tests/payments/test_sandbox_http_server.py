"""The Stripe sandbox served over HTTP (stripe_sandbox.http_server), the product's SDK pointed at it with
STRIPE_SANDBOX_URL: the same ledger, the same answers, a lost response lost on the wire."""

import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from payments import gateway as gateway_module
from payments.gateway import TransientGatewayError, get_gateway
from stripe_sandbox import ledger
from stripe_sandbox.http_server import make_server
from stripe_sandbox.models import FaultKind, SandboxRequest
from stripe_sandbox.transport import SandboxHTTPClient
from violet_refunds.deployment import sandbox_url_problem

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox_url():
    """The server on a free port, in a thread of this process (its own database connections)."""
    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    gateway_module._gateways.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        gateway_module._gateways.clear()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_sdk_calls_over_http_charge_transfer_reverse_and_refund_in_the_sandbox_ledger(sandbox_url):
    merchant = ledger.create_account(balance=0, currency="usd")
    with override_settings(STRIPE_API_KEY="", STRIPE_SANDBOX_URL=sandbox_url):
        gateway = get_gateway()
        intent = gateway.create_payment_intent(amount=10_000, currency="USD", idempotency_key="http-charge")
        transfer = gateway.create_transfer(
            amount=6_000,
            currency="USD",
            destination=merchant,
            idempotency_key="http-transfer",
            source_transaction=intent.charge_id,
        )
        reversal = gateway.reverse_transfer(transfer_id=transfer.id, amount=2_500, idempotency_key="http-reversal")
        refund = gateway.refund_payment(payment_intent_id=intent.id, amount=4_000, idempotency_key="http-refund")
        replayed = gateway.refund_payment(payment_intent_id=intent.id, amount=4_000, idempotency_key="http-refund")

    assert not isinstance(gateway._client._requestor._client, SandboxHTTPClient)  # real HTTP, not in-process
    assert (refund.status, refund.amount, refund.currency) == ("succeeded", 4_000, "USD")
    assert replayed.id == refund.id
    assert [(r.stripe_id, r.amount) for r in ledger.refunds_for(intent.id)] == [(refund.id, 4_000)]
    assert [(r.stripe_id, r.amount) for r in ledger.reversals_for(transfer.id)] == [(reversal.id, 2_500)]
    assert ledger.balance(merchant) == 6_000 - 2_500
    assert list(
        SandboxRequest.objects.filter(path="/v1/refunds").order_by("pk").values_list("status_code", "replayed")
    ) == [(200, False), (200, True)]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_response_the_sandbox_loses_is_a_transient_error_and_the_same_key_refunds_once(sandbox_url):
    with override_settings(STRIPE_API_KEY="", STRIPE_SANDBOX_URL=sandbox_url):
        gateway = get_gateway()
        intent = gateway.create_payment_intent(amount=10_000, currency="USD", idempotency_key="http-charge-2")
        ledger.inject_fault(FaultKind.RESPONSE_LOST, path="/v1/refunds")
        with pytest.raises(TransientGatewayError) as lost:
            gateway.refund_payment(payment_intent_id=intent.id, amount=3_000, idempotency_key="http-refund-2")
        retried = gateway.refund_payment(payment_intent_id=intent.id, amount=3_000, idempotency_key="http-refund-2")

    assert lost.value.error_type == "api_connection_error"
    assert [(r.stripe_id, r.amount) for r in ledger.refunds_for(intent.id)] == [(retried.id, 3_000)]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_entry_point_serves_the_sandbox_from_its_own_process_with_its_own_database_sessions():
    """`python -m stripe_sandbox.http_server`: another process, the same tables (this test's database)."""
    port_probe = make_server("127.0.0.1", 0)
    port = port_probe.server_address[1]
    port_probe.server_close()
    database = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "DJANGO_SETTINGS_MODULE": "violet_refunds.settings",
        "STRIPE_API_KEY": "",
        "STRIPE_SANDBOX_URL": "",
    }
    if database.get("PASSWORD"):
        env["PGPASSWORD"] = database["PASSWORD"]
    server = subprocess.Popen(
        [sys.executable, "-m", "stripe_sandbox.http_server", "--port", str(port), "--latency-ms", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_listening(server, url)
        gateway_module._gateways.clear()
        with override_settings(STRIPE_API_KEY="", STRIPE_SANDBOX_URL=url):
            gateway = get_gateway()
            intent = gateway.create_payment_intent(amount=2_000, currency="USD", idempotency_key="process-charge")
            refund = gateway.refund_payment(payment_intent_id=intent.id, amount=2_000, idempotency_key="process-refund")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                [database["NAME"], "violet-stripe-sandbox"],
            )
            sandbox_sessions = cursor.fetchone()[0]
    finally:
        server.terminate()
        server.wait(timeout=10)
        gateway_module._gateways.clear()

    assert refund.status == "succeeded"
    assert [(r.stripe_id, r.amount) for r in ledger.refunds_for(intent.id)] == [(refund.id, 2_000)]
    assert sandbox_sessions >= 1  # pooled, named: a benchmark counts its PostgreSQL CPU apart


def _wait_until_listening(server: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the sandbox server exited: {server.stdout.read().decode(errors='replace')}")
        try:
            # Unauthenticated: Stripe's 401, which says the server answers.
            urllib.request.urlopen(f"{url}/v1/balance", timeout=2)  # noqa: S310 - our own 127.0.0.1 URL
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the sandbox server did not listen within 30 s")


@pytest.mark.parametrize(
    ("api_key", "url", "problem"),
    [
        ("", "", None),
        ("", "http://127.0.0.1:12111", None),
        ("sk_live_x", "", None),
        ("sk_live_x", "http://127.0.0.1:12111", "STRIPE_SANDBOX_URL is set together with STRIPE_API_KEY"),
        ("sk_test_x", "http://127.0.0.1:12111", "STRIPE_SANDBOX_URL is set together with STRIPE_API_KEY"),
        ("", "127.0.0.1:12111", "is not an http(s):// URL"),
    ],
)
def test_the_sandbox_url_is_refused_with_a_real_stripe_key(api_key, url, problem):
    found = sandbox_url_problem(api_key, url)

    assert (found is None) if problem is None else (problem in found)
