"""Operator views of channels, orders and refunds: the operators' whole day happens here.

Orders, bags and their lines mirror what the channel and the platforms said; refunds and their
history are written by refunds.services so that every status change has a RefundEvent. The admin
therefore shows those rows, lets operators edit only what is descriptive (a refund's reason) or
configuration (channels and their users), and repairs refunds through actions that each confirm
first and call one service per refund (pages in refunds.admin_views, reads in
refunds.selectors_admin). The admin index leads with the triage counts and a 30-day chart
(RefundAdmin.index_context, which violet_refunds.admin.VioletAdminSite puts on its index page).
"""

from functools import partial

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth.hashers import identify_hasher
from django.db import models
from django.db.models import Exists, OuterRef, Prefetch
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django.utils.timesince import timesince

from payments.models import ShopperRefund, Transfer, TransferReversal
from refunds import admin_views
from refunds.models import (
    App,
    AppMembership,
    Bag,
    Order,
    OrderSku,
    Refund,
    RefundError,
    RefundEvent,
    RefundSku,
)
from refunds.selectors_admin import refund_step_outcomes, refunds_needing_attention, refunds_stuck
from violet_refunds.admin import (
    ReadOnlyAdminMixin,
    ReadOnlyTabularInline,
    admin_link,
    can_operate,
    money_display,
    status_badge,
)
from violet_refunds.money import format_amount

# --- Channels ---


class AppMembershipInline(admin.TabularInline):
    model = AppMembership
    extra = 0
    fields = ("user", "role", "date_created")
    readonly_fields = ("date_created",)
    raw_id_fields = ("user",)
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")


@admin.register(App)
class AppAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "stripe_account_id", "commission_rate", "date_created")
    search_fields = ("id__exact", "name", "stripe_account_id__exact")
    list_filter = ("date_created",)
    # The secret hash never appears in a form: it is issued by a service and only its presence is
    # shown. Outbound webhook endpoints (and their secrets) are under Channel notifications.
    fields = (
        "name",
        "api_secret",
        "stripe_account_id",
        "commission_rate",
        "allowed_redirect_hosts",
        "date_created",
        "date_last_modified",
    )
    readonly_fields = ("api_secret", "date_created", "date_last_modified")
    inlines = (AppMembershipInline,)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="API secret")
    def api_secret(self, app):
        if not app.secret_hash:
            return "Not set: the app cannot call the API until a secret is issued."
        try:
            algorithm = identify_hasher(app.secret_hash).algorithm
        except ValueError:
            return "Set (unrecognised hash format)"
        return f"Set (only a {algorithm} hash is stored)"


@admin.register(AppMembership)
class AppMembershipAdmin(admin.ModelAdmin):
    list_display = ("id", "app", "user", "role", "date_created")
    list_filter = ("role",)
    search_fields = ("app__name", "user__username", "user__email")
    list_select_related = ("app", "user")
    raw_id_fields = ("app", "user")


# --- Orders, bags and their lines (read-only mirrors of the channel's and platforms' data) ---


class BagOfOrderInline(ReadOnlyTabularInline):
    model = Bag
    fields = ("external_id", "merchant", "status", "financial_status", "total_display", "placed_at")
    readonly_fields = fields
    list_select_related = ("merchant",)
    total_display = money_display("total", "currency", "Total")


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "app_column",
        "app_order_id",
        "status",
        "total_display",
        "customer_email",
        "date_created",
    )
    list_filter = ("status", "currency", "date_created")
    search_fields = (
        "id__exact",
        "app_order_id__exact",
        "customer_email",
        "bags__external_id__exact",
        "payment_transaction__gateway_transaction_id__exact",
    )
    list_select_related = ("app",)
    raw_id_fields = ("app",)
    readonly_fields = ("total_display", "date_created", "date_last_modified")
    inlines = (BagOfOrderInline,)

    total_display = money_display("total", "currency", "Total")

    @admin.display(description="App", ordering="app__name")
    def app_column(self, order):
        return admin_link(order.app)


class OrderSkuOfBagInline(ReadOnlyTabularInline):
    model = OrderSku
    fields = (
        "external_id",
        "sku_id",
        "name",
        "quantity",
        "quantity_refunded",
        "price_display",
        "line_price_display",
    )
    readonly_fields = fields
    list_select_related = ("bag",)
    price_display = money_display("price", "bag.currency", "Price")
    line_price_display = money_display("line_price", "bag.currency", "Line price")


class RefundOfBagInline(ReadOnlyTabularInline):
    model = Refund
    fields = ("external_id", "status", "amount_display", "source", "reason_code", "date_created")
    readonly_fields = fields
    amount_display = money_display("amount", "refund_currency", "Amount")


