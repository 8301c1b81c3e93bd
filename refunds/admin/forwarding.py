"""Forwardings: each channel refund's trip to the merchant's platform before its money moves (issue 14).

Read-only rows (platforms.forwarding and refunds.services.forwarding write them); an operator answers
a stalled one from the refund's page ("Retry forwarding", "Move the money without the platform"), so
this list is where to see, per platform, what is waiting, refused or left to the merchant to mirror."""

from django.contrib import admin

from refunds.models import RefundForwarding
from violet_refunds.admin import ReadOnlyAdminMixin


@admin.register(RefundForwarding)
class RefundForwardingAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "refund",
        "platform",
        "state",
        "platform_refund_id",
        "attempts",
        "next_attempt_at",
        "short_error",
        "mirror_done_at",
        "date_created",
    )
    list_filter = ("state", "platform", "date_created")
    search_fields = ("refund__id", "platform_refund_id", "refund__bag__merchant__name")
    list_select_related = ("refund",)
    date_hierarchy = "date_created"

    @admin.display(description="Last error")
    def short_error(self, forwarding):
        return (forwarding.last_error or "")[:120]
