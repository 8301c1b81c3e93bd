"""Celery topology (issue #18 item 2): one queue per role, every task routed, every beat entry expires,
and everything that starts workers consumes the queues the routes use."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from celery.schedules import crontab
from django.conf import settings

from violet_refunds import queues
from violet_refunds.celery import app as celery_app

PROJECT_DIR = Path(settings.BASE_DIR)
PROJECT_APPS = ("refunds.", "platforms.", "notifications.", "payments.", "portal.", "stripe_sandbox.", "stripe_events.")

EXPECTED_ROUTES = {
    "refunds.tasks.process_refund": "refunds",
    "stripe_events.tasks.process_stripe_event": "refunds",
    "refunds.tasks.reconcile_refunds_nightly": "refunds",
    "platforms.tasks.process_inbound_event": "platforms",
    "platforms.tasks.process_events_awaiting_bag": "platforms",
    "platforms.tasks.poll_platform_orders": "platforms",
    "platforms.tasks.check_platform_parity": "platforms",
    "platforms.tasks.discover_oms_refunds": "platforms",
    "platforms.tasks.sync_store_subscriptions": "platforms",
    "platforms.tasks.sync_due_store_subscriptions": "platforms",
    "platforms.tasks.process_privacy_request": "platforms",
    "platforms.tasks.forward_refund": "platforms",
    "platforms.tasks.apply_data_retention": "platforms",
    "notifications.tasks.deliver_webhook": "notifications",
    "refunds.tasks.sweep_stuck_refunds": "periodic",
    "platforms.tasks.requeue_received_events": "periodic",
    "platforms.tasks.sweep_events_awaiting_order": "periodic",
    "notifications.tasks.relay_webhook_deliveries": "periodic",
    "stripe_events.tasks.requeue_stripe_events": "periodic",
    "stripe_sandbox.tasks.sweep_sandbox": "periodic",
}


def _project_tasks() -> set[str]:
    celery_app.loader.import_default_modules()
    return {name for name in celery_app.tasks if name.startswith(PROJECT_APPS)}


def _queue_of(task_name: str) -> str:
    return celery_app.amqp.router.route({}, task_name)["queue"].name


def test_the_queues_are_the_four_roles():
    assert queues.QUEUES == ("refunds", "platforms", "notifications", "periodic")


@pytest.mark.parametrize(("task_name", "queue"), sorted(EXPECTED_ROUTES.items()))
def test_each_task_goes_to_its_roles_queue(task_name, queue):
    assert _queue_of(task_name) == queue


def test_every_project_task_is_in_the_routing_table():
    # A new task without a route would land on Celery's default queue, which no worker consumes.
    assert _project_tasks() == set(EXPECTED_ROUTES)
    assert {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()} == set(queues.QUEUES)


def test_every_beat_entry_expires_within_its_period():
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        period = entry["schedule"]
        if isinstance(period, crontab):  # a time of day: at most one day apart
            period = 24 * 3600
        period = period.total_seconds() if isinstance(period, timedelta) else period
        expires = entry.get("options", {}).get("expires")
        assert expires is not None, f"beat entry {name} has no expires"
        assert 0 < expires <= period, name
        assert entry["task"] in EXPECTED_ROUTES, name


def test_a_role_worker_consumes_only_its_queue():
    command = queues.worker_arguments("notifications")

    assert command[command.index("-Q") + 1] == "notifications"
    assert "notifications@%h" in command


def test_everything_that_starts_workers_consumes_every_routed_queue():
    makefile = (PROJECT_DIR / "Makefile").read_text()
    assert re.search(r"^QUEUE \?= (.+)$", makefile, re.MULTILINE).group(1) == queues.ALL_QUEUES

    from soak import processes
    from tests.reliability.workers import Worker

    soak_worker = processes.worker_service({}, "w1", PROJECT_DIR)
    assert soak_worker.command[soak_worker.command.index("-Q") + 1] == queues.ALL_QUEUES
    test_worker = Worker({}, PROJECT_DIR / "unused.log")
    assert test_worker.command[test_worker.command.index("-Q") + 1] == queues.ALL_QUEUES

    procfile = (PROJECT_DIR / "Procfile").read_text()
    for queue in queues.QUEUES:
        assert f"-Q {queue} " in procfile


def test_beat_schedule_files_are_ignored_by_git():
    assert "celerybeat-schedule*" in (PROJECT_DIR / ".gitignore").read_text().splitlines()
