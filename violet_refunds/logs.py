"""Structured logs: a context of ids carried by every log line of a web request or a Celery task.

- `RequestIdMiddleware` takes the request id from `X-Request-ID` (when it is a sane token) or makes
  one, returns it in the response's `X-Request-ID`, and puts it (and the ids in the URL, and the
  channel's claimed app id) into the log context.
- Celery tasks enqueued while a context is active carry its request id in a message header
  (`before_task_publish`); the worker puts it back into the context of the task (`task_prerun`), with
  the task's name and id and every `*_id` argument (refund_id, event_id, delivery_id, bag_id).
- `bind(**fields)` adds fields for the rest of the request or task (e.g. Stripe's request id).
- `ContextFilter` copies the context onto each record; `JsonFormatter` writes one JSON object per
  line: time, level, logger, message, the context, any `extra=` fields and the exception.

JSON is the format with DEBUG off, plain text (with the request id) with DEBUG on: LOG_FORMAT.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import inspect
import json
import logging
import re
import uuid
from typing import Any

from django.http import HttpRequest, HttpResponse

REQUEST_ID_HEADER = "X-Request-ID"
# The header of a Celery message that carries the request id from the publisher to the worker.
TASK_HEADER = "violet_request_id"
# What a caller may choose as its request id: a token, not a sentence (no spaces, quotes or controls).
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("violet_log_context", default=None)


def current() -> dict[str, Any]:
    return dict(_context.get() or {})


def bind(**fields: Any) -> None:
    """Add fields to the current request's or task's context (None values are left out)."""
    _context.set({**current(), **{key: value for key, value in fields.items() if value is not None}})


def _replace(fields: dict[str, Any]) -> contextvars.Token:
    return _context.set(fields)


def request_id_from(value: str | None) -> str:
    """The caller's request id when it is a sane token, otherwise a new one."""
    if value and _VALID_REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Early in MIDDLEWARE: every later middleware, the view and what it enqueues log with the id."""

    APP_ID_HEADER = "X-Violet-App-Id"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        fields: dict[str, Any] = {"request_id": request_id}
        app_id = request.headers.get(self.APP_ID_HEADER, "")
        if app_id.isdigit():
            fields["app_id"] = int(app_id)  # claimed by the caller; a wrong one is refused by the view
        # Not reset on the way out: Django logs a 4xx/5xx (django.request) after the middleware chain
        # returned. The context ends with the request (`request_finished`, clear_on_request_finished).
        _replace(fields)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        # The ids in the URL: order_id, bag_id, refund_id, public_id (a store connection), ...
        bind(**{key: value for key, value in view_kwargs.items() if key.endswith("_id")})


def clear_on_request_finished(**kwargs) -> None:
    """A thread serves many requests (gthread): nothing of one request's context reaches the next."""
    _replace({})


# --- Celery ---------------------------------------------------------------------------------------

_task_tokens: dict[str, contextvars.Token] = {}


def on_before_task_publish(headers: dict | None = None, **kwargs) -> None:
    request_id = current().get("request_id")
    if request_id and headers is not None:
        headers.setdefault(TASK_HEADER, request_id)


def _id_arguments(task, args, kwargs) -> dict[str, Any]:
    try:
        bound = inspect.signature(task.run).bind_partial(*(args or ()), **(kwargs or {}))
    except (TypeError, ValueError):
        return {}
    return {
        name: value for name, value in bound.arguments.items() if name.endswith("_id") and isinstance(value, int | str)
    }


def on_task_prerun(task_id: str | None = None, task=None, args=None, kwargs=None, **extra) -> None:
    fields = current()  # eager tasks run inside the request: keep its context
    request_id = None
    if task is not None:
        # A header set at publish time is an attribute of the task's request (protocol 2); some
        # paths keep custom headers under `headers`.
        request_id = getattr(task.request, TASK_HEADER, None) or (getattr(task.request, "headers", None) or {}).get(
            TASK_HEADER
        )
    if request_id:
        fields["request_id"] = request_id
    if task is not None:
        fields.update({"task": task.name, "task_id": task_id, **_id_arguments(task, args, kwargs)})
    if task_id:
        _task_tokens[task_id] = _replace(fields)


def on_task_postrun(task_id: str | None = None, **kwargs) -> None:
    token = _task_tokens.pop(task_id, None) if task_id else None
    if token is not None:
        try:
            _context.reset(token)
        except ValueError:  # set in another context (should not happen): start clean instead
            _replace({})


def connect_celery_signals() -> None:
    from celery import signals

    signals.before_task_publish.connect(on_before_task_publish, weak=False, dispatch_uid="violet-logs-publish")
    signals.task_prerun.connect(on_task_prerun, weak=False, dispatch_uid="violet-logs-prerun")
    signals.task_postrun.connect(on_task_postrun, weak=False, dispatch_uid="violet-logs-postrun")


# --- logging plumbing -----------------------------------------------------------------------------


class ContextFilter(logging.Filter):
    """Copies the log context onto the record (and request_id "-" outside any request or task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = current()
        record.log_context = fields
        record.request_id = fields.get("request_id", "-")
        return True


# Attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "log_context",
    "request_id",
    "taskName",
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        body.update(getattr(record, "log_context", None) or {})
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                body[key] = _jsonable(value)
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        return json.dumps(body, default=str)
