"""Celery application. Configuration lives in settings (CELERY_* names)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "violet_refunds.settings")

app = Celery("violet_refunds")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
