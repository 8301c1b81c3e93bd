"""The admin index's refund triage: counts of what needs an operator, each linking to its list, and
a 30-day chart of refunds per day by status (SVG geometry computed here, drawn by
templates/admin/index.html). VioletAdminSite.index gets it through RefundAdmin.index_context.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from platforms.models import InboundEvent
from platforms.selectors import connections_needing_attention
from refunds.admin.selectors import DayOfRefunds, refunds_per_day, triage_counts
from refunds.admin.triage import TRIAGE_FAILED, TRIAGE_PARAMETER, TRIAGE_STUCK, changelist_url
from refunds.models import ReconciliationFinding, RefundSource, RefundStatus
from refunds.selectors import findings_open_count
from violet_refunds.admin import can_operate

# Stacking order (bottom up) and colours of the chart; the same colours as the status badges.
CHART_STATUSES = (
    (RefundStatus.COMPLETED, "#2e7d32"),
    (RefundStatus.EXTERNAL, "#6a1b9a"),
    (RefundStatus.PROCESSING, "#1565c0"),
    (RefundStatus.PARTIALLY_COMPLETED, "#e65100"),
    (RefundStatus.FAILED, "#c62828"),
    (RefundStatus.CANCELED, "#757575"),
)
CHART_HEIGHT = 160
CHART_BAR_WIDTH = 18
CHART_BAR_GAP = 6
CHART_LEFT = 36  # room for the y-axis labels


def _chart(model_admin, days: list[DayOfRefunds]) -> dict:
    """Bars as SVG rectangles, computed here so the template only draws them."""
    peak = max((day.total for day in days), default=0)
    scale = CHART_HEIGHT / peak if peak else 0
    bars = []
    for index, day in enumerate(days):
        x = CHART_LEFT + index * (CHART_BAR_WIDTH + CHART_BAR_GAP)
        stacked = 0
        segments = []
        for status, colour in CHART_STATUSES:
            count = day.counts.get(status, 0)
            if not count:
                continue
            # From cumulative counts, so the rounded segments of the tallest bar add up to the axis.
            bottom = round(CHART_HEIGHT - stacked * scale, 2)
            stacked += count
            top = round(CHART_HEIGHT - stacked * scale, 2)
            top = min(top, bottom - 1)  # a single refund stays visible next to a busy day's peak
            segments.append(
                {"status": status, "count": count, "colour": colour, "y": top, "height": round(bottom - top, 2)}
            )
        start = timezone.make_aware(dt.datetime.combine(day.day, dt.time.min))
        end = timezone.make_aware(dt.datetime.combine(day.day + dt.timedelta(days=1), dt.time.min))
        bars.append(
            {
                "x": x,
                "label_x": x + CHART_BAR_WIDTH / 2,
                "day": day.day,
                "total": day.total,
                "segments": segments,
                "show_label": index % 5 == 0 or index == len(days) - 1,
                "href": changelist_url(
                    model_admin,
                    date_created__gte=start.isoformat(),
                    date_created__lt=end.isoformat(),
                ),
            }
        )
    width = CHART_LEFT + len(days) * (CHART_BAR_WIDTH + CHART_BAR_GAP)
    return {
        "bars": bars,
        "peak": peak,
        "width": width,
        "height": CHART_HEIGHT,
        "view_height": CHART_HEIGHT + 24,
        "bar_width": CHART_BAR_WIDTH,
        "left": CHART_LEFT,
        "legend": [{"status": status, "colour": colour} for status, colour in CHART_STATUSES],
        "total": sum(day.total for day in days),
    }


def index_triage_context(model_admin, request) -> dict:
    """Counts for the four things an operator checks first, each linking to its list, and the chart."""
    if not request.user.has_perm("refunds.view_refund"):
        return {}
    now = timezone.now()
    counts = triage_counts(now=now)
    since = (now - dt.timedelta(hours=24)).isoformat(timespec="seconds")
    cards = [
        {
            "label": "Failed",
            "count": counts.failed,
            "href": changelist_url(model_admin, status__exact=RefundStatus.FAILED, **{TRIAGE_PARAMETER: TRIAGE_FAILED}),
            "tone": "failed",
            "help": "The shopper was not refunded; an operator must retry, mark external or cancel.",
        },
        {
            "label": "Partially completed",
            "count": counts.partially_completed,
            "href": changelist_url(
                model_admin, status__exact=RefundStatus.PARTIALLY_COMPLETED, **{TRIAGE_PARAMETER: TRIAGE_FAILED}
            ),
            "tone": "partial",
            "help": "The shopper was refunded but a transfer reversal failed: funds to recover.",
        },
        {
            "label": "Stuck in processing",
            "count": counts.stuck,
            "href": changelist_url(model_admin, **{TRIAGE_PARAMETER: TRIAGE_STUCK}),
            "tone": "stuck",
            "help": "PROCESSING with nobody working on it; the sweep re-enqueues these.",
        },
    ]
    if request.user.has_perm("platforms.view_inboundevent"):
        cards.append(
            {
                "label": "Inbound events failed (24 h)",
                "count": counts.inbound_failed_last_24h,
                "href": reverse("admin:platforms_inboundevent_changelist", current_app=model_admin.admin_site.name)
                + "?"
                + urlencode({"status__exact": InboundEvent.Status.FAILED, "date_created__gte": since}),
                "tone": "events",
                "help": "Platform webhooks or polls that could not be processed; replay them once fixed.",
            }
        )
        cards.append(
            {
                "label": "Inbound events awaiting their order",
                "count": counts.inbound_awaiting_order,
                "href": reverse("admin:platforms_inboundevent_changelist", current_app=model_admin.admin_site.name)
                + "?"
                + urlencode({"status__exact": InboundEvent.Status.AWAITING_ORDER}),
                "tone": "events",
                "help": "Events for an order that is not (yet) a bag: processed when it appears, "
                "FAILED if it never does.",
            }
        )
    if request.user.has_perm("platforms.view_storeconnection"):
        attention = connections_needing_attention(
            now=now,
            silent_after=dt.timedelta(seconds=settings.STORE_SILENT_AFTER_SECONDS),
            min_bags=settings.STORE_SILENT_MIN_BAGS,
        ).count()
        silent_days = settings.STORE_SILENT_AFTER_SECONDS / 86400
        cards.append(
            {
                "label": "Store connections needing attention",
                "count": attention,
                # The StoreConnection list's HealthFilter (platforms/admin.py).
                "href": reverse("admin:platforms_storeconnection_changelist", current_app=model_admin.admin_site.name)
                + "?"
                + urlencode({"health": "attention"}),
                "tone": "events",
                "help": "Credentials refused, a webhook subscription failing, or no webhook for "
                f"{silent_days:g} days although the network placed orders with the store: refunds may go unseen.",
            }
        )
    cards.append(
        {
            "label": "Found by parity check (7 days)",
            "count": counts.found_by_parity_last_7d,
            "href": changelist_url(
                model_admin,
                source__exact=RefundSource.PARITY_CHECK,
                date_created__gte=(now - dt.timedelta(days=7)).isoformat(timespec="seconds"),
            ),
            "tone": "events",
            "help": "Refunds no webhook or poll reported, found by reading the platform: check the stores' webhooks.",
        }
    )
    if request.user.has_perm("refunds.view_reconciliationfinding"):
        cards.append(
            {
                "label": "Open findings with Stripe",
                "count": findings_open_count(),
                "href": reverse(
                    "admin:refunds_reconciliationfinding_changelist", current_app=model_admin.admin_site.name
                )
                + "?"
                + urlencode({"state__exact": ReconciliationFinding.State.OPEN}),
                "tone": "events",
                "help": "Differences the nightly reconciliation or Stripe's events found (Dashboard refunds, "
                "disputes, totals that disagree): look, then resolve with a note.",
            }
        )
    return {
        "triage": {
            "cards": cards,
            "needing_attention": counts.needing_attention,
            "failed_refunds_url": reverse("admin:refunds_refund_failed", current_app=model_admin.admin_site.name),
            "notice_url": (
                reverse("admin:refunds_refund_record_notice", current_app=model_admin.admin_site.name)
                if can_operate(request.user)
                else None
            ),
            "chart": _chart(model_admin, refunds_per_day(days=30, now=now)),
        }
    }
