"""A poison inbound event (its processing kills the worker every time) is not retried without limit:
each processing run is counted before it starts and the recorded outcome clears the count; after
INBOUND_EVENT_MAX_CLAIMS_WITHOUT_OUTCOME runs that never recorded one, the event is FAILED with a
reason, without running again."""

import pytest

from platforms import services
from platforms.models import InboundEvent
from refunds.admin.selectors import triage_counts
from refunds.models import Refund
from tests.platforms.delivery import post_webhook
from tests.poison import Poison, WorkerKilled, assert_failed_as_poison, poison_processing


@pytest.fixture
def poison(monkeypatch) -> Poison:
    return poison_processing(monkeypatch, services, "_reconcile_event")


def stored_refund_event(store) -> InboundEvent:
    """Shopify's refunds/create stored by the receiver, its processing message not run yet."""
    response = post_webhook(store, "refunds_create")
    assert response.status_code == 200
    return InboundEvent.objects.get()


def test_after_the_limit_of_runs_without_an_outcome_the_event_is_failed_and_not_run(shopify_store, settings, poison):
    settings.INBOUND_EVENT_MAX_CLAIMS_WITHOUT_OUTCOME = 3
    event = stored_refund_event(shopify_store)

    for run in range(1, 4):  # each delivery of the message (a redelivery, beat's requeue) dies
        with pytest.raises(WorkerKilled):
            services.event_process(event.pk, only_if_due=True)
        event.refresh_from_db()
        assert (event.status, event.claims_without_outcome, event.attempts) == (
            InboundEvent.Status.RECEIVED,
            run,
            run,
        )

    result = services.event_process(event.pk, only_if_due=True)

    assert poison.runs == 3  # the fourth claim did not run it
    event.refresh_from_db()
    assert result.event.status == event.status == InboundEvent.Status.FAILED
    assert_failed_as_poison(event, died=3, limit=3)
    assert triage_counts().inbound_failed_last_24h == 1
    # A stale copy of the message does nothing now (FAILED waits for an operator).
    assert services.event_process(event.pk, only_if_due=True).skipped
    assert poison.runs == 3

    # Fixed: the operator's replay runs it again, from a clean count, and it is processed.
    poison.active = False
    replayed = services.events_replay([event])
    event.refresh_from_db()
    assert replayed["PROCESSED"] == 1 and event.status == InboundEvent.Status.PROCESSED
    assert event.claims_without_outcome == 0 and Refund.objects.filter(inbound_event=event).count() == 1


def test_an_outcome_clears_the_count_so_only_deaths_in_a_row_count(shopify_store, settings, poison):
    settings.INBOUND_EVENT_MAX_CLAIMS_WITHOUT_OUTCOME = 2
    event = stored_refund_event(shopify_store)
    with pytest.raises(WorkerKilled):
        services.event_process(event.pk, only_if_due=True)

    # The next run records its outcome: the count starts again from nothing.
    poison.active = False
    services.event_process(event.pk, only_if_due=True)
    event.refresh_from_db()
    assert (event.status, event.claims_without_outcome, event.attempts) == (InboundEvent.Status.PROCESSED, 0, 2)

    # Replayed later into a poisoned worker: two deaths in a row are within the limit, the third
    # claim fails it without running.
    poison.active = True
    for run in (1, 2):
        with pytest.raises(WorkerKilled):
            services.event_process(event.pk)
        event.refresh_from_db()
        assert (event.status, event.claims_without_outcome) == (InboundEvent.Status.PROCESSED, run)
    services.event_process(event.pk)

    event.refresh_from_db()
    assert event.status == InboundEvent.Status.FAILED and "Processing started 2 times" in event.outcome
    assert poison.runs == 3


def test_the_default_limit(settings):
    assert settings.INBOUND_EVENT_MAX_CLAIMS_WITHOUT_OUTCOME == 5
