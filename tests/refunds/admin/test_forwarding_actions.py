"""Issue 14: a channel refund whose platform stayed unreachable, as an operator meets it: in triage,
then "move the money without the platform" (note required) or "retry forwarding", each behind the
confirmation page and audited with the operator's name."""

import pytest
from django.test import TestCase
from django.urls import reverse

from refunds.admin.selectors import refunds_needing_attention, triage_counts
from refunds.models import ForwardingState, Refund, RefundEvent, RefundForwarding, RefundSource, RefundStatus
from tests.refunds.admin.helpers import record
from tests.refunds.admin.test_actions import confirm_action, messages_of
from tests.world import funded_bag

pytestmark = pytest.mark.django_db


@pytest.fixture
def stalled_refund(db):
    """A channel refund its platform never took: PROCESSING, forwarding STALLED, nothing moved."""
    refund = record(funded_bag(), source=RefundSource.CHANNEL_API, actor="channel:1", amount=2000)
    RefundForwarding.objects.filter(refund=refund).update(
        state=ForwardingState.STALLED, platform="SHOPIFY", attempts=6, last_error="Shopify answered 503"
    )
    return refund


def test_a_stalled_forwarding_is_in_triage_and_its_page_offers_the_two_answers(operator_client, stalled_refund):
    assert stalled_refund in refunds_needing_attention()
    assert triage_counts().forwarding_stalled == 1
    page = operator_client.get(reverse("admin:refunds_refund_change", args=[stalled_refund.pk])).content.decode()
    assert "Retry forwarding to the platform" in page
    assert "Move the money without the platform" in page


def test_moving_the_money_without_the_platform_needs_a_note(operator_client, stalled_refund):
    response = confirm_action(operator_client, "move_money_without_platform", [stalled_refund], note=" ")
    assert response.status_code == 200
    assert RefundForwarding.objects.get(refund=stalled_refund).state == ForwardingState.STALLED


def test_moving_the_money_without_the_platform_refunds_the_shopper_and_names_the_operator(
    operator_client, operator, stalled_refund
):
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = confirm_action(
            operator_client, "move_money_without_platform", [stalled_refund], note="Shopify down, ticket 77"
        )

    assert response.status_code == 302
    assert any("processed without their platform" in m for m in messages_of(response))
    refund = Refund.objects.get(pk=stalled_refund.pk)
    assert refund.status == RefundStatus.COMPLETED
    assert refund.forwarding.state == ForwardingState.BYPASSED
    event = RefundEvent.objects.filter(refund=refund, kind=RefundEvent.Kind.FORWARDING).last()
    assert event.user == operator and "ticket 77" in event.message
    assert refund not in refunds_needing_attention()


def test_retry_forwarding_sends_it_again(operator_client, operator, stalled_refund):
    # The merchant has no connected store any more: the retry finds it cannot write, tells the
    # merchant and moves the money.
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = confirm_action(operator_client, "retry_forwarding", [stalled_refund], note="Store is back")

    assert response.status_code == 302
    refund = Refund.objects.get(pk=stalled_refund.pk)
    assert refund.forwarding.state == ForwardingState.NOT_FORWARDED
    assert refund.status == RefundStatus.COMPLETED
    retried = RefundEvent.objects.filter(refund=refund, kind=RefundEvent.Kind.FORWARDING, user=operator).get()
    assert retried.data["operation"] == "retry-forwarding"


def test_forwarding_answers_are_refused_for_a_refund_that_does_not_wait(operator_client, completed_refund):
    response = confirm_action(operator_client, "move_money_without_platform", [completed_refund], note="x")
    assert response.status_code == 302
    assert any("not forwarded" in m or "refused" in m.lower() for m in messages_of(response))
    assert Refund.objects.get(pk=completed_refund.pk).status == RefundStatus.COMPLETED
