"""Settling settings (issue 13): the stuck-delivery wait must exceed the channel timeout plus a
margin, checked when the settings load (web, workers and beat all refuse to start); the beat entries
that find lost work run often enough for their ages and expire instead of piling up."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from violet_refunds import settings as project_settings

ROOT = Path(__file__).resolve().parents[2]


def defaults(**overrides) -> dict[str, float]:
    values = {
        "INBOUND_EVENT_REQUEUE_AFTER_SECONDS": 60,
        "INBOUND_EVENT_REQUEUE_INTERVAL_SECONDS": 30,
        "INBOUND_EVENT_RETRY_BACKOFF_BASE_SECONDS": 10,
        "INBOUND_EVENT_RETRY_BACKOFF_MAX_SECONDS": 900,
        "INBOUND_EVENT_RETRY_HORIZON_SECONDS": 86400,
        "WEBHOOK_RELAY_INTERVAL_SECONDS": 15,
        "WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS": 60,
        "NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS": 10.0,
    }
    return {**values, **overrides}


def test_the_defaults_are_valid_and_are_the_loaded_values():
    project_settings._check_settling(defaults())
    for name, value in defaults().items():
        assert getattr(project_settings, name) == value, name


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS": 25}, r"WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS \(25\) must be greater"),
        (
            {"WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS": 60, "NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS": 50},
            r"greater than NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS \(50\) \+ 15 s",
        ),
        ({"INBOUND_EVENT_REQUEUE_AFTER_SECONDS": 0}, "INBOUND_EVENT_REQUEUE_AFTER_SECONDS must be a positive"),
        ({"INBOUND_EVENT_RETRY_HORIZON_SECONDS": 5}, "INBOUND_EVENT_RETRY_HORIZON_SECONDS must be at least"),
    ],
)
def test_settings_that_cannot_work_are_refused(overrides, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        project_settings._check_settling(defaults(**overrides))


def test_start_up_fails_with_a_clear_message():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "violet_refunds.settings",
        "NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS": "30",
        "WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS": "40",
    }
    started = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode != 0
    assert "ImproperlyConfigured: WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS (40) must be greater than" in started.stderr
    assert "Use more than 45." in started.stderr


def test_beat_finds_lost_work_often_enough_and_drops_stale_copies(settings):
    schedule = settings.CELERY_BEAT_SCHEDULE
    requeue = schedule["requeue-received-inbound-events"]
    relay = schedule["relay-webhook-deliveries"]
    # A lost inbound message is found within requeue age + interval (90 s by default), not 10-15 min.
    assert requeue["schedule"] == settings.INBOUND_EVENT_REQUEUE_INTERVAL_SECONDS == 30
    assert requeue["schedule"] < settings.INBOUND_EVENT_REQUEUE_AFTER_SECONDS
    # The relay recovers interrupted deliveries: it must run well within the stuck wait.
    assert relay["schedule"] < settings.WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS
    # After worker downtime, one queued copy per period would be stale: each expires after its period.
    assert requeue["options"]["expires"] == requeue["schedule"]
    assert relay["options"]["expires"] == relay["schedule"]
