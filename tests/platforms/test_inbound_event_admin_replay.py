"""An inbound event's page: the cause in words (amounts formatted), the traceback tucked away, and a
Replay behind a confirmation that says what a replay can and cannot fix; the result names why."""

import pytest
from django.urls import reverse

from platforms.models import InboundEvent
from platforms.services import _permanent_failure_outcome
from tests.factories import InboundEventFactory
from violet_refunds.exceptions import ValidationFailed

pytestmark = pytest.mark.django_db


def test_a_refused_refund_says_replay_cannot_fix_it_with_formatted_amounts():
    exc = ValidationFailed(
        "The refund is invalid.",
        field_errors={"amount": ["amount 99999.00 USD exceeds the 146.00 USD still refundable on this bag."]},
    )
    outcome = _permanent_failure_outcome(exc)
    assert "99999.00 USD exceeds the 146.00 USD" in outcome
    assert "Replaying gives the same answer" in outcome
    assert "once the cause is fixed" in _permanent_failure_outcome(RuntimeError("boom"))


def test_replay_from_the_event_page_is_confirmed_first_and_reports_the_new_status(admin_client):
    event = InboundEventFactory(
        status=InboundEvent.Status.FAILED, outcome="Something stopped it.", error="X", traceback="Traceback ..."
    )
    page = admin_client.get(reverse("admin:platforms_inboundevent_change", args=[event.pk])).content.decode()
    url = reverse("admin:platforms_inboundevent_replay", args=[event.pk])
    assert url in page
    assert "<details" in page and "Technical details" in page  # the traceback is folded away
    confirm = admin_client.get(url)
    body = confirm.content.decode()
    assert "It can fix" in body and "It cannot fix" in body and "Something stopped it." in body
    event.refresh_from_db()
    assert event.attempts == 0  # nothing replayed by looking
    response = admin_client.post(url, follow=True)
    event.refresh_from_db()
    assert event.attempts == 1
    messages = [str(m) for m in response.context["messages"]]
    assert messages[0].startswith(f"Event {event.pk} replayed: now {event.get_status_display()}.")
    assert event.outcome in messages[0]
