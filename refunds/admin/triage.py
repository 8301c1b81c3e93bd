"""The operators' triage lists: `?triage=failed` (FAILED, PARTIALLY_COMPLETED and stuck PROCESSING,
oldest first) and `?triage=stuck`, the filters behind them, and the stable /admin/refunds/refund/failed/
address.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import Exists, OuterRef
from django.http import HttpResponseRedirect
from django.urls import reverse

from refunds.admin.selectors import refunds_needing_attention, refunds_stuck
from refunds.models import RefundError

TRIAGE_PARAMETER = "triage"
TRIAGE_FAILED = "failed"
TRIAGE_STUCK = "stuck"


def changelist_url(model_admin, **params) -> str:
    url = reverse("admin:refunds_refund_changelist", current_app=model_admin.admin_site.name)
    return f"{url}?{urlencode(params)}" if params else url


def failed_refunds_view(model_admin, request):
    """/admin/refunds/refund/failed/: a stable address for the failed-refunds list (oldest first)."""
    return HttpResponseRedirect(changelist_url(model_admin, **{TRIAGE_PARAMETER: TRIAGE_FAILED}))


class NeedsAttentionFilter(admin.SimpleListFilter):
    """The operators' first screen: ?triage=failed lists what needs a person, oldest first."""

    title = "needs attention"
    parameter_name = TRIAGE_PARAMETER

    def lookups(self, request, model_admin):
        return (
            (TRIAGE_FAILED, "Failed refunds (failed, partially completed, stuck)"),
            (TRIAGE_STUCK, "Stuck in processing"),
        )

    def queryset(self, request, queryset):
        if self.value() == TRIAGE_FAILED:
            return refunds_needing_attention(queryset)
        if self.value() == TRIAGE_STUCK:
            return refunds_stuck(queryset)
        return queryset


class OpenErrorsFilter(admin.SimpleListFilter):
    title = "open errors"
    parameter_name = "open_errors"

    def lookups(self, request, model_admin):
        return (("yes", "Has open errors"), ("no", "No open errors"))

    def queryset(self, request, queryset):
        has_open = Exists(RefundError.objects.filter(refund=OuterRef("pk"), resolved=False))
        if self.value() == "yes":
            return queryset.filter(has_open)
        if self.value() == "no":
            return queryset.filter(~has_open)
        return queryset