class TransferOfBagInline(ReadOnlyTabularInline):
    model = Transfer
    fields = (
        "recipient",
        "gateway_transfer_id",
        "destination_account_id",
        "amount_display",
        "reversed_display",
        "status",
    )
    readonly_fields = fields
    amount_display = money_display("amount", "currency", "Amount")
    reversed_display = money_display("reversed_amount", "currency", "Reversed")


@admin.register(Bag)
class BagAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "external_id",
        "order_column",
        "merchant_column",
        "platform",
        "status",
        "financial_status",
        "total_display",
        "placed_at",
    )
    list_filter = ("status", "financial_status", "fulfillment_status", "merchant__platform", "placed_at")
    search_fields = (
        "id__exact",
        "external_id__exact",
        "order__id__exact",
        "order__app_order_id__exact",
        "merchant__name",
    )
    list_select_related = ("order", "merchant")
    raw_id_fields = ("order", "merchant")
    readonly_fields = (
        "sub_total_display",
        "shipping_total_display",
        "tax_total_display",
        "discount_total_display",
        "total_display",
        "date_created",
        "date_last_modified",
    )
    inlines = (OrderSkuOfBagInline, RefundOfBagInline, TransferOfBagInline)

    sub_total_display = money_display("sub_total", "currency", "Sub total")
    shipping_total_display = money_display("shipping_total", "currency", "Shipping total")
    tax_total_display = money_display("tax_total", "currency", "Tax total")
    discount_total_display = money_display("discount_total", "currency", "Discount total")
    total_display = money_display("total", "currency", "Total")

    @admin.display(description="Order", ordering="order_id")
    def order_column(self, bag):
        return admin_link(bag.order)

    @admin.display(description="Merchant", ordering="merchant__name")
    def merchant_column(self, bag):
        return admin_link(bag.merchant)

    @admin.display(description="Platform", ordering="merchant__platform")
    def platform(self, bag):
        return bag.merchant.get_platform_display()


@admin.register(OrderSku)
class OrderSkuAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "name",
        "sku_id",
        "external_id",
        "bag",
        "quantity",
        "quantity_refunded",
        "price_display",
        "line_price_display",
    )
    list_filter = ("bag__merchant__platform", "date_created")
    search_fields = ("id__exact", "external_id__exact", "sku_id__exact", "name", "bag__external_id__exact")
    list_select_related = ("bag",)
    raw_id_fields = ("bag",)
    readonly_fields = ("price_display", "line_price_display", "date_created", "date_last_modified")

    price_display = money_display("price", "bag.currency", "Price")
    line_price_display = money_display("line_price", "bag.currency", "Line price")


# --- Refunds and their history ---


class RefundSkuInline(ReadOnlyTabularInline):
    model = RefundSku
    fields = ("order_sku", "external_id", "quantity_refunded", "amount_display")
    readonly_fields = fields
    list_select_related = ("order_sku", "refund")
    amount_display = money_display("amount_refunded", "refund.refund_currency", "Amount refunded")


class RefundErrorInline(ReadOnlyTabularInline):
    """Errors stay read-only rows; operators resolve them through the resolve page (a service call
    with an audit event), linked from each open error."""

    model = RefundError
    fields = (
        "date_created",
        "step",
        "error_code",
        "gateway_code",
        "error_message",
        "resolved",
        "date_resolved",
        "resolved_by",
    )
    readonly_fields = fields
    list_select_related = ("resolved_by",)

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return (*fields, "resolve") if can_operate(request.user) else fields

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "resolve")

    @admin.display(description="Resolve")
    def resolve(self, error):
        if error.resolved or not error.pk:
            return "-"
        url = reverse("admin:refunds_refund_resolve_errors", args=[error.refund_id])
        return format_html('<a href="{}?error={}">Resolve…</a>', url, error.pk)


class RefundEventInline(ReadOnlyTabularInline):
    model = RefundEvent
    fields = ("date_created", "kind", "from_status", "to_status", "actor", "message")
    readonly_fields = fields


class TransferReversalInline(ReadOnlyTabularInline):
    model = TransferReversal
    fk_name = "refund"
    fields = (
        "transfer",
        "gateway_reversal_id",
        "amount_display",
        "status",
        "error_code",
        "error_message",
        "date_created",
    )
    readonly_fields = fields
    list_select_related = ("transfer",)
    amount_display = money_display("amount", "currency", "Amount")


class ShopperRefundInline(ReadOnlyTabularInline):
    model = ShopperRefund
    fields = (
        "gateway_refund_id",
        "amount_display",
        "status",
        "failure_reason",
        "error_code",
        "error_message",
        "date_created",
    )
    readonly_fields = fields
    amount_display = money_display("amount", "currency", "Amount")


