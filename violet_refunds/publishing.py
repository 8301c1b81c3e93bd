"""Publishing a Celery task from a web request at the cost of one Redis LPUSH (issue #20 item 2).

`Task.apply_async` costs ~0.9 ms of CPU per message on the Redis broker: routing, option merging and
building the message per call, kombu's producer pool, a new redis-py client object per publish, a
queue declaration check, then the LPUSH. Webhook receivers publish one message per delivery, so this
was a quarter of a webhook's cost. `task_publish` sends the same message with the work done once:

- everything that does not change between calls (the queue of CELERY_TASK_ROUTES as Celery's own
  router resolves it, the task's time limits and ignore_result, the delivery mode, the origin) is
  resolved once per task, process and broker URL into a `TaskRoute`;
- per call: a task id, the body, `argsrepr`, a delivery tag, the publish signals, and one LPUSH on a
  redis-py client kept per process (its connection pool is thread- and fork-safe).

The message is Celery's protocol 2 in kombu's Redis envelope, field for field what `apply_async`
would have pushed (tests/violet_refunds/test_publishing.py compares the two and has a real worker
run one), so any Celery worker consumes it; a retry of the task goes back to the same queue.

Anything this shortcut does not reproduce falls back to `apply_async`: eager mode (development and
tests), a broker other than a single plain Redis URL, a Redis key prefix or TLS options, a route that
is not a plain direct queue (expiring queues, priorities, exchanges), task options that change the
message (expires, compression, another serializer, a custom shadow name), sent events, and a publish
from inside a running task (Celery then records the parent and root ids). Sentry's Celery
integration adds its trace headers in `apply_async` only: a message published here starts a new
trace in the worker.

A publish that fails (broker down) raises like `apply_async` does; the caller decides (the webhook
receivers log it and leave the stored event to the requeue job).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from celery import Task, signals
from celery.app.task import Task as BaseTask
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from kombu import Queue

# Seconds before a publish gives up on an unreachable or stuck broker (unless the broker's transport
# options set their own): a web worker must not hang on Redis; the caller logs the failure and the
# stored row is requeued by beat.
DEFAULT_SOCKET_TIMEOUT_SECONDS = 1.0
# Celery's protocol 2 body ends with the workflow fields; none are used by these tasks.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
# kombu's Redis channel encodes bodies in base64 and says so in the properties.
_BODY_ENCODING = "base64"
# Queue options that make kombu write more than one LPUSH to the queue's name (expiry, priorities).
_QUEUE_OPTIONS_CHANGING_THE_KEYS = ("expires", "message_ttl", "max_priority", "queue_arguments", "no_declare")
# Task options that would change the message if set: such a task is published by apply_async.
_OPTIONS_CHANGING_THE_MESSAGE = ("expires", "compression", "priority", "exchange", "routing_key", "delivery_mode")


@dataclass(frozen=True)
class TaskRoute:
    """What a task's message has in common across calls, resolved once (see the module docstring)."""

    task_name: str
    queue: str  # the Redis list: the queue's name (anonymous direct exchange, priority 0)
    headers: dict[str, Any]  # protocol 2 headers less the per-call ones
    delivery_mode: int
    argsrepr_maxsize: int
    repr_maxlevels: int


_lock = threading.Lock()
# (pid, broker URL) -> redis client; (pid, broker URL, task name) -> TaskRoute or None (not eligible).
_clients: dict[tuple[int, str], Any] = {}
_routes: dict[tuple[int, str, str], TaskRoute | None] = {}


def task_publish(task: Task, *args: Any) -> str:
    """Send `task(*args)` to its queue; returns the task id. Same message, same queue, same
    consumers as `task.apply_async(args)`, which it falls back to when the shortcut does not apply."""
    task = _real(task)
    app = task.app
    conf = app.conf
    if conf.task_always_eager or app.current_worker_task is not None:
        return task.apply_async(args).id
    broker_url = conf.broker_url or ""
    route = _route_for(task, broker_url)
    if route is None:
        return task.apply_async(args).id
    check_arguments = getattr(task, "__header__", None) if task.typing else None
    if check_arguments is not None:
        # apply_async's argument check: a wrong call fails here, not in the worker.
        check_arguments(*args)
    client = _client_for(app, broker_url)
    task_id = str(uuid.uuid4())
    message, headers, properties, body = task_message(route, task_id=task_id, args=args, reply_to=app.thread_oid)
    if signals.before_task_publish.receivers:
        # The receivers may add headers (the log context's request id: violet_refunds.logs).
        signals.before_task_publish.send(
            sender=route.task_name,
            body=body,
            exchange="",
            routing_key=route.queue,
            declare=[],
            headers=headers,
            properties=properties,
            retry_policy=None,
        )
    client.lpush(route.queue, json.dumps(message))
    if signals.after_task_publish.receivers:
        signals.after_task_publish.send(
            sender=route.task_name, body=body, headers=headers, exchange="", routing_key=route.queue
        )
    return task_id


