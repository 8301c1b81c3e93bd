"""A poison Stripe event (its processing kills the worker every time) is not retried without limit,
as platform events are not (tests/platforms/test_poison_events.py, the same code in
violet_refunds.retrying): each run is counted before it starts, a recorded outcome clears the count,
and after INBOUND_EVENT_MAX_CLAIMS_WITHOUT_OUTCOME runs that never recorded one the event is FAILED
with a reason, without running again; the admin shows the count."""

import re

import pytest
from django.urls import reverse

from stripe_events import services
from stripe_events.models import StripeEvent
from tests.factories import OperatorFactory, StripeEventFactory
from tests.poison import Poison, WorkerKilled, assert_failed_as_poison, poison_processing

pytestmark = pytest.mark.django_db


@pytest.fixture
def poison(monkeypatch) -> Poison:
    return poison_processing(monkeypatch, services, "_dispatch")


def received_event() -> StripeEvent:
    """A stored event whose processing message has not run yet (a type we store and acknowledge)."""
    return StripeEventFactory(
        type="customer.created", object_id="cus_1", status=StripeEvent.Status.RECEIVED, outcome=""
    )


def test_after_the_limit_of_runs_without_an_outcome_the_event_is_failed_and_not_run(settings, poison):
    settings.INBOUND_EVENT_MAX_CLAIMS_WITHOUT_OUTCOME = 3
    event = received_event()

    for run in range(1, 4):  # each delivery of the message (a redelivery, beat's requeue) dies
        with pytest.raises(WorkerKilled):
            services.stripe_event_process(event.pk, only_if_due=True)
        event.refresh_from_db()
        assert (event.status, event.claims_without_outcome, event.attempts) == (StripeEvent.Status.RECEIVED, run, run)

    result = services.stripe_event_process(event.pk, only_if_due=True)

    assert poison.runs == 3  # the fourth claim did not run it
    event.refresh_from_db()
    assert result.event.status == event.status == StripeEvent.Status.FAILED
    assert_failed_as_poison(event, died=3, limit=3)
    assert event.attempts == 4
    # A stale copy of the message does nothing now (FAILED waits for an operator), nor does beat.
    assert services.stripe_event_process(event.pk, only_if_due=True).skipped == "FAILED: waits for an operator's replay"
    assert poison.runs == 3

    # Fixed: the operator's replay runs it again, from a clean count, and it settles.
    poison.active = False
    assert services.stripe_events_replay([event]) == {"IGNORED": 1}
    event.refresh_from_db()
    assert (event.status, event.claims_without_outcome, event.attempts) == (StripeEvent.Status.IGNORED, 0, 5)


def test_the_admin_shows_the_runs_without_an_outcome(client, poison):
    event = received_event()
    for _ in range(2):
        with pytest.raises(WorkerKilled):
            services.stripe_event_process(event.pk, only_if_due=True)
    client.force_login(OperatorFactory())

    page = client.get(reverse("admin:stripe_events_stripeevent_change", args=[event.pk]))

    assert page.status_code == 200
    html = page.content.decode()
    assert "Claims without outcome" in html
    assert "Processing runs started since the last recorded outcome" in html
    shown = re.search(r'field-claims_without_outcome.*?<div class="readonly">([^<]*)</div>', html, re.S)
    assert shown is not None and shown.group(1).strip() == "2"