class NeedsAttentionFilter(admin.SimpleListFilter):
    """The operators' first screen: ?triage=failed lists what needs a person, oldest first."""

    title = "needs attention"
    parameter_name = admin_views.TRIAGE_PARAMETER

    def lookups(self, request, model_admin):
        return (
            (admin_views.TRIAGE_FAILED, "Failed refunds (failed, partially completed, stuck)"),
            (admin_views.TRIAGE_STUCK, "Stuck in processing"),
        )

    def queryset(self, request, queryset):
        if self.value() == admin_views.TRIAGE_FAILED:
            return refunds_needing_attention(queryset)
        if self.value() == admin_views.TRIAGE_STUCK:
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


def step_badges(refund: Refund):
    """Merchant / Channel / Shopper, each marked with what its money did (title: the details)."""
    return format_html_join(
        "",
        '<span class="refund-step refund-step--{}" title="{}">{} {}</span>',
        (
            (
                outcome.state,
                admin_views.step_title(outcome),
                admin_views.STEP_SHORT_NAMES[outcome.step],
                admin_views.STEP_MARKS[outcome.state],
            )
            for outcome in refund_step_outcomes(refund)
        ),
    )


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
    search_fields = (
        "id__exact",
        "bag__order__id__exact",
        "bag__external_id__exact",
        "external_id__exact",
        "shopper_refund__gateway_refund_id__exact",
        "transfer_reversals__gateway_reversal_id__exact",
    )
    search_help_text = "Refund id, order id, platform order id, platform refund id, or a Stripe re_/trr_ id."
    list_select_related = ("bag__merchant", "bag__order__app", "shopper_refund")
    list_per_page = 50
    # Without a filter the total is the whole table; a second COUNT(*) of it on every page load
    # buys nothing an operator needs.
    show_full_result_count = False
    # Per-option counts ("Show counts") would scan the whole table once per filter option.
    show_facets = admin.ShowFacets.NEVER
    raw_id_fields = ("bag", "inbound_event", "created_by")
    actions = ("retry_refunds", "mark_refunds_external", "cancel_refunds", "resolve_refund_errors")
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
                "fields": (
                    "attempts",
                    "processing_started_at",
                    "next_attempt_at",
                    "date_completed",
                    "date_created",
                    "date_last_modified",
                )
            },
        ),
    )
    # Everything except `reason_code` and `reason`: money and status change only through services.
    readonly_fields = tuple(
        name for _title, options in fieldsets for name in options["fields"] if name not in {"reason_code", "reason"}
    )
    inlines = (
        RefundSkuInline,
        TransferReversalInline,
        ShopperRefundInline,
        RefundErrorInline,
        RefundEventInline,
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

    def get_ordering(self, request):
        # The triage lists work the backlog oldest first; everything else shows the newest first.
        if request.GET.get(admin_views.TRIAGE_PARAMETER):
            return ("date_created", "pk")
        return super().get_ordering(request)

    def has_add_permission(self, request):
        # Refunds enter through refund_record (the notice page below for operators).
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_operate_permission(self, request):
        """May retry, mark external, cancel, resolve errors and record notices."""
        return can_operate(request.user)

    def index_context(self, request) -> dict:
        """The admin index leads with refund triage (VioletAdminSite.index asks every model admin)."""
        return admin_views.index_triage_context(self, request)

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
        return admin_views.refund_operation_action(self, request, queryset, admin_views.OPERATIONS["retry"])

    @admin.action(description="Mark selected refunds as settled outside the network…", permissions=("operate",))
    def mark_refunds_external(self, request, queryset):
        return admin_views.refund_operation_action(self, request, queryset, admin_views.OPERATIONS["mark-external"])

    @admin.action(description="Cancel selected refunds (before money moved)…", permissions=("operate",))
    def cancel_refunds(self, request, queryset):
        return admin_views.refund_operation_action(self, request, queryset, admin_views.OPERATIONS["cancel"])

    @admin.action(description="Resolve open errors of selected refunds…", permissions=("operate",))
    def resolve_refund_errors(self, request, queryset):
        return admin_views.refund_operation_action(self, request, queryset, admin_views.OPERATIONS["resolve-errors"])

    # --- pages ---

    def get_urls(self):
        def view(function, **kwargs):
            return self.admin_site.admin_view(partial(function, self, **kwargs))

        one_refund_operations = [
            path(
                f"<path:object_id>/{operation.name}/",
                view(admin_views.refund_operation_view, operation_name=operation.name),
                name=f"refunds_refund_{operation.name.replace('-', '_')}",
            )
            for operation in admin_views.OPERATIONS.values()
            if operation.name != "resolve-errors"
        ]
        return [
            path("failed/", view(admin_views.failed_refunds_view), name="refunds_refund_failed"),
            path("export.csv", view(admin_views.export_csv_view), name="refunds_refund_export"),
            path("record-notice/", view(admin_views.record_notice_view), name="refunds_refund_record_notice"),
            path(
                "<path:object_id>/resolve-errors/",
                view(admin_views.refund_resolve_errors_view),
                name="refunds_refund_resolve_errors",
            ),
            *one_refund_operations,
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        current = request.GET.get(admin_views.TRIAGE_PARAMETER, "")
        query = request.GET.copy()
        query.pop("p", None)
        query.pop("e", None)
        tabs = [
            ("All refunds", ""),
            ("Failed refunds", admin_views.TRIAGE_FAILED),
            ("Stuck in processing", admin_views.TRIAGE_STUCK),
        ]
        titles = {
            admin_views.TRIAGE_FAILED: "Failed refunds: oldest first",
            admin_views.TRIAGE_STUCK: "Refunds stuck in processing",
        }
        context = {
            **({"title": titles[current]} if current in titles else {}),
            "triage_tabs": [
                {
                    "label": label,
                    "href": admin_views.changelist_url(
                        self, **({admin_views.TRIAGE_PARAMETER: value} if value else {})
                    ),
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
            context["triage_panel"] = {
                "status": status_badge(refund.status, refund.get_status_display()),
                "amount": format_amount(refund.amount, refund.refund_currency),
                "steps": [
                    {
                        "outcome": outcome,
                        "words": admin_views.STEP_STATE_WORDS[outcome.state],
                        "mark": admin_views.STEP_MARKS[outcome.state],
                        "amount": format_amount(outcome.amount, outcome.currency)
                        if outcome.amount is not None
                        else "-",
                    }
                    for outcome in refund_step_outcomes(refund)
                ],
                "open_errors": len(refund.open_errors_newest_first),
                "latest_error": refund.open_errors_newest_first[0] if refund.open_errors_newest_first else None,
                "bag_url": reverse("admin:refunds_bag_change", args=[refund.bag_id], current_app=self.admin_site.name),
            }
            if self.has_operate_permission(request):
                context["refund_operations"] = [
                    {
                        "title": operation.title,
                        "url": reverse(
                            f"admin:refunds_refund_{operation.name.replace('-', '_')}",
                            args=[refund.pk],
                            current_app=self.admin_site.name,
                        ),
                        "destructive": operation.destructive,
                    }
                    for operation in admin_views.operations_worth_offering(
                        refund,
                        refund_step_outcomes(refund),
                        open_errors=len(refund.open_errors_newest_first),
                    )
                ]
        return super().change_view(request, object_id, form_url, extra_context=context)


@admin.register(RefundSku)
class RefundSkuAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "refund", "order_sku", "quantity_refunded", "amount_display", "date_created")
    search_fields = ("id__exact", "refund__id__exact", "external_id__exact", "order_sku__sku_id__exact")
    list_filter = ("date_created",)
    list_select_related = ("refund", "order_sku")
    raw_id_fields = ("refund", "order_sku")
    readonly_fields = ("amount_display",)

    amount_display = money_display("amount_refunded", "refund.refund_currency", "Amount refunded")


@admin.register(RefundError)
class RefundErrorAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Errors are resolved through a service (with an audit event), not by ticking a box here."""

    list_display = (
        "id",
        "refund",
        "refund_status",
        "step",
        "error_code",
        "gateway_code",
        "short_message",
        "resolved",
        "date_created",
    )
    list_filter = ("resolved", "step", "gateway_code", "refund__status", "date_created")
    search_fields = ("id__exact", "refund__id__exact", "gateway_code__exact", "error_message")
    list_select_related = ("refund",)
    raw_id_fields = ("refund", "resolved_by")
    show_full_result_count = False
    actions = ("resolve_selected_errors",)

    def has_operate_permission(self, request):
        return can_operate(request.user)

    @admin.display(description="Message")
    def short_message(self, error):
        return error.error_message[:80]

    @admin.display(description="Refund status", ordering="refund__status")
    def refund_status(self, error):
        return status_badge(error.refund.status, error.refund.get_status_display())

    @admin.action(description="Resolve selected errors…", permissions=("operate",))
    def resolve_selected_errors(self, request, queryset):
        return admin_views.error_resolve_action(self, request, queryset)


@admin.register(RefundEvent)
class RefundEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The append-only audit trail: nobody adds, edits or deletes an event by hand."""

    list_display = ("id", "refund", "kind", "from_status", "to_status", "actor", "date_created")
    list_filter = ("kind", "date_created")
    search_fields = ("id__exact", "refund__id__exact", "actor", "message")
    list_select_related = ("refund",)
    raw_id_fields = ("refund", "user")
