"""The operators' home: the refund list (triage tabs, filters, step marks, last open error), a
refund's page (triage panel, history, repair buttons) and the URLs of the pages beyond Django's own
(operations, failed list, CSV export, record notice). Refunds are recorded and moved only by
refunds.services; operators read them, correct the descriptive reason, and repair them through the
actions, each confirmed first and audited by the service.
"""

from __future__ import annotations

from functools import partial

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.timesince import timesince

from payments.models import TransferReversal
from refunds.admin.export import export_csv_view
from refunds.admin.history import (
    RefundErrorInline,
    RefundSkuInline,
    ShopperRefundInline,
    TransferReversalInline,
)
from refunds.admin.index import index_triage_context
from refunds.admin.notice import record_notice_view
from refunds.admin.operations import (
    OPERATIONS,
    refund_operation_action,
    refund_operation_view,
    refund_reason_view,
    refund_resolve_errors_view,
)
from refunds.admin.selectors import refund_search_filter, refund_timeline
from refunds.admin.steps import step_badges
from refunds.admin.story import refund_story_context
from refunds.admin.triage import (
    TRIAGE_FAILED,
    TRIAGE_PARAMETER,
    TRIAGE_STUCK,
    NeedsAttentionFilter,
    OpenErrorsFilter,
    changelist_url,
    failed_refunds_view,
)
from refunds.models import Refund, RefundError
from violet_refunds.admin import admin_link, can_operate, money_display, status_badge
from violet_refunds.money import format_amount


