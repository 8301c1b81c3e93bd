"""Every date on an admin page says its time zone; the CSV export stays UTC ISO 8601."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import formats, timezone

from tests.factories import OperatorFactory, RefundFactory

pytestmark = pytest.mark.django_db


def test_the_date_formats_carry_the_zone():
    now = timezone.localtime(timezone.now())
    for name in ("DATETIME_FORMAT", "SHORT_DATETIME_FORMAT"):
        assert formats.date_format(now, name).endswith(" UTC")


def test_admin_lists_and_pages_show_dates_with_their_zone(client):
    refund = RefundFactory()
    client.force_login(OperatorFactory())
    shown = formats.date_format(timezone.localtime(refund.date_created), "DATETIME_FORMAT")
    body = client.get(reverse("admin:refunds_refund_change", args=[refund.pk])).content.decode()
    assert shown in body and shown.endswith("UTC")
    export = b"".join(client.get(reverse("admin:refunds_refund_export")).streaming_content).decode()
    assert refund.date_created.astimezone(dt.UTC).isoformat() in export
