"""V3 of issue 13 on a real PostgreSQL: the worker's database backend is terminated mid-processing
("terminating connection due to administrator command", as after a database restart). The event must
end RETRYING on a fresh connection, then PROCESSED, with no operator action; without the connection
reset the outcome could not even be written."""

import pytest
from django.db import InterfaceError, OperationalError, connection

from platforms import selectors, services
from platforms.models import InboundEvent
from refunds.models import Refund
from tests.platforms.delivery import deliver, post_webhook

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def backend_terminated_once(monkeypatch):
    """The first look-up of the event's bag finds its database backend terminated."""
    real = selectors.bag_for_platform_order
    calls = []

    def terminate_then_look_up(merchant, order_ids):
        calls.append(1)
        if len(calls) == 1:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return real(merchant, order_ids)

    monkeypatch.setattr(selectors, "bag_for_platform_order", terminate_then_look_up)
    yield calls
    connection.close()  # whatever a test left behind, the teardown starts on a fresh connection


@pytest.fixture
def no_broker(monkeypatch):
    """The processing message is not sent at commit: the test runs the task's service by hand."""
    monkeypatch.setattr(services, "_enqueue_processing", lambda event_id: None)


def test_a_terminated_connection_is_reset_and_the_event_processed_without_an_operator(
    shopify_store, backend_terminated_once
):
    delivery = deliver(shopify_store, "refunds_create")  # commit -> task (eager) -> fails -> retry

    assert delivery.response.status_code == 200
    event = delivery.event
    assert len(backend_terminated_once) == 2
    assert (event.status, event.attempts, event.error) == (InboundEvent.Status.PROCESSED, 2, "")
    assert Refund.objects.get().inbound_event == event


def test_the_first_failure_is_recorded_as_retrying_on_a_fresh_connection(
    shopify_store, backend_terminated_once, no_broker
):
    post_webhook(shopify_store, "refunds_create")  # stored and acknowledged
    event = InboundEvent.objects.get()
    old_backend = connection.connection

    services.event_process(event.pk, only_if_due=True)

    event.refresh_from_db()
    assert event.status == InboundEvent.Status.RETRYING
    assert "terminating connection due to administrator command" in event.error
    assert connection.connection is not old_backend  # reconnected


def test_without_the_reset_the_outcome_could_not_be_written(
    shopify_store, backend_terminated_once, no_broker, monkeypatch
):
    monkeypatch.setattr(services, "database_connections_reset", lambda: None)
    post_webhook(shopify_store, "refunds_create")
    event = InboundEvent.objects.get()

    with pytest.raises((OperationalError, InterfaceError)):
        services.event_process(event.pk, only_if_due=True)
    connection.close()
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.RECEIVED  # (the requeue job would still find it)
