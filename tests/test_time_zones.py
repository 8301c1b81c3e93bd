"""Every date on an admin page says its time zone; the CSV export stays UTC ISO 8601."""

import datetime as dt
import zoneinfo

import pytest
from django.http import HttpResponse
from django.urls import reverse
from django.utils import formats, timezone

from tests.factories import OperatorFactory, RefundFactory
from violet_refunds.timezones import TIME_ZONE_COOKIE, OperatorTimeZoneMiddleware, zone_from_cookie

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


# --------------------------------------------------------------------------------------------------
# The operator's own zone (violet_refunds.timezones): the browser's zone from the `tz` cookie
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["America/New_York", "Europe/Paris", "UTC", "Etc/GMT+5", "America/Argentina/Salta"])
def test_a_known_zone_name_in_the_cookie_is_used(name):
    assert zone_from_cookie(name) == zoneinfo.ZoneInfo(name)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "Mars/Olympus_Mons",
        "../../etc/passwd",
        "/etc/localtime",
        "Europe/../Paris",
        "Europe/Paris\x00",
        "America%2FNew_York",
        "A" * 65,
        "Europe/ Paris",
    ],
)
def test_an_unknown_or_malformed_zone_in_the_cookie_is_refused(value):
    assert zone_from_cookie(value) is None


def refund_page(client, refund, cookie=None):
    if cookie is not None:
        client.cookies[TIME_ZONE_COOKIE] = cookie
    return client.get(reverse("admin:refunds_refund_change", args=[refund.pk])).content.decode()


def test_admin_pages_show_dates_in_the_operators_zone_from_the_cookie(client):
    refund = RefundFactory()
    client.force_login(OperatorFactory())
    new_york = refund.date_created.astimezone(zoneinfo.ZoneInfo("America/New_York"))
    shown = formats.date_format(new_york, "DATETIME_FORMAT")
    assert shown.endswith((" EST", " EDT"))

    body = refund_page(client, refund, "America/New_York")

    assert shown in body
    assert formats.date_format(refund.date_created.astimezone(dt.UTC), "DATETIME_FORMAT") not in body
    assert timezone.get_current_timezone_name() == "UTC"  # deactivated after the request


def test_an_invalid_cookie_leaves_the_settings_zone(client, settings):
    refund = RefundFactory()
    client.force_login(OperatorFactory())
    shown = formats.date_format(refund.date_created.astimezone(dt.UTC), "DATETIME_FORMAT")
    assert shown in refund_page(client, refund, "Mars/Olympus_Mons")
    assert shown in refund_page(client, refund, "../../etc/passwd")


def test_the_csv_export_stays_utc_iso_whatever_the_operators_zone(client):
    refund = RefundFactory()
    client.force_login(OperatorFactory())
    client.cookies[TIME_ZONE_COOKIE] = "Asia/Tokyo"
    export = b"".join(client.get(reverse("admin:refunds_refund_export")).streaming_content).decode()
    assert refund.date_created.astimezone(dt.UTC).isoformat() in export
    assert "+09:00" not in export


def test_only_admin_requests_follow_the_cookie(rf):
    seen = []

    def view(request):
        seen.append((request.path, timezone.get_current_timezone_name()))
        return HttpResponse()

    middleware = OperatorTimeZoneMiddleware(view)
    for path in (reverse("admin:index"), "/v1/orders/1/refunds", "/portal/"):
        request = rf.get(path)
        request.COOKIES[TIME_ZONE_COOKIE] = "Asia/Tokyo"
        middleware(request)
    assert seen == [
        (reverse("admin:index"), "Asia/Tokyo"),
        ("/v1/orders/1/refunds", "UTC"),
        ("/portal/", "UTC"),
    ]
    assert timezone.get_current_timezone_name() == "UTC"


def test_a_url_conf_without_the_admin_follows_no_cookie(rf, settings):
    # A bench's or a test's URL conf has no admin: the middleware must not turn every request into a 500.
    settings.ROOT_URLCONF = "tests.test_time_zones"
    seen = []

    def view(request):
        seen.append(timezone.get_current_timezone_name())
        return HttpResponse()

    request = rf.get("/admin/")
    request.COOKIES[TIME_ZONE_COOKIE] = "Asia/Tokyo"
    OperatorTimeZoneMiddleware(view)(request)
    assert seen == ["UTC"]


urlpatterns: list = []  # the URL conf of the test above: no admin
