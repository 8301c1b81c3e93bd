"""Keys and versions (issue #16, item 3): every idempotency key reaches Stripe in this deployment's
namespace ("<STRIPE_IDEMPOTENCY_PREFIX>:<our key>") and every call carries the pinned Stripe-Version,
while the keys we store stay our own and the look-ups by metadata do not depend on the prefix."""

import pytest
import stripe

from payments.gateway import get_gateway, sent_idempotency_key
from payments.models import ShopperRefund, TransferReversal
from refunds.models import RefundSource, RefundStatus
from refunds.services import refund_record
from refunds.services.engine import refund_process
from refunds.services.steps import step_key
from stripe_sandbox import ledger
from stripe_sandbox.models import SandboxRequest
from tests.world import funded_bag
from violet_refunds.deployment import default_idempotency_prefix, idempotency_prefix_problem

pytestmark = pytest.mark.django_db

REFUNDS = "/v1/refunds"


def _refund_through_the_engine(external_id="prefix-1"):
    bag = funded_bag()
    refund = refund_record(
        bag=bag, enqueue=False, source=RefundSource.CHANNEL_API, actor="test", external_id=external_id
    ).refund
    outcome = refund_process(refund_id=refund.pk)
    return bag, refund, outcome


def test_the_default_version_is_the_one_the_sdk_pins(settings):
    assert settings.STRIPE_API_VERSION == stripe.api_version == "2026-10-28.endive"


def test_every_request_of_a_refund_carries_the_version_and_the_prefixed_key(settings):
    settings.STRIPE_IDEMPOTENCY_PREFIX = "staging-eu"

    _bag, refund, outcome = _refund_through_the_engine()  # the charge and transfers included

    assert outcome.status == RefundStatus.COMPLETED
    requests = list(SandboxRequest.objects.order_by("pk"))
    assert requests, "the engine called Stripe"
    assert {r.stripe_version for r in requests} == {settings.STRIPE_API_VERSION}
    posts = [r for r in requests if r.method == "POST"]
    assert {r.status_code for r in posts} == {200}
    assert all(r.idempotency_key.startswith("staging-eu:") for r in posts)
    expected = {
        f"staging-eu:refund-{refund.pk}-merchant-reversal",
        f"staging-eu:refund-{refund.pk}-channel-reversal",
        f"staging-eu:refund-{refund.pk}-shopper-refund",
    }
    assert {r.idempotency_key for r in posts if ":refund-" in r.idempotency_key} == expected
    # What we store stays ours: no prefix, the same derivation as before.
    stored = {r.idempotency_key for r in TransferReversal.objects.filter(refund=refund)}
    stored |= {ShopperRefund.objects.get(refund=refund).idempotency_key}
    assert stored == {step_key(refund, s) for s in ("MERCHANT_REVERSAL", "CHANNEL_REVERSAL", "SHOPPER_REFUND")}


def test_a_pinned_version_other_than_the_sdks_is_what_goes_on_the_wire(settings):
    settings.STRIPE_API_VERSION = "2025-09-30.clover"
    SandboxRequest.objects.all().delete()

    get_gateway().create_payment_intent(amount=1_000, currency="USD", idempotency_key="order-x-charge")

    (request,) = SandboxRequest.objects.all()
    assert request.stripe_version == "2025-09-30.clover"
    assert request.idempotency_key == f"{settings.STRIPE_IDEMPOTENCY_PREFIX}:order-x-charge"


def test_two_deployments_on_one_stripe_account_do_not_collide(settings):
    """Staging and CI both number refunds from 1: without the prefix, the second deployment's
    'refund-1-...' would replay (or conflict with) the first one's answer."""
    intent = get_gateway().create_payment_intent(amount=5_000, currency="USD", idempotency_key="order-1-charge")

    settings.STRIPE_IDEMPOTENCY_PREFIX = "staging"
    first = get_gateway().refund_payment(
        payment_intent_id=intent.id, amount=1_000, idempotency_key="refund-1-shopper-refund"
    )
    settings.STRIPE_IDEMPOTENCY_PREFIX = "ci"
    second = get_gateway().refund_payment(
        payment_intent_id=intent.id, amount=2_000, idempotency_key="refund-1-shopper-refund"
    )

    assert first.id != second.id and (first.amount, second.amount) == (1_000, 2_000)
    assert len(ledger.refunds_for(intent.id)) == 2


def test_a_changed_prefix_does_not_hide_a_step_from_its_look_up(settings):
    """The look-up before a re-send matches by metadata, never by key: a step sent under one prefix
    and answered with a lost response is found after the prefix changed, and not sent again."""
    from stripe_sandbox.models import FaultKind

    settings.STRIPE_IDEMPOTENCY_PREFIX = "before"
    ledger.inject_fault(FaultKind.RESPONSE_LOST, path=REFUNDS, method="POST")
    _bag, refund, outcome = _refund_through_the_engine("prefix-2")
    assert outcome.status == RefundStatus.PROCESSING  # the shopper refund's answer was lost

    settings.STRIPE_IDEMPOTENCY_PREFIX = "after"
    assert refund_process(refund_id=refund.pk).status == RefundStatus.COMPLETED

    posts = ledger.calls(REFUNDS, method="POST")
    assert [p.idempotency_key for p in posts] == [f"before:refund-{refund.pk}-shopper-refund"]  # not re-sent


def test_prefix_and_key_must_fit_stripes_255_characters(settings):
    settings.STRIPE_IDEMPOTENCY_PREFIX = "p" * 64
    assert sent_idempotency_key("k" * 190) == "p" * 64 + ":" + "k" * 190
    with pytest.raises(ValueError, match="255"):
        sent_idempotency_key("k" * 191)
    with pytest.raises(ValueError, match="non-empty"):
        sent_idempotency_key(" ")


@pytest.mark.parametrize(
    ("database", "deployment_id", "expected"),
    [
        ({"ENGINE": "django.db.backends.postgresql", "NAME": "refunds_staging"}, "", "refunds_staging"),
        ({"ENGINE": "django.db.backends.postgresql", "NAME": "refunds"}, "eu-prod 2", "eu-prod-2"),
        ({"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}, "", "sqlite-memory"),
    ],
)
def test_the_default_prefix_comes_from_the_deployment_id_or_the_database_name(database, deployment_id, expected):
    assert default_idempotency_prefix(database, deployment_id) == expected
    assert idempotency_prefix_problem(expected) is None


def test_a_sqlite_file_adds_a_hash_of_its_path():
    alice = default_idempotency_prefix({"ENGINE": "django.db.backends.sqlite3", "NAME": "/home/alice/v/db.sqlite3"})
    bob = default_idempotency_prefix({"ENGINE": "django.db.backends.sqlite3", "NAME": "/home/bob/v/db.sqlite3"})
    assert alice.startswith("db-") and bob.startswith("db-") and alice != bob


@pytest.mark.parametrize("prefix", ["", "has space", "x" * 65, "a:b"])
def test_an_unusable_prefix_is_refused(prefix):
    assert "STRIPE_IDEMPOTENCY_PREFIX" in idempotency_prefix_problem(prefix)