@admin.register(Refund)
class RefundAdmin(admin.ModelAdmin):
    """The operators' home. Refunds are recorded and moved only by refunds.services: operators read
    them, correct the descriptive reason, and repair them through the actions (retry, mark
    external, cancel, resolve errors), each confirmed first and audited by the service."""

    list_display = ("id", "status_column", "amount_column", "merchant", "money_moves")
    list_filter = (
        NeedsAttentionFilter,
        "status",
        "bag__merchant__platform",
        "bag__merchant",
        "bag__order__app",
        "source",
        "reason_code",
        OpenErrorsFilter,
        "date_created",
    )
    # Searched by refund_search_filter (get_search_results): a field list cannot say "re_… means the
    # shopper refund"; this keeps Django's search box and routes each kind of id to its column.
    search_fields = ("id",)
    search_help_text = (
        "Refund or order id; platform order or refund id; channel order id; merchant name; "
        "or a Stripe id or its start (re_, trr_, tr_, ch_, py_, pi_)."
    )
    list_select_related = ("bag__merchant", "bag__order__app", "shopper_refund")
    list_per_page = 50
    # Without a filter the total is the whole table; a second COUNT(*) of it on every page load
    # buys nothing an operator needs.
    show_full_result_count = False
    # Per-option counts ("Show counts") would scan the whole table once per filter option.
    show_facets = admin.ShowFacets.NEVER
    raw_id_fields = ("bag", "inbound_event", "created_by")
    actions = (
        "retry_refunds",
        "mark_refunds_external",
        "cancel_refunds",
        "resolve_refund_errors",
        "retry_forwarding",
        "move_money_without_platform",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "bag",
                    "order_link",
                    "merchant_link",
                    "app_link",
                    "external_id",
                    "status",
                    "source",
                    "reason_code",
                    "reason",
                    "restock_items",
                    "notify_customer",
                    "inbound_event",
                    "created_by",
                    "request_key",
                )
            },
        ),
        (
            "Amounts",
            {
                "fields": (
                    "amount_display",
                    "sub_total_display",
                    "shipping_display",
                    "shipping_tax_display",
                    "tax_display",
                    "refund_currency",
                    "platform_currency",
                    "shipping_full_refund",
                    "shipping_discrepancy_reason",
                    "merchant_reversal_usd",
                    "channel_reversal_usd",
                    "merchant_reversal_platform_currency",
                    "channel_reversal_platform_currency",
                )
            },
        ),
        (
            "Processing",
            {
                "classes": ("collapse",),
                "fields": (
                    "attempts",
                    "processing_started_at",
                    "last_attempt_at",
                    "next_attempt_at",
                    "outcome_unknown_since",
                    "date_completed",
                    "date_created",
                    "date_last_modified",
                ),
            },
        ),
    )
    # Everything except `reason_code` and `reason`: money and status change only through services.
    readonly_fields = tuple(
        name
        for _title, options in fieldsets
        for entry in options["fields"]
        for name in ((entry,) if isinstance(entry, str) else entry)  # a field or a row of fields
        if name not in {"reason_code", "reason"}
    )
    inlines = (
        RefundSkuInline,
        TransferReversalInline,
        ShopperRefundInline,
        RefundErrorInline,
    )

    amount_display = money_display("amount", "refund_currency", "Amount")
    sub_total_display = money_display("sub_total_amount", "refund_currency", "Items (sub total)")
    shipping_display = money_display("shipping_amount", "refund_currency", "Shipping")
    shipping_tax_display = money_display("shipping_tax_amount", "refund_currency", "Shipping tax (within tax)")
    tax_display = money_display("tax_amount", "refund_currency", "Tax")

    @admin.display(description="Merchant transfer reversal (USD)")
    def merchant_reversal_usd(self, refund):
        return format_amount(refund.merchant_transfer_reversal_amount_usd, "USD")

    @admin.display(description="Channel transfer reversal (USD)")
    def channel_reversal_usd(self, refund):
        return format_amount(refund.developer_transfer_reversal_amount_usd, "USD")

    @admin.display(description="Merchant transfer reversal (platform currency)")
    def merchant_reversal_platform_currency(self, refund):
        return format_amount(refund.merchant_transfer_reversal_amount_platform_currency, refund.platform_currency)

    @admin.display(description="Channel transfer reversal (platform currency)")
    def channel_reversal_platform_currency(self, refund):
        return format_amount(refund.developer_transfer_reversal_amount_platform_currency, refund.platform_currency)

    def get_fieldsets(self, request, obj=None):
        # Reversal amounts appear once: in USD, plus the platform currency only when it differs.
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or (obj.platform_currency or "USD") != "USD":
            return fieldsets
        same_twice = {"merchant_reversal_platform_currency", "channel_reversal_platform_currency"}
        return [
            (title, {**options, "fields": tuple(f for f in options["fields"] if f not in same_twice)})
            for title, options in fieldsets
        ]

    def get_queryset(self, request):
        # Everything the list columns read, in a fixed number of queries per page: joins for the
        # bag, merchant, app and shopper refund; one query each for reversals and open errors.
        return (
            super()
            .get_queryset(request)
            .select_related("bag__merchant", "bag__order__app", "shopper_refund")
            .prefetch_related(
                Prefetch(
                    "transfer_reversals",
                    queryset=TransferReversal.objects.select_related("transfer").order_by("pk"),
                ),
                Prefetch(
                    "errors",
                    queryset=RefundError.objects.filter(resolved=False).order_by("-pk"),
                    to_attr="open_errors_newest_first",
                ),
            )
        )

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        matching = Refund.objects.filter(refund_search_filter(search_term)).values("pk")
        return queryset.filter(pk__in=matching), False

    def get_ordering(self, request):
        # The triage lists work the backlog oldest first; everything else shows the newest first.
        if request.GET.get(TRIAGE_PARAMETER):
            return ("date_created", "pk")
        return super().get_ordering(request)

    def has_add_permission(self, request):
        # Refunds enter through refund_record (the notice page below for operators).
        return False

    def has_change_permission(self, request, obj=None):
        # A money record: the page is read-only (no form, no Save). The reason is corrected through
        # the audited change-reason page, money and status only through the repairs' services.
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_operate_permission(self, request):
        """May retry, mark external, cancel, resolve errors and record notices."""
        return can_operate(request.user)

    def index_context(self, request) -> dict:
        """The admin index leads with refund triage (VioletAdminSite.index asks every model admin)."""
        return index_triage_context(self, request)

    # --- columns ---

    @admin.display(description="Status · age", ordering="status")
    def status_column(self, refund):
        return format_html(
            '{}<div class="refund-quiet" title="Created {}">{} old</div>',
            status_badge(refund.status, refund.get_status_display()),
            refund.date_created.isoformat(timespec="seconds"),
            timesince(refund.date_created, depth=1),
        )

    @admin.display(description="Amount · source", ordering="amount")
    def amount_column(self, refund):
        return format_html(
            '<span class="refund-amount">{}</span><div class="refund-quiet">{}</div>',
            format_amount(refund.amount, refund.refund_currency),
            refund.get_source_display(),
        )

    @admin.display(description="Merchant · platform · app", ordering="bag__merchant__name")
    def merchant(self, refund):
        merchant, app = refund.bag.merchant, refund.bag.order.app
        site = self.admin_site.name
        return format_html(
            '<a href="{}">{}</a><div class="refund-quiet">{} · via <a href="{}">{}</a></div>',
            reverse("admin:platforms_merchant_change", args=[merchant.pk], current_app=site),
            merchant.name,
            merchant.get_platform_display(),
            reverse("admin:refunds_app_change", args=[app.pk], current_app=site),
            app.name,
        )

    @admin.display(description="Money moves · last open error")
    def money_moves(self, refund):
        """What failed and which money moved: one mark per step, then the latest open error."""
        errors = getattr(refund, "open_errors_newest_first", None)
        if errors is None:  # a queryset without the admin's prefetch
            errors = list(refund.errors.filter(resolved=False).order_by("-pk"))
        if not errors:
            return format_html('<div class="refund-steps">{}</div>', step_badges(refund))
        latest = errors[0]
        return format_html(
            '<div class="refund-steps">{}</div><div class="refund-last-error" title="{}">{}: {}{}</div>',
            step_badges(refund),
            latest.error_message,
            latest.error_code,
            Truncator(latest.error_message).chars(90),
            f" (+{len(errors) - 1} more)" if len(errors) > 1 else "",
        )

    @admin.display(description="Order")
    def order_link(self, refund):
        return admin_link(refund.bag.order) if refund.bag_id else "-"

    @admin.display(description="Merchant")
    def merchant_link(self, refund):
        return admin_link(refund.bag.merchant) if refund.bag_id else "-"

    @admin.display(description="App (channel)")
    def app_link(self, refund):
        return admin_link(refund.bag.order.app) if refund.bag_id else "-"

    # --- actions: each opens a confirmation page, then calls one service per refund ---

    @admin.action(description="Retry processing of selected refunds…", permissions=("operate",))
    def retry_refunds(self, request, queryset):
        return refund_operation_action(self, request, queryset, OPERATIONS["retry"])

    @admin.action(description="Mark selected refunds as settled outside the network…", permissions=("operate",))
    def mark_refunds_external(self, request, queryset):
        return refund_operation_action(self, request, queryset, OPERATIONS["mark-external"])

    @admin.action(description="Cancel selected refunds (before money moved)…", permissions=("operate",))
    def cancel_refunds(self, request, queryset):
        return refund_operation_action(self, request, queryset, OPERATIONS["cancel"])

    @admin.action(description="Resolve open errors of selected refunds…", permissions=("operate",))
    def resolve_refund_errors(self, request, queryset):
        return refund_operation_action(self, request, queryset, OPERATIONS["resolve-errors"])

    @admin.action(description="Retry forwarding selected refunds to their platform…", permissions=("operate",))
    def retry_forwarding(self, request, queryset):
        return refund_operation_action(self, request, queryset, OPERATIONS["retry-forwarding"])

    @admin.action(description="Move the money of selected refunds without their platform…", permissions=("operate",))
    def move_money_without_platform(self, request, queryset):
        return refund_operation_action(self, request, queryset, OPERATIONS["move-money-without-platform"])

    # --- pages ---

    def get_urls(self):
        def view(function, **kwargs):
            return self.admin_site.admin_view(partial(function, self, **kwargs))

        one_refund_operations = [
            path(
                f"<path:object_id>/{operation.name}/",
                view(refund_operation_view, operation_name=operation.name),
                name=f"refunds_refund_{operation.name.replace('-', '_')}",
            )
            for operation in OPERATIONS.values()
            if operation.name != "resolve-errors"
        ]
        return [
            path("failed/", view(failed_refunds_view), name="refunds_refund_failed"),
            path("export.csv", view(export_csv_view), name="refunds_refund_export"),
            path("record-notice/", view(record_notice_view), name="refunds_refund_record_notice"),
            path(
                "<path:object_id>/change-reason/",
                view(refund_reason_view),
                name="refunds_refund_change_reason",
            ),
            path(
                "<path:object_id>/resolve-errors/",
                view(refund_resolve_errors_view),
                name="refunds_refund_resolve_errors",
            ),
            *one_refund_operations,
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        current = request.GET.get(TRIAGE_PARAMETER, "")
        query = request.GET.copy()
        query.pop("p", None)
        query.pop("e", None)
        tabs = [
            ("All refunds", ""),
            ("Failed refunds", TRIAGE_FAILED),
            ("Stuck in processing", TRIAGE_STUCK),
        ]
        titles = {
            TRIAGE_FAILED: "Failed refunds: oldest first",
            TRIAGE_STUCK: "Refunds stuck in processing",
        }
        context = {
            **({"title": titles[current]} if current in titles else {}),
            "triage_tabs": [
                {
                    "label": label,
                    "href": changelist_url(self, **({TRIAGE_PARAMETER: value} if value else {})),
                    "active": value == current,
                }
                for label, value in tabs
            ],
            "triage_active": current,
            "export_url": reverse("admin:refunds_refund_export", current_app=self.admin_site.name)
            + (f"?{query.urlencode()}" if query else ""),
            "notice_url": reverse("admin:refunds_refund_record_notice", current_app=self.admin_site.name)
            if self.has_operate_permission(request)
            else None,
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        context = dict(extra_context or {})
        refund = self.get_object(request, unquote(object_id))
        if refund is not None:
            context.update(
                refund_story_context(self, request, refund, can_operate=self.has_operate_permission(request))
            )
        return super().change_view(request, object_id, form_url, extra_context=context)

    def history_view(self, request, object_id, extra_context=None):
        """HISTORY shows the refund's one timeline (its events, admin actions and platform events),
        the same list as its page, instead of Django's LogEntry-only history."""
        refund = self.get_object(request, unquote(object_id))
        if refund is None:
            return super().history_view(request, object_id, extra_context)
        if not self.has_view_or_change_permission(request, refund):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": f"History of refund {refund.pk}",
            "subtitle": None,
            "opts": self.model._meta,
            "object": refund,
            "timeline": refund_timeline(refund),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/refunds/refund/object_history.html", context)
