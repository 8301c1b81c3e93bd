"""Admin building blocks every app's admin stands on, and the project's AdminSite.

Each app's admin module (payments, platforms, refunds, notifications, stripe_sandbox) imports its
helpers from here and never from another app's admin: read-only admins and inlines for rows only
services (and Stripe) write, money columns in the one format of violet_refunds.money, links to
change pages, status badges, and who may operate (repair refunds, resend webhooks, ...).

`VioletAdminSite` is installed as the default site by violet_refunds.apps.VioletAdminConfig (in
INSTALLED_APPS instead of "django.contrib.admin"). Its index adds what registered model admins offer
through `index_context(request)`: the refunds admin leads the page with its triage counts and chart.
Every page's header carries a SANDBOX / TEST / LIVE badge: which money the admin moves, from the
prefix of STRIPE_API_KEY (templates/admin/base_site.html).
"""

from __future__ import annotations

from functools import reduce

from django.conf import settings
from django.contrib import admin
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from violet_refunds import deployment
from violet_refunds.money import format_amount

# Until refunds.models grows finer permissions, acting on refunds (and on what operators repair
# around them, such as webhook deliveries) is what changing a refund means.
OPERATE_PERMISSION = "refunds.change_refund"


def can_operate(user) -> bool:
    """May retry, mark external, cancel, resolve errors, record notices, resend webhooks."""
    return bool(user.is_active and user.is_staff and user.has_perm(OPERATE_PERMISSION))


def money_display(amount_field: str, currency_path: str, description: str):
    """A list/readonly column showing `amount_field` in major units with its currency.

    `currency_path` may follow relations with dots ("bag.currency"); select them in the queryset.
    """

    @admin.display(description=description, ordering=amount_field)
    def display(_model_admin, obj):
        currency = reduce(getattr, currency_path.split("."), obj)
        return format_amount(getattr(obj, amount_field), currency)

    return display


def admin_link(obj):
    """A link to `obj`'s admin change page (plain text when its model is not registered)."""
    if obj is None:
        return "-"
    opts = obj._meta
    try:
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return str(obj)
    return format_html('<a href="{}">{}</a>', url, obj)


def status_badge(status: str, label: str | None = None):
    """A status as a coloured badge (the colours live in admin/refunds/includes/triage_styles.html)."""
    return format_html('<span class="refund-status refund-status--{}">{}</span>', status, label or status)


# Where the Stripe Dashboard shows an object, by its id's prefix. Transfer reversals (trr_) have no
# page of their own: the dashboard lists them on their transfer's page, so callers link the transfer.
# ⚠️ Paths as the Stripe Dashboard serves them today (https://docs.stripe.com/dashboard/basics);
# test-mode objects live under /test/.
_DASHBOARD_PATHS = (
    ("re_", "refunds"),
    ("pyr_", "refunds"),
    ("tr_", "connect/transfers"),
    ("ch_", "payments"),
    ("py_", "payments"),
    ("pi_", "payments"),
    ("du_", "disputes"),
    ("dp_", "disputes"),
    ("acct_", "connect/accounts"),
)
_DASHBOARD_BASES = {
    deployment.TEST: "https://dashboard.stripe.com/test/",
    deployment.LIVE: "https://dashboard.stripe.com/",
}


def stripe_dashboard_url(object_id: str, *, mode: str | None = None) -> str:
    """The Stripe Dashboard page of `object_id` for this deployment's key (TEST or LIVE); "" when
    there is no such page (the sandbox, an unknown key, an id of no known prefix)."""
    base = _DASHBOARD_BASES.get(mode or deployment.stripe_mode(settings.STRIPE_API_KEY))
    if not base or not object_id:
        return ""
    for prefix, path in _DASHBOARD_PATHS:
        if object_id.startswith(prefix):
            return f"{base}{path}/{object_id}"
    return ""


def stripe_id_link(object_id: str, *, dashboard_id: str = ""):
    """A Stripe id, linked to its Dashboard page (or to `dashboard_id`'s, e.g. a reversal's transfer)
    when this deployment has one; plain text otherwise."""
    if not object_id:
        return "-"
    url = stripe_dashboard_url(dashboard_id or object_id)
    if not url:
        return format_html('<code class="stripe-id">{}</code>', object_id)
    return format_html(
        '<a class="stripe-id" href="{}" target="_blank" rel="noopener noreferrer" '
        'title="Open in the Stripe Dashboard"><code>{}</code></a>',
        url,
        object_id,
    )


class ReadOnlyAdminMixin:
    """View-only admin: rows are written by services (and Stripe), never by a form."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyTabularInline(ReadOnlyAdminMixin, admin.TabularInline):
    """History shown under its parent: no empty forms, no delete boxes, a link to each row."""

    extra = 0
    can_delete = False
    show_change_link = True
    # Columns to select with the rows, so each readonly foreign key costs no extra query.
    list_select_related: tuple[str, ...] = ()

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if self.list_select_related:
            queryset = queryset.select_related(*self.list_select_related)
        return queryset


STRIPE_MODE_TITLES = {
    deployment.SANDBOX: "No Stripe key: the built-in Stripe sandbox answers, no money moves.",
    deployment.TEST: "Stripe test mode (test key): test money only.",
    deployment.LIVE: "Stripe live mode (live key): real money moves.",
    deployment.UNKNOWN: "STRIPE_API_KEY has no known prefix (sk_test_, rk_test_, sk_live_, rk_live_).",
}


# Infrastructure, not refunds: shown last, in a collapsed "System" section of the index.
SYSTEM_APP_LABELS = frozenset({"stripe_sandbox", "axes", "auth"})


class VioletAdminSite(admin.AdminSite):
    """Django's admin site; its index also carries what registered model admins put there, and every
    page says which money it moves (the Stripe mode badge)."""

    site_header = "Violet refunds back office"
    site_title = "Violet refunds"
    index_title = "Refunds at a glance"

    def get_app_list(self, request, app_label=None):
        # The business apps first, the infrastructure ones after them (also in the sidebar).
        apps = super().get_app_list(request, app_label)
        return sorted(apps, key=lambda app: app["app_label"] in SYSTEM_APP_LABELS)

    def each_context(self, request):
        context = super().each_context(request)
        mode = deployment.stripe_mode(settings.STRIPE_API_KEY)
        context.update(stripe_mode=mode, stripe_mode_title=STRIPE_MODE_TITLES[mode])
        return context

    def index(self, request, extra_context=None):
        context: dict = {}
        for model_admin in self._registry.values():
            index_context = getattr(model_admin, "index_context", None)
            if index_context is not None:
                context.update(index_context(request))
        response = super().index(request, extra_context={**context, **(extra_context or {})})
        data = getattr(response, "context_data", None)  # a TemplateResponse, not rendered yet
        if data is not None:
            app_list = data["app_list"]
            data["app_list"] = [app for app in app_list if app["app_label"] not in SYSTEM_APP_LABELS]
            data["system_app_list"] = [app for app in app_list if app["app_label"] in SYSTEM_APP_LABELS]
        return response
