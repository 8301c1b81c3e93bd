"""Operator views of merchants, their store connections and raw inbound platform events.

Store credentials and webhook secrets are never shown: the connection page says which values are
stored and offers write-only fields to replace them. Inbound events are read-only, with the raw
payload pretty-printed, and can be replayed through the same processing service. The triage filter
separates events that need an operator (FAILED) from those retried automatically (RETRYING) and
those awaiting their order (AWAITING_ORDER: processed again once the bag exists).
"""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join

from platforms import services
from platforms.adapters.base import PayloadMalformed, PlatformDataInvalid
from platforms.adapters.wix import WixAdapter
from platforms.models import InboundEvent, Merchant, MerchantMembership, Platform, StoreConnection
from violet_refunds.admin import admin_link
from violet_refunds.crypto import CredentialsUnreadable
from violet_refunds.money import format_amount

_SECRET_FIELDS = ("credentials", "webhook_secret")


class MerchantMembershipInline(admin.TabularInline):
    model = MerchantMembership
    extra = 0
    fields = ("user", "role", "date_created")
    readonly_fields = ("date_created",)
    raw_id_fields = ("user",)


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ("name", "platform", "sfcc_refund_mode", "currency", "connection_status", "date_created")
    list_filter = ("platform", "sfcc_refund_mode")
    search_fields = ("name", "store_url", "stripe_account_id")
    inlines = (MerchantMembershipInline,)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def get_queryset(self, request):
        # The connection's secrets are decrypted on load; a list of merchants needs none of them.
        return (
            super()
            .get_queryset(request)
            .select_related("connection")
            .defer(*(f"connection__{name}" for name in _SECRET_FIELDS))
        )

    @admin.display(description="Store connection")
    def connection_status(self, merchant):
        connection = getattr(merchant, "connection", None)
        return connection.get_status_display() if connection else "-"


class StoreConnectionForm(forms.ModelForm):
    """Secrets are write-only: empty fields keep what is stored."""

    replace_webhook_secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text="Leave empty to keep the stored secret. Shopify app secret, Ecwid client secret, "
        "or the Wix public key (PEM).",
    )
    replace_credentials = forms.CharField(
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text='Leave empty to keep the stored credentials. A JSON object, e.g. {"api_key": "…", '
        '"account_id": "…", "site_id": "…"}.',
    )

    class Meta:
        model = StoreConnection
        fields = ("merchant", "status")

    def clean_replace_credentials(self):
        raw = self.cleaned_data["replace_credentials"]
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise forms.ValidationError("Enter a JSON object.") from exc
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise forms.ValidationError("Enter a JSON object whose values are strings.")
        return value


@admin.register(StoreConnection)
class StoreConnectionAdmin(admin.ModelAdmin):
    form = StoreConnectionForm
    list_display = ("merchant", "platform", "status", "last_verified_at", "last_polled_at", "has_error")
    list_filter = ("status", "merchant__platform")
    search_fields = ("merchant__name", "public_id")
    list_select_related = ("merchant",)
    readonly_fields = (
        "public_id",
        "webhook_url",
        "stored_credentials",
        "stored_webhook_secret",
        "last_verified_at",
        "last_polled_at",
        "last_error",
        "date_created",
        "date_last_modified",
    )
    fieldsets = (
        (None, {"fields": ("merchant", "status", "public_id", "webhook_url")}),
        (
            "Secrets (never shown; stored encrypted)",
            {
                "fields": (
                    "stored_credentials",
                    "replace_credentials",
                    "stored_webhook_secret",
                    "replace_webhook_secret",
                )
            },
        ),
        (
            "Health",
            {"fields": ("last_verified_at", "last_polled_at", "last_error", "date_created", "date_last_modified")},
        ),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).defer(*_SECRET_FIELDS)

    def has_delete_permission(self, request, obj=None):
        return False  # inbound events keep a protected reference to their connection

    @admin.display(description="Platform", ordering="merchant__platform")
    def platform(self, connection):
        return connection.merchant.get_platform_display()

    @admin.display(description="Error", boolean=True)
    def has_error(self, connection):
        return bool(connection.last_error)

    @admin.display(description="Webhook URL")
    def webhook_url(self, connection):
        if not connection.pk or connection.merchant.platform == Platform.SFCC:
            return "- (polled, no webhooks)" if connection.pk else "-"
        try:
            return reverse(
                "platforms:webhook",
                kwargs={"platform": connection.merchant.platform.lower(), "public_id": str(connection.public_id)},
            )
        except NoReverseMatch:
            return "-"

    @admin.display(description="Stored credentials")
    def stored_credentials(self, connection):
        try:
            stored = connection.credentials
        except CredentialsUnreadable:
            return "Unreadable with the configured FIELD_ENCRYPTION_KEY."
        if not stored:
            return "None stored."
        return f"{len(stored)} value(s) stored: {', '.join(sorted(stored))}."

    @admin.display(description="Stored webhook secret")
    def stored_webhook_secret(self, connection):
        try:
            return "Set." if connection.webhook_secret else "Not set."
        except CredentialsUnreadable:
            return "Unreadable with the configured FIELD_ENCRYPTION_KEY."

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        new_secret = form.cleaned_data.get("replace_webhook_secret")
        new_credentials = form.cleaned_data.get("replace_credentials")
        if new_secret or new_credentials:
            services.store_connection_replace_secrets(
                connection=obj, webhook_secret=new_secret or None, credentials=new_credentials
            )


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False)
    except ValueError:
        return text


