"""Acknowledged means processed (issue 13, V3): an inbound event that fails on a transient error
(database, broker, platform timeout/5xx/429) is RETRYING, retried automatically with backoff by the
task and, if that retry message is lost, by beat's requeue job; a permanent error is FAILED at once;
past the retry horizon a RETRYING event becomes FAILED for an operator."""

import datetime as dt
import io

import kombu.exceptions
import pytest
import requests
from celery.exceptions import Retry
from django.core.management import call_command
from django.db import IntegrityError, InterfaceError, OperationalError
from django.urls import reverse
from django.utils import timezone

from payments.gateway import PermanentGatewayError, TransientGatewayError
from platforms import services, tasks
from platforms.adapters.base import PayloadMalformed
from platforms.clients.base import PlatformNotFound, PlatformRequestRejected, PlatformUnavailable
from platforms.models import InboundEvent
from refunds.models import Refund
from tests.factories import OperatorFactory
from tests.platforms.delivery import deliver, post_webhook
from violet_refunds import retrying

pytestmark = pytest.mark.django_db

TERMINATED = "terminating connection due to administrator command"


class FailingFirst:
    """Wraps platforms.services.refund_record_platform: the first `times` calls raise `error`, later
    ones record the refund for real."""

    def __init__(self, error: Exception, times: int = 1):
        self.error = error
        self.times = times
        self.calls = 0
        self.real = services.refund_record_platform

    def __call__(self, **kwargs):
        self.calls += 1
        if self.calls <= self.times:
            raise self.error
        return self.real(**kwargs)


@pytest.fixture
def fail_recording(monkeypatch):
    def install(error: Exception, times: int = 1) -> FailingFirst:
        wrapper = FailingFirst(error, times)
        monkeypatch.setattr(services, "refund_record_platform", wrapper)
        return wrapper

    return install


def stored_event(store, event_id="wh-1") -> InboundEvent:
    """A delivery acknowledged (2xx) and stored, its processing message not run yet."""
    assert post_webhook(store, "refunds_create", event_id=event_id).status_code == 200
    return InboundEvent.objects.get(event_id=event_id)


def overdue(event: InboundEvent) -> None:
    """Time travel: the event's next attempt was due longer ago than the requeue age."""
    InboundEvent.objects.filter(pk=event.pk).update(
        next_attempt_at=timezone.now() - services.event_requeue_after() - dt.timedelta(seconds=1)
    )


# --- retried automatically, no operator action --------------------------------------------------


def test_database_error_during_processing_is_retried_by_the_task_and_ends_processed(shopify_store, fail_recording):
    recording = fail_recording(OperationalError(TERMINATED))

    delivery = deliver(shopify_store, "refunds_create")  # the task runs (eagerly), retries, succeeds

    assert delivery.response.status_code == 200
    event = delivery.event
    assert recording.calls == 2
    assert (event.status, event.attempts, event.error, event.traceback) == (InboundEvent.Status.PROCESSED, 2, "", "")
    assert (event.next_attempt_at, event.retrying_since, event.retries) == (None, None, 0)
    assert Refund.objects.get().inbound_event == event


def test_transient_error_leaves_the_event_retrying_and_the_task_schedules_itself(
    shopify_store, fail_recording, monkeypatch, settings
):
    settings.CELERY_VISIBILITY_TIMEOUT = 300
    fail_recording(OperationalError(TERMINATED))
    event = stored_event(shopify_store)
    countdowns = []

    def retry(**kwargs):  # what a worker's self.retry would publish
        countdowns.append(kwargs["countdown"])
        raise Retry()

    monkeypatch.setattr(tasks.process_inbound_event, "retry", retry)
    with pytest.raises(Retry):
        tasks.process_inbound_event.run(event.pk)

    event.refresh_from_db()
    assert event.status == InboundEvent.Status.RETRYING
    assert event.error == f"OperationalError: {TERMINATED}"
    assert "OperationalError" in event.traceback and "retrying automatically" in event.outcome
    assert (event.retries, event.attempts) == (1, 1)
    assert event.retrying_since is not None and event.next_attempt_at > timezone.now()
    (countdown,) = countdowns
    assert 0 < countdown <= settings.INBOUND_EVENT_RETRY_BACKOFF_BASE_SECONDS
    assert abs((event.next_attempt_at - timezone.now()).total_seconds() - countdown) < 2
    assert not Refund.objects.exists()


def test_a_copy_arriving_before_the_next_attempt_does_nothing(shopify_store, fail_recording):
    recording = fail_recording(OperationalError(TERMINATED))
    event = stored_event(shopify_store)
    services.event_process(event.pk)  # the first run fails transiently
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.RETRYING

    result = services.event_process(event.pk, only_if_due=True)  # e.g. a redelivered message

    assert result.skipped.startswith("not due before")
    event.refresh_from_db()
    assert (event.status, event.attempts, recording.calls) == (InboundEvent.Status.RETRYING, 1, 1)


