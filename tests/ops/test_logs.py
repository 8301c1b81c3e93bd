"""Structured logs (issue #18 item 3): a request id from X-Request-ID (or a new one) in the response,
in every log line of the request, and in the log lines of the Celery tasks the request enqueued."""

from __future__ import annotations

import json
import logging

import pytest
from django.test import Client

from refunds.api.auth import TokenType, token_issue
from refunds.models import AppMembership, Refund
from tests.factories import AppMembershipFactory, UserFactory
from tests.refunds.api.conftest import channel_headers
from tests.reliability.workers import wait_for
from tests.world import funded_bag
from violet_refunds import logs


def _record(message: str, **extra) -> logging.LogRecord:
    record = logging.LogRecord("violet.test", logging.INFO, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    logs.ContextFilter().filter(record)
    return record


def test_a_valid_request_id_is_kept_and_returned(db):
    response = Client().get("/healthz-missing", HTTP_X_REQUEST_ID="lb-7f3a.2")

    assert response["X-Request-ID"] == "lb-7f3a.2"


@pytest.mark.parametrize("sent", ["", "two words", "x" * 129, 'quote"d', "new\\nline"])
def test_an_unusable_request_id_is_replaced_by_a_new_one(db, sent):
    response = Client().get("/portal/login/", HTTP_X_REQUEST_ID=sent)

    returned = response["X-Request-ID"]
    assert returned != sent
    assert len(returned) == 32 and int(returned, 16) >= 0  # a uuid4, hex


def test_every_line_of_a_request_carries_its_request_id_and_url_ids(db, caplog):
    seen = []

    class Capture(logging.Handler):
        def emit(self, record):
            seen.append(json.loads(logs.JsonFormatter().format(record)))

    handler = Capture()
    handler.addFilter(logs.ContextFilter())
    logging.getLogger("django.request").addHandler(handler)
    try:
        Client().get("/v1/orders/41/refunds/7", HTTP_X_REQUEST_ID="req-abc", HTTP_X_VIOLET_APP_ID="12")
    finally:
        logging.getLogger("django.request").removeHandler(handler)

    assert seen, "the refused request logs a warning"
    line = seen[-1]
    assert (line["request_id"], line["app_id"], line["order_id"], line["refund_id"]) == ("req-abc", 12, 41, 7)
    assert line["level"] == "WARNING"


def test_the_json_formatter_writes_one_object_with_context_extra_and_exception():
    logs.bind(request_id="r-1", refund_id=5)
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = _record("refund %s failed", stripe_request_id="req_123", exc_info=sys.exc_info())
    finally:
        logs._replace({})
    record.args = None

    line = json.loads(logs.JsonFormatter().format(record))

    assert line["message"] == "refund %s failed"
    assert (line["request_id"], line["refund_id"], line["stripe_request_id"]) == ("r-1", 5, "req_123")
    assert line["exception"].startswith("Traceback") and "ValueError: boom" in line["exception"]
    assert line["level"] == "INFO" and line["logger"] == "violet.test"


def test_outside_a_request_the_plain_format_shows_a_dash():
    record = _record("hello")

    assert record.request_id == "-"


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_the_request_id_flows_from_a_web_request_into_the_tasks_log_line(start_worker):
    """A channel's refund request with X-Request-ID enqueues process_refund on commit; the real worker's
    JSON log lines of that task carry the same request id, the task, and the refund's id."""
    worker = start_worker(LOG_FORMAT="json")
    bag = funded_bag()
    owner = UserFactory()
    AppMembershipFactory(app=bag.order.app, user=owner, role=AppMembership.Role.OWNER)
    headers = channel_headers(bag.order.app, token_issue(user=owner, app=bag.order.app, token_type=TokenType.ACCESS))

    response = Client().post(
        f"/v1/orders/{bag.order.pk}/bags/{bag.pk}/refunds",
        data="{}",
        content_type="application/json",
        headers={**headers, "X-Request-ID": "flow-req-42"},
    )
    assert response.status_code == 201, response.content
    assert response["X-Request-ID"] == "flow-req-42"
    refund = Refund.objects.get(pk=response.json()["id"])

    def task_lines() -> list[dict]:
        lines = []
        for text in worker.log().splitlines():
            if text.startswith("{"):
                line = json.loads(text)
                if line.get("task") == "refunds.tasks.process_refund" and line.get("refund_id") == refund.pk:
                    lines.append(line)
        return lines

    wait_for(lambda: any(f"refund {refund.pk}: " in line["message"] for line in task_lines()), 60, worker)
    lines = task_lines()
    assert {line["request_id"] for line in lines} == {"flow-req-42"}
    assert all(line["task_id"] for line in lines)
