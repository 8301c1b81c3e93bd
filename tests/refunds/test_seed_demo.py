"""The demo world tells a month's story: refunds spread over the last 30 days, every one settled (none
turns "stuck" by itself after `make run`), and the failures operators triage."""

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from refunds.models import Refund, RefundStatus
from refunds.selectors import refunds_stuck_queryset

# Real commits, as `make run` does: each refund is processed right after it is recorded, while the
# sandbox fault meant for it is armed.
pytestmark = pytest.mark.django_db(transaction=True)


def test_seed_demo_spreads_refunds_over_30_days_and_leaves_none_to_turn_stuck(settings):
    settings.STRIPE_API_KEY = ""
    call_command("seed_demo", stdout=StringIO())
    refunds = list(Refund.objects.all())
    assert refunds
    now = timezone.now()
    days = {timezone.localtime(refund.date_created).date() for refund in refunds}
    assert len(days) >= 15
    assert all(now - refund.date_created < dt.timedelta(days=30) for refund in refunds)
    assert not Refund.objects.filter(status=RefundStatus.PROCESSING).exists()
    later = now + dt.timedelta(seconds=settings.REFUND_STUCK_AFTER_SECONDS * 10)
    assert not refunds_stuck_queryset(later).exists()
    assert {RefundStatus.FAILED, RefundStatus.PARTIALLY_COMPLETED, RefundStatus.EXTERNAL} <= {r.status for r in refunds}
    for refund in refunds:  # the trail moved with its refund
        assert all(event.date_created >= refund.date_created - dt.timedelta(seconds=5) for event in refund.events.all())