class TriageFilter(admin.SimpleListFilter):
    """Who acts next: an operator (FAILED: a permanent error, or transient errors past the retry
    horizon), or nobody yet (RETRYING: retried automatically); an overdue retry means no worker or
    no beat is taking them (see docs/operations.md)."""

    title = "triage"
    parameter_name = "triage"

    def lookups(self, request, model_admin):
        return (
            ("operator", "Needs an operator (failed)"),
            ("awaiting", "Awaiting their order (not yet a bag)"),
            ("retrying", "Retrying automatically"),
            ("overdue", "Retry overdue (check workers and beat)"),
        )

    def queryset(self, request, queryset):
        if self.value() == "operator":
            return queryset.filter(status=InboundEvent.Status.FAILED)
        if self.value() == "awaiting":
            return queryset.filter(status=InboundEvent.Status.AWAITING_ORDER)
        if self.value() == "retrying":
            return queryset.filter(status=InboundEvent.Status.RETRYING)
        if self.value() == "overdue":
            cutoff = timezone.now() - services.event_requeue_after()
            return queryset.filter(status=InboundEvent.Status.RETRYING, next_attempt_at__lt=cutoff)
        return queryset


@admin.register(InboundEvent)
class InboundEventAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "platform",
        "topic",
        "event_id",
        "status",
        "next_retry",
        "merchant",
        "attempts",
        "date_created",
    )
    list_filter = (TriageFilter, "status", "platform", "topic", "date_created")
    search_fields = ("event_id", "order_id")
    list_select_related = ("connection__merchant",)
    date_hierarchy = "date_created"
    actions = ("replay_selected_events",)
    fieldsets = (
        (None, {"fields": ("platform", "connection", "event_id", "topic", "status", "attempts", "processed_at")}),
        ("Automatic retry", {"fields": ("next_attempt_at", "retrying_since", "retries", "requeued_at")}),
        ("Awaiting its order", {"fields": ("order_id", "awaiting_since")}),
        ("Outcome", {"fields": ("outcome", "replay_advice", "linked_refunds")}),
        # What a developer reads; the outcome above says the cause in words.
        ("Technical details", {"classes": ("collapse",), "fields": ("error", "traceback")}),
        ("Delivery", {"fields": ("date_created", "remote_ip", "headers_pretty", "body_pretty", "decoded_payload")}),
    )
    readonly_fields = (
        "platform",
        "connection",
        "event_id",
        "topic",
        "status",
        "attempts",
        "processed_at",
        "next_attempt_at",
        "retrying_since",
        "retries",
        "requeued_at",
        "order_id",
        "awaiting_since",
        "outcome",
        "replay_advice",
        "linked_refunds",
        "error",
        "traceback",
        "date_created",
        "remote_ip",
        "headers_pretty",
        "body_pretty",
        "decoded_payload",
    )

    def get_queryset(self, request):
        return super().get_queryset(request).defer(*(f"connection__{name}" for name in _SECRET_FIELDS))

    def has_add_permission(self, request):
        return False  # events arrive through the webhook receiver and the poller only

    def has_delete_permission(self, request, obj=None):
        return False  # the raw record of what a platform said is kept

    @admin.display(description="Next retry", ordering="next_attempt_at")
    def next_retry(self, event):
        """RETRYING: when the next automatic attempt is due (and which failure in a row this is)."""
        if event.status != InboundEvent.Status.RETRYING or event.next_attempt_at is None:
            return "-"
        due = date_format(timezone.localtime(event.next_attempt_at), "DATETIME_FORMAT")
        return f"{due} (after {event.retries} failure(s))"

    @admin.display(description="Merchant", ordering="connection__merchant__name")
    def merchant(self, event):
        return event.connection.merchant if event.connection_id else "-"

    @admin.display(description="Headers")
    def headers_pretty(self, event):
        return format_html("<pre>{}</pre>", json.dumps(event.headers, indent=2, sort_keys=True))

    @admin.display(description="Raw body (as received)")
    def body_pretty(self, event):
        return format_html("<pre style='white-space: pre-wrap'>{}</pre>", _pretty(event.body))

    @admin.display(description="Decoded payload")
    def decoded_payload(self, event):
        if event.platform != Platform.WIX:
            return "- (the raw body is the payload)"
        try:
            decoded = WixAdapter().decoded_event(event.body)
        except (PlatformDataInvalid, PayloadMalformed) as exc:
            return f"Cannot decode: {exc}"
        return format_html("<pre>{}</pre>", json.dumps(decoded, indent=2, sort_keys=True, default=str))

    @admin.display(description="Replay")
    def replay_advice(self, event):
        if event.status not in (InboundEvent.Status.FAILED, InboundEvent.Status.RETRYING, InboundEvent.Status.IGNORED):
            return "Nothing to replay: the event is settled."
        url = reverse("admin:platforms_inboundevent_replay", args=[event.pk], current_app=self.admin_site.name)
        return format_html('<a class="button" id="replay-event" href="{}">Replay this event…</a>', url)

    @admin.display(description="Refunds recorded from this event")
    def linked_refunds(self, event):
        refunds = list(event.refunds.select_related("bag"))
        if not refunds:
            return "None."
        return format_html_join(
            "",
            "<div>{} {} ({}, external id {})</div>",
            ((admin_link(r), format_amount(r.amount, r.refund_currency), r.status, r.external_id) for r in refunds),
        )

    def get_urls(self):
        return [
            path(
                "<path:object_id>/replay/",
                self.admin_site.admin_view(self.replay_view),
                name="platforms_inboundevent_replay",
            ),
            *super().get_urls(),
        ]

    def replay_view(self, request, object_id):
        """Replay one event from its page, behind a confirmation saying what a replay can and cannot
        fix; the result names the event's new status and why."""
        event = self.get_object(request, unquote(object_id))
        if event is None:
            raise Http404("No inbound event with that id.")
        if not self.has_change_permission(request, event):
            raise PermissionDenied
        change_url = reverse("admin:platforms_inboundevent_change", args=[event.pk], current_app=self.admin_site.name)
        if request.method == "POST":
            services.events_replay([event])
            event.refresh_from_db()
            reason = event.error if event.status == InboundEvent.Status.FAILED and not event.outcome else event.outcome
            level = (
                messages.SUCCESS
                if event.status in (InboundEvent.Status.PROCESSED, InboundEvent.Status.IGNORED)
                else messages.WARNING
            )
            self.message_user(
                request, f"Event {event.pk} replayed: now {event.get_status_display()}. {reason}".strip(), level
            )
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Replay inbound event {event.pk}",
            "subtitle": None,
            "opts": self.model._meta,
            "original": event,
            "back_url": change_url,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/platforms/inboundevent/replay_confirm.html", context)

    @admin.action(description="Replay selected events", permissions=("change",))
    def replay_selected_events(self, request, queryset):
        counts = services.events_replay(queryset.order_by("date_created", "pk"))
        summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or "nothing"
        unsettled = counts.get(InboundEvent.Status.FAILED) or counts.get(InboundEvent.Status.RETRYING)
        level = messages.WARNING if unsettled else messages.SUCCESS
        self.message_user(request, f"Replayed {sum(counts.values())} event(s): {summary}.", level)