def test_a_lost_retry_message_is_picked_up_by_the_requeue_job(shopify_store, fail_recording):
    fail_recording(OperationalError(TERMINATED))
    event = stored_event(shopify_store)
    services.event_process(event.pk)  # failed transiently; its retry message died with the worker
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.RETRYING

    assert tasks.requeue_received_events.delay().get() == 0  # not overdue yet: the task's own retry has time

    overdue(event)
    assert tasks.requeue_received_events.delay().get() == 1  # beat: enqueued (and run, eagerly)

    event.refresh_from_db()
    assert (event.status, event.attempts, event.error) == (InboundEvent.Status.PROCESSED, 2, "")
    assert event.requeued_at is not None
    assert Refund.objects.get().inbound_event == event


def test_a_received_event_whose_message_was_lost_is_requeued_once_per_requeue_age(shopify_store, monkeypatch):
    event = stored_event(shopify_store)  # the processing message never ran (broker down at commit)
    enqueued = []
    monkeypatch.setattr(services, "_enqueue_processing", enqueued.append)
    now = timezone.now()

    assert services.events_requeue(now=now) == []  # younger than the requeue age
    later = event.date_created + services.event_requeue_after() + dt.timedelta(seconds=1)
    assert services.events_requeue(now=later) == [event.pk]
    # The copy sits behind a backlog: the next beat runs do not stack more copies...
    assert services.events_requeue(now=later + dt.timedelta(seconds=30)) == []
    # ...until another requeue age has passed without the event being processed.
    assert services.events_requeue(now=later + services.event_requeue_after() + dt.timedelta(seconds=1)) == [event.pk]
    assert enqueued == [event.pk, event.pk]


def test_requeue_age_is_a_setting(shopify_store, settings, monkeypatch):
    settings.INBOUND_EVENT_REQUEUE_AFTER_SECONDS = 5
    event = stored_event(shopify_store)
    monkeypatch.setattr(services, "_enqueue_processing", lambda event_id: None)

    assert services.events_requeue(now=event.date_created + dt.timedelta(seconds=4)) == []
    assert services.events_requeue(now=event.date_created + dt.timedelta(seconds=6)) == [event.pk]


def test_platform_5xx_is_transient_like_a_database_error(shopify_store, fail_recording):
    fail_recording(PlatformUnavailable("Shopify answered 503", platform="SHOPIFY", http_status=503))
    event = stored_event(shopify_store)

    services.event_process(event.pk)

    event.refresh_from_db()
    assert event.status == InboundEvent.Status.RETRYING
    assert "PlatformUnavailable" in event.error


# --- permanent errors ----------------------------------------------------------------------------


def test_a_permanent_error_is_failed_at_once_and_never_retried(shopify_store, fail_recording, monkeypatch):
    recording = fail_recording(ValueError("a bug"), times=99)

    delivery = deliver(shopify_store, "refunds_create")

    event = delivery.event
    assert (event.status, event.attempts, event.next_attempt_at) == (InboundEvent.Status.FAILED, 1, None)
    assert event.error == "ValueError: a bug" and "permanent error" in event.outcome
    # Neither a stale task copy nor beat touches it: it waits for an operator.
    assert services.event_process(event.pk, only_if_due=True).skipped == "FAILED: waits for an operator's replay"
    enqueued = []
    monkeypatch.setattr(services, "_enqueue_processing", enqueued.append)
    assert services.events_requeue(now=timezone.now() + dt.timedelta(days=1)) == []
    assert recording.calls == 1 and not enqueued


