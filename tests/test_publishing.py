"""violet_refunds.publishing (issue #20 item 2): the message `task_publish` pushes is the one
`apply_async` pushes, field for field, on the queue CELERY_TASK_ROUTES names; what it cannot
reproduce goes through apply_async. A real worker running such a message: tests/reliability/test_ingest_real_worker.py.
"""

import base64
import json
import uuid

import pytest
import redis
from celery import Celery
from django.conf import settings

from platforms import tasks as platform_tasks
from refunds import tasks as refund_tasks
from stripe_events import tasks as stripe_tasks
from tests.reliability.workers import LiveBroker
from violet_refunds import logs, publishing
from violet_refunds.celery import app as celery_app

pytestmark = [pytest.mark.redis]

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@pytest.fixture
def broker(redis_url):
    """This process publishing to the test Redis (not eager); the queues it touches are emptied."""
    client = redis.Redis.from_url(redis_url)
    queues = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    client.delete(*queues)
    publishing.publishing_reset()
    with LiveBroker(redis_url):
        yield client
    publishing.publishing_reset()
    client.delete(*queues)
    client.close()


def _not_the_shortcut(*args, **kwargs):
    raise AssertionError("task_publish fell back to apply_async")


# Sentry's Celery integration (when an earlier test initialised it) adds its trace headers inside
# apply_async itself; task_publish does not carry them (documented in violet_refunds.publishing).
SENTRY_TRACE_HEADERS = ("sentry-trace", "baggage", "sentry-task-enqueued-time", "headers")


def _drop_sentry_trace_headers(headers: dict) -> None:
    for name in SENTRY_TRACE_HEADERS:
        headers.pop(name, None)


def _pushed(client, queue: str) -> list[dict]:
    """The raw messages on a queue's Redis list, oldest first (kombu LPUSHes, workers BRPOP)."""
    return [json.loads(raw) for raw in reversed(client.lrange(queue, 0, -1))]


@pytest.mark.parametrize(
    "task",
    [platform_tasks.process_inbound_event, refund_tasks.process_refund, stripe_tasks.process_stripe_event],
    ids=lambda task: task.name,
)
def test_the_message_is_the_one_apply_async_sends_on_the_routed_queue(broker, task, monkeypatch):
    queue = settings.CELERY_TASK_ROUTES[task.name]["queue"]

    sent_by_celery = task.apply_async((4242,)).id
    monkeypatch.setattr(task._get_current_object(), "apply_async", _not_the_shortcut)
    sent_here = publishing.task_publish(task, 4242)

    celery_message, our_message = _pushed(broker, queue)
    assert celery_message["headers"]["id"] == sent_by_celery and our_message["headers"]["id"] == sent_here
    assert sent_here != sent_by_celery and str(uuid.UUID(sent_here)) == sent_here
    # Headers: the task, its time limits, ignore_result, origin, argsrepr... all as Celery writes them.
    for message, task_id in ((celery_message, sent_by_celery), (our_message, sent_here)):
        _drop_sentry_trace_headers(message["headers"])
        assert message["headers"].pop("id") == message["headers"].pop("root_id") == task_id
        assert message["properties"].pop("correlation_id") == task_id
        assert uuid.UUID(message["properties"].pop("delivery_tag"))
    assert our_message["headers"] == celery_message["headers"]
    assert our_message["headers"]["task"] == task.name
    assert our_message["headers"]["argsrepr"] == "(4242,)"
    # Properties: the routing a retry of the task reuses (anonymous exchange, the queue's name).
    assert our_message["properties"] == celery_message["properties"]
    assert our_message["properties"]["delivery_info"] == {"exchange": "", "routing_key": queue}
    # The body: protocol 2 (args, kwargs, embed), JSON, base64 on Redis.
    assert {key: our_message[key] for key in ("content-type", "content-encoding")} == {
        "content-type": "application/json",
        "content-encoding": "utf-8",
    }
    assert json.loads(base64.b64decode(our_message["body"])) == [[4242], {}, EMBED]
    assert our_message["body"] == celery_message["body"]
    assert set(our_message) == set(celery_message)


def test_the_request_id_travels_in_the_header_the_worker_reads(broker):
    token = logs._replace({"request_id": "req-publish-1"})
    try:
        publishing.task_publish(platform_tasks.process_inbound_event, 7)
    finally:
        logs._context.reset(token)

    (message,) = _pushed(broker, "platforms")
    assert message["headers"][logs.TASK_HEADER] == "req-publish-1"


def test_arguments_are_checked_before_anything_is_sent(broker):
    with pytest.raises(TypeError):
        publishing.task_publish(platform_tasks.process_inbound_event, 1, 2)
    assert broker.llen("platforms") == 0


def test_eager_mode_runs_the_task_through_apply_async(broker):
    celery_app.conf.task_always_eager = True  # LiveBroker restores the previous value
    ran = []
    real = platform_tasks.requeue_received_events._get_current_object()
    original = real.run
    real.run = lambda: ran.append("ran") or 0
    try:
        publishing.task_publish(platform_tasks.requeue_received_events)
    finally:
        real.run = original
    assert ran == ["ran"]
    assert broker.llen("periodic") == 0


def _other_app(**conf) -> Celery:
    app = Celery("publishing-test", set_as_current=False)
    app.conf.update({"broker_url": "redis://127.0.0.1:6379/15", "task_routes": {"t.*": {"queue": "q"}}, **conf})
    return app


def _handle(event_id: int) -> None:
    """The body of the throw-away tasks below (never run)."""


def test_only_a_plain_direct_queue_takes_the_shortcut():
    app = _other_app()
    plain = app.task(name="t.plain")(_handle)
    expiring = app.task(name="t.expiring", expires=60)(_handle)
    compressed = app.task(name="t.compressed", compression="zlib")(_handle)
    route = publishing.task_route(plain)
    assert route is not None and (route.queue, route.headers["task"]) == ("q", "t.plain")
    assert publishing.task_route(expiring) is None
    assert publishing.task_route(compressed) is None

    exchange_app = _other_app(task_routes={"t.*": {"queue": "q", "exchange": "elsewhere", "routing_key": "rk"}})
    assert publishing.task_route(exchange_app.task(name="t.routed")(_handle)) is None
    sent_events_app = _other_app(task_send_sent_event=True)
    assert publishing.task_route(sent_events_app.task(name="t.sent")(_handle)) is None


@pytest.mark.parametrize(
    ("url", "transport_options", "plain"),
    [
        ("redis://127.0.0.1:6379/4", {}, True),
        ("redis://127.0.0.1:6379/4", {"global_keyprefix": "violet:"}, False),
        ("rediss://127.0.0.1:6379/4", {}, False),
        ("redis://a:6379/0;redis://b:6379/0", {}, False),
        ("memory://", {}, False),
        ("amqp://guest@localhost//", {}, False),
    ],
)
def test_the_broker_must_be_one_plain_redis(url, transport_options, plain):
    app = _other_app(broker_transport_options=transport_options)
    assert publishing._plain_redis_url(app, url) is plain
