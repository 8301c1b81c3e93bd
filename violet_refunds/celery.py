"""Celery application. Configuration lives in settings (CELERY_* names)."""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "violet_refunds.settings")

app = Celery("violet_refunds")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def _logging_from_django_settings(**kwargs):
    """Workers and beat log through settings.LOGGING (JSON with DEBUG off) instead of Celery's own
    format: a receiver of this signal stops Celery from configuring logging itself."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


def _connect_log_context() -> None:
    from violet_refunds import logs

    logs.connect_celery_signals()


_connect_log_context()