@pytest.mark.parametrize(
    "error",
    [
        OperationalError(TERMINATED),
        InterfaceError("connection already closed"),
        kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
        PlatformUnavailable("timeout", platform="ECWID"),
        TransientGatewayError("Stripe 503", http_status=503),
        requests.Timeout("read timed out"),
        ConnectionResetError("reset by peer"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_transient_errors(error):
    assert services.processing_error_is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad data"),
        KeyError("refunds"),
        IntegrityError("duplicate key"),
        PlatformRequestRejected("400", platform="SHOPIFY"),
        PlatformNotFound("404", platform="ECWID"),
        PermanentGatewayError("charge_already_refunded"),
        PayloadMalformed("not JSON"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_permanent_errors(error):
    assert not services.processing_error_is_transient(error)


def test_an_error_raised_from_a_transient_one_is_transient():
    try:
        try:
            raise OperationalError(TERMINATED)
        except OperationalError as cause:
            raise RuntimeError("wrapped") from cause
    except RuntimeError as error:
        assert services.processing_error_is_transient(error)


def test_backoff_doubles_with_jitter_and_stays_below_the_visibility_timeout(settings):
    settings.INBOUND_EVENT_RETRY_BACKOFF_BASE_SECONDS = 10
    settings.INBOUND_EVENT_RETRY_BACKOFF_MAX_SECONDS = 900
    settings.CELERY_VISIBILITY_TIMEOUT = 300
    for retries, full in [(1, 10), (2, 20), (3, 40), (5, 160), (6, 240), (30, 240)]:  # capped at 300 - 60
        delays = {retrying.event_retry_delay(retries).total_seconds() for _ in range(50)}
        assert all(full * 0.5 <= delay <= full for delay in delays), (retries, delays)
        assert len(delays) > 1  # jittered


# --- the horizon ---------------------------------------------------------------------------------


def test_past_the_horizon_a_retrying_event_becomes_failed_for_an_operator(shopify_store, fail_recording, settings):
    settings.INBOUND_EVENT_RETRY_HORIZON_SECONDS = 3600
    recording = fail_recording(OperationalError(TERMINATED), times=99)
    event = stored_event(shopify_store)
    services.event_process(event.pk)
    event.refresh_from_db()
    first_failure = event.retrying_since

    # Still failing 30 min later: another retry, same streak.
    InboundEvent.objects.filter(pk=event.pk).update(retrying_since=first_failure - dt.timedelta(minutes=30))
    services.event_process(event.pk, only_if_due=False)
    event.refresh_from_db()
    assert (event.status, event.retries) == (InboundEvent.Status.RETRYING, 2)

    # Still failing past the horizon: FAILED, visible, and no automatic retry any more.
    InboundEvent.objects.filter(pk=event.pk).update(retrying_since=first_failure - dt.timedelta(hours=1, seconds=1))
    overdue(event)
    assert tasks.requeue_received_events.delay().get() == 1

    event.refresh_from_db()
    assert event.status == InboundEvent.Status.FAILED
    assert "automatic retries stopped at the retry horizon" in event.outcome
    assert event.error == f"OperationalError: {TERMINATED}"
    assert (event.next_attempt_at, event.retries, recording.calls) == (None, 0, 3)
    assert services.events_requeue(now=timezone.now() + dt.timedelta(days=1)) == []


# --- replay and the admin ------------------------------------------------------------------------


@pytest.fixture
def failed_and_retrying(shopify_store, fail_recording):
    """One FAILED event (a bug, since fixed) and one RETRYING event (a database error)."""
    recording = fail_recording(ValueError("a bug"))
    failed = stored_event(shopify_store, "wh-failed")
    services.event_process(failed.pk)
    recording.error = OperationalError(TERMINATED)
    recording.calls = 0
    retrying = stored_event(shopify_store, "wh-retrying")
    services.event_process(retrying.pk)
    failed.refresh_from_db()
    retrying.refresh_from_db()
    assert (failed.status, retrying.status) == (InboundEvent.Status.FAILED, InboundEvent.Status.RETRYING)
    recording.times = 0  # both causes are gone now
    return failed, retrying


def test_replay_failed_replays_failed_events_only(failed_and_retrying):
    failed, retrying = failed_and_retrying
    out = io.StringIO()

    call_command("replay_events", "--failed", stdout=out)

    failed.refresh_from_db()
    retrying.refresh_from_db()
    assert failed.status == InboundEvent.Status.PROCESSED
    assert (retrying.status, retrying.attempts) == (InboundEvent.Status.RETRYING, 1)  # left to its retries
    assert "Replayed 1 event(s): 1 PROCESSED." in out.getvalue()
    assert "1 event(s) are RETRYING after transient errors and were left alone" in out.getvalue()


def test_replay_by_id_processes_a_retrying_event_now(failed_and_retrying):
    _, retrying = failed_and_retrying

    call_command("replay_events", "--ids", str(retrying.pk), stdout=io.StringIO())

    retrying.refresh_from_db()
    assert (retrying.status, retrying.next_attempt_at, retrying.retries) == (InboundEvent.Status.PROCESSED, None, 0)


def test_replaying_a_failed_event_that_meets_a_transient_error_hands_it_back_to_automatic_retries(
    shopify_store, fail_recording
):
    recording = fail_recording(ValueError("a bug"))
    event = stored_event(shopify_store)
    services.event_process(event.pk)
    recording.error, recording.calls = OperationalError(TERMINATED), 0

    call_command("replay_events", "--failed", stdout=io.StringIO())

    event.refresh_from_db()
    assert (event.status, event.retries) == (InboundEvent.Status.RETRYING, 1)
    assert event.retrying_since > timezone.now() - dt.timedelta(minutes=1)  # a new streak, a new horizon


def test_admin_triage_separates_events_for_an_operator_from_events_retrying(client, failed_and_retrying):
    failed, retrying = failed_and_retrying
    client.force_login(OperatorFactory())
    url = reverse("admin:platforms_inboundevent_changelist")

    def listed(**query) -> set[int]:
        response = client.get(url, query)
        assert response.status_code == 200
        return {event.pk for event in response.context["cl"].result_list}

    assert listed(triage="operator") == {failed.pk}
    assert listed(triage="retrying") == {retrying.pk}
    assert listed(triage="overdue") == set()
    overdue(retrying)
    assert listed(triage="overdue") == {retrying.pk}

    page = client.get(url, {"triage": "retrying"}).content.decode()
    assert "Next retry" in page and "(after 1 failure(s))" in page
    assert "Retrying (transient error)" in page