def task_message(
    route: TaskRoute, *, task_id: str, args: tuple, reply_to: str, delivery_tag: str | None = None
) -> tuple[dict, dict, dict, tuple]:
    """The Redis envelope of one message, with its headers and properties (mutable until it is
    serialized: the publish signals may add headers) and the protocol 2 body before encoding."""
    body: tuple[list, dict, dict] = (list(args), {}, _EMBED)
    headers = {
        **route.headers,
        "id": task_id,
        "root_id": task_id,
        "argsrepr": saferepr(args, route.argsrepr_maxsize, maxlevels=route.repr_maxlevels),
    }
    properties = {
        "correlation_id": task_id,
        "reply_to": reply_to,
        "delivery_mode": route.delivery_mode,
        "delivery_info": {"exchange": "", "routing_key": route.queue},
        "priority": 0,
        "body_encoding": _BODY_ENCODING,
        "delivery_tag": delivery_tag or str(uuid.uuid4()),
    }
    encoded = base64.b64encode(json.dumps(body).encode("utf-8")).decode("ascii")
    message = {
        "body": encoded,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": properties,
    }
    return message, headers, properties, body


def task_route(task: Task) -> TaskRoute | None:
    """The task's route for the shortcut, or None when only apply_async can publish it."""
    task = _real(task)
    app = task.app
    conf = app.conf
    if conf.task_protocol != 2 or conf.task_send_sent_event or conf.task_compression:
        return None
    if type(task).shadow_name is not BaseTask.shadow_name:
        return None
    options = {key: value for key, value in task._get_exec_options().items() if value is not None}
    if any(options.get(key) for key in _OPTIONS_CHANGING_THE_MESSAGE):
        return None
    if (options.get("serializer") or conf.task_serializer) != "json":
        return None
    routed = app.amqp.router.route(dict(options), task.name, (), {}, task)
    queue = routed.get("queue")
    if not isinstance(queue, Queue) or any(routed.get(key) for key in _OPTIONS_CHANGING_THE_MESSAGE):
        return None
    exchange = queue.exchange
    if exchange is None or exchange.type != "direct" or queue.routing_key != queue.name:
        return None
    if any(getattr(queue, name, None) for name in _QUEUE_OPTIONS_CHANGING_THE_KEYS):
        return None
    delivery_mode = getattr(exchange, "delivery_mode", None) or conf.task_default_delivery_mode
    delivery_mode = {"persistent": 2, "transient": 1}.get(delivery_mode, delivery_mode)
    headers = {
        "lang": "py",
        "task": task.name,
        "id": None,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [options.get("time_limit"), options.get("soft_time_limit")],
        "root_id": None,
        "parent_id": None,
        "argsrepr": None,
        "kwargsrepr": saferepr({}, app.amqp.kwargsrepr_maxsize, maxlevels=conf.task_repr_maxlevels),
        "origin": anon_nodename(),
        "ignore_result": bool(task.ignore_result),
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    return TaskRoute(
        task_name=task.name,
        queue=queue.name,
        headers=headers,
        delivery_mode=int(delivery_mode),
        argsrepr_maxsize=app.amqp.argsrepr_maxsize,
        repr_maxlevels=conf.task_repr_maxlevels,
    )


def _real(task: Task) -> Task:
    """The task behind `shared_task`'s proxy."""
    current = getattr(task, "_get_current_object", None)
    return current() if current is not None else task


def _plain_redis_url(app, broker_url: str) -> bool:
    """One Redis server, no key prefix, no TLS options: the list key is the queue's name."""
    if not broker_url.startswith("redis://") or ";" in broker_url:
        return False
    options = app.conf.broker_transport_options or {}
    return not options.get("global_keyprefix") and not app.conf.broker_use_ssl


def _route_for(task: Task, broker_url: str) -> TaskRoute | None:
    key = (os.getpid(), broker_url, task.name)
    try:
        return _routes[key]
    except KeyError:
        pass
    route = task_route(task) if _plain_redis_url(task.app, broker_url) else None
    with _lock:
        _routes[key] = route
    return route


def _client_for(app, broker_url: str):
    key = (os.getpid(), broker_url)
    client = _clients.get(key)
    if client is not None:
        return client
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options = app.conf.broker_transport_options or {}
    timeout = options.get("socket_timeout") or DEFAULT_SOCKET_TIMEOUT_SECONDS
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = redis.Redis.from_url(
                broker_url,
                socket_timeout=timeout,
                socket_connect_timeout=options.get("socket_connect_timeout") or timeout,
                # One immediate retry: a pooled connection the server closed (Redis restarted, idle
                # timeout) is replaced at once; a broker that is down fails fast.
                retry=Retry(NoBackoff(), 1),
                health_check_interval=options.get("health_check_interval") or 25,
            )
            _clients[key] = client
    return client


def publishing_reset() -> None:
    """Forget the clients and routes (tests that switch brokers or routes)."""
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
        _routes.clear()
