"""Operator views of merchants, their store connections and raw inbound platform events.

Store credentials and webhook secrets are never shown: the connection page says which values are
stored and offers write-only fields to replace them. Inbound events are read-only, with the raw
payload pretty-printed, and can be replayed through the same processing service. The triage filter
separates events that need an operator (FAILED) from those retried automatically (RETRYING) and
those awaiting their order (AWAITING_ORDER: processed again once the bag exists).
"""

import json
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join

from platforms import selectors, services
from platforms.adapters.base import Delivery, PayloadMalformed, PlatformDataInvalid
from platforms.adapters.wix import WixAdapter
from platforms.clients.base import PlatformUnavailable
from platforms.models import (
    InboundEvent,
    Merchant,
    MerchantMembership,
    OmsConnection,
    OmsSystem,
    Platform,
    PrivacyRequest,
    StoreConnection,
)
from platforms.oms.connect import CheckedOmsCredentials, oms_connection_save, oms_credentials_check, oms_disconnect
from platforms.privacy import compliance, disconnect, erasure
from platforms.subscriptions import services as subscription_services
from violet_refunds.admin import admin_link
from violet_refunds.crypto import CredentialsUnreadable
from violet_refunds.exceptions import ValidationFailed
from violet_refunds.money import format_amount

_SECRET_FIELDS = ("credentials", "webhook_secret")
# What platforms.view_raw_payload guards (docs/privacy.md: who sees what).
_RAW_FIELDS = ("headers_pretty", "body_pretty", "decoded_payload")


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


# The admin index links here (refunds/admin/index.py): ?health=attention.
HEALTH_PARAMETER = "health"
HEALTH_ATTENTION = "attention"


def connections_needing_attention():
    return selectors.connections_needing_attention(
        now=timezone.now(),
        silent_after=timedelta(seconds=settings.STORE_SILENT_AFTER_SECONDS),
        min_bags=settings.STORE_SILENT_MIN_BAGS,
    )


class HealthFilter(admin.SimpleListFilter):
    """Broken (credentials refused, a subscription failing) or silent (no webhook for
    STORE_SILENT_AFTER_SECONDS although the network placed STORE_SILENT_MIN_BAGS bags with it)."""

    title = "health"
    parameter_name = HEALTH_PARAMETER

    def lookups(self, request, model_admin):
        return (
            (HEALTH_ATTENTION, "Needs attention (broken or silent)"),
            ("broken", "Broken subscriptions or credentials"),
            ("silent", "Silent"),
        )

    def queryset(self, request, queryset):
        if self.value() == HEALTH_ATTENTION:
            return queryset.filter(pk__in=connections_needing_attention().values("pk"))
        if self.value() == "broken":
            return queryset.filter(pk__in=selectors.connections_broken().values("pk"))
        if self.value() == "silent":
            silent = selectors.connections_silent(
                now=timezone.now(),
                silent_after=timedelta(seconds=settings.STORE_SILENT_AFTER_SECONDS),
                min_bags=settings.STORE_SILENT_MIN_BAGS,
            )
            return queryset.filter(pk__in=silent.values("pk"))
        return queryset


# One confirmation syncs at most this many stores (each makes a few platform calls, in the request).
SYNC_ACTION_MAX = 20


@admin.register(StoreConnection)
class StoreConnectionAdmin(admin.ModelAdmin):
    form = StoreConnectionForm
    list_display = (
        "merchant",
        "platform",
        "status",
        "last_verified_at",
        "last_event_at",
        "subscriptions_synced_at",
        "last_polled_at",
        "has_error",
    )
    list_filter = (HealthFilter, "status", "merchant__platform")
    actions = ("sync_subscriptions", "disconnect_selected")
    search_fields = ("merchant__name", "public_id")
    list_select_related = ("merchant",)
    readonly_fields = (
        "public_id",
        "webhook_url",
        "webhook_subscriptions",
        "stored_credentials",
        "stored_webhook_secret",
        "last_verified_at",
        "last_polled_at",
        "last_event_at",
        "subscriptions_synced_at",
        "last_error",
        "date_created",
        "date_last_modified",
    )
    fieldsets = (
        (None, {"fields": ("merchant", "status", "public_id", "webhook_url")}),
        ("Webhook subscriptions (issue #24; kept by the subscription sync)", {"fields": ("webhook_subscriptions",)}),
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
            {
                "fields": (
                    "last_verified_at",
                    "last_polled_at",
                    "last_event_at",
                    "subscriptions_synced_at",
                    "last_error",
                    "date_created",
                    "date_last_modified",
                )
            },
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
        plan = subscription_services.subscription_plan(connection.merchant.platform)
        if plan.delivery == Delivery.APP_LEVEL:
            return "- (app-level: the app's one webhook URL, see the README)"
        try:
            return subscription_services.webhook_address(connection) or subscription_services.webhook_path(connection)
        except NoReverseMatch:
            return "-"

    @admin.display(description="Subscriptions at the platform")
    def webhook_subscriptions(self, connection):
        """Each declared topic as the last sync found it (read-only: only the sync writes them)."""
        rows = list(connection.subscriptions.all()) if connection.pk else []
        if not rows:
            return 'None recorded yet (use the action "Sync webhook subscriptions").'
        return format_html(
            "<table><tr><th>Topic</th><th>State</th><th>Platform id</th><th>Address</th><th>Last verified</th>"
            "<th>Last error</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (
                        row.topic,
                        row.get_state_display(),
                        row.platform_id or "-",
                        row.address or "-",
                        date_format(timezone.localtime(row.last_verified_at), "DATETIME_FORMAT")
                        if row.last_verified_at
                        else "-",
                        row.last_error or "-",
                    )
                    for row in rows
                ),
            ),
        )

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

    @admin.action(
        description="Disconnect selected stores (wipe credentials and webhook secret)", permissions=("change",)
    )
    def disconnect_selected(self, request, queryset):
        """Asks for confirmation first; each disconnect is written to the admin log."""
        if request.POST.get("confirm") != "yes":
            return TemplateResponse(
                request,
                "admin/platforms/disconnect_confirm.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Disconnect stores?",
                    "connections": list(queryset.select_related("merchant")),
                    "action_checkbox_name": ACTION_CHECKBOX_NAME,
                    "opts": self.model._meta,
                },
            )
        done = 0
        for connection in queryset:
            if disconnect.store_connection_disconnect(
                connection=connection,
                actor=f"operator:{request.user.get_username()}",
                reason="disconnected in the admin",
            ):
                self.log_change(request, connection, "Disconnected: credentials and webhook secret wiped.")
                done += 1
        self.message_user(request, f"Disconnected {done} store(s).", messages.SUCCESS)
        return None

    def save_model(self, request, obj, form, change):
        reconnecting = (
            change
            and form.initial.get("status") in (StoreConnection.Status.DISCONNECTED, StoreConnection.Status.INVALID)
            and obj.status == StoreConnection.Status.CONNECTED
        )
        if change and obj.status == StoreConnection.Status.DISCONNECTED and form.initial.get("status") != obj.status:
            obj.status = form.initial.get("status")  # through the one disconnect service instead
            super().save_model(request, obj, form, change)
            disconnect.store_connection_disconnect(
                connection=obj, actor=f"operator:{request.user.get_username()}", reason="status set in the admin"
            )
            return
        if reconnecting:
            obj.status = form.initial.get("status")  # the reconnect service sets CONNECTED, with a fresh secret
        super().save_model(request, obj, form, change)
        if reconnecting:
            disconnect.store_connection_reconnect(
                connection=obj, webhook_secret=form.cleaned_data.get("replace_webhook_secret") or None
            )
        new_secret = form.cleaned_data.get("replace_webhook_secret")
        new_credentials = form.cleaned_data.get("replace_credentials")
        if new_secret or new_credentials:
            # Also syncs the store's webhook subscriptions (issue #24).
            services.store_connection_replace_secrets(
                connection=obj, webhook_secret=new_secret or None, credentials=new_credentials
            )
        elif not change or "status" in form.changed_data:
            # A store connected here without new secrets: its subscriptions are synced all the same.
            subscription_services.subscriptions_sync_later(obj)

    @admin.action(description="Sync webhook subscriptions of selected stores", permissions=("change",))
    def sync_subscriptions(self, request, queryset):
        """Confirmed first; each sync is recorded in the admin log (the connection's history)."""
        connections = list(queryset.select_related("merchant").order_by("pk")[: SYNC_ACTION_MAX + 1])
        if len(connections) > SYNC_ACTION_MAX:
            self.message_user(request, f"Select at most {SYNC_ACTION_MAX} stores at a time.", messages.ERROR)
            return None
        if request.POST.get("confirmed") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": "Sync webhook subscriptions?",
                "opts": self.model._meta,
                "connections": connections,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "action": "sync_subscriptions",
            }
            return TemplateResponse(request, "admin/platforms/storeconnection/confirm_sync_subscriptions.html", context)
        for connection in connections:
            # Secrets are needed for the calls: read the full row, not the admin's deferred one.
            full = StoreConnection.objects.select_related("merchant").get(pk=connection.pk)
            result = subscription_services.subscriptions_sync(full)
            summary = f"Webhook subscriptions synced by {request.user}: {result.summary()}"
            self.log_change(request, full, summary[:1000])
            level = messages.ERROR if result.errors else messages.SUCCESS
            self.message_user(request, f"{full.merchant}: {result.summary()}", level)
        return None


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
        (
            "Automatic retry",
            {"fields": ("next_attempt_at", "retrying_since", "retries", "requeued_at", "claims_without_outcome")},
        ),
        ("Awaiting its order", {"fields": ("order_id", "awaiting_since")}),
        ("Outcome", {"fields": ("outcome", "replay_advice", "linked_refunds")}),
        # What a developer reads; the outcome above says the cause in words.
        ("Technical details", {"classes": ("collapse",), "fields": ("error", "traceback")}),
        ("Delivery", {"fields": ("date_created", "remote_ip", "body_sha256", "redacted_at", *_RAW_FIELDS)}),
    )
    readonly_fields = (
        "platform",
        "connection",
        "event_id",
        "topic",
        "status",
        "attempts",
        "claims_without_outcome",
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
        "body_sha256",
        "redacted_at",
        *_RAW_FIELDS,
    )

    def get_queryset(self, request):
        return super().get_queryset(request).defer(*(f"connection__{name}" for name in _SECRET_FIELDS))

    def get_fieldsets(self, request, obj=None):
        """Raw bodies and headers only for platforms.view_raw_payload (operators, not viewers)."""
        if request.user.has_perm("platforms.view_raw_payload"):
            return self.fieldsets
        return tuple(
            (name, {**options, "fields": tuple(f for f in options["fields"] if f not in _RAW_FIELDS)})
            for name, options in self.fieldsets
        )

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

    @admin.display(description="Raw body (as received, less capability fields)")
    def body_pretty(self, event):
        if event.redacted_at:
            return f"Redacted {date_format(timezone.localtime(event.redacted_at), 'DATETIME_FORMAT')} (privacy)."
        return format_html("<pre style='white-space: pre-wrap'>{}</pre>", _pretty(event.body))

    @admin.display(description="Decoded payload")
    def decoded_payload(self, event):
        if event.platform != Platform.WIX or event.redacted_at:
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


# --- SFCC merchants' order management systems (issue #25) -------------------------------------------


class OmsConnectionForm(forms.ModelForm):
    """An operator enters the org's My Domain URL and the connected app's credentials; they are
    checked with real calls (token + test query) before anything is saved, and never shown again."""

    client_id = forms.CharField(label="Consumer key", widget=forms.TextInput(attrs={"autocomplete": "off"}))
    client_secret = forms.CharField(
        label="Consumer secret", widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"})
    )

    class Meta:
        model = OmsConnection
        fields = ("merchant", "system", "base_url")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        merchant_field = self.fields.get("merchant")
        if isinstance(merchant_field, forms.ModelChoiceField):
            merchant_field.queryset = Merchant.objects.filter(platform=Platform.SFCC)
        self.checked: CheckedOmsCredentials | None = None

    def clean(self):
        cleaned = super().clean() or {}
        merchant = cleaned.get("merchant") or getattr(self.instance, "merchant", None)
        if self.errors or merchant is None:
            return cleaned
        try:
            self.checked = oms_credentials_check(
                merchant=merchant,
                base_url=cleaned.get("base_url", ""),
                client_id=cleaned.get("client_id", ""),
                client_secret=cleaned.get("client_secret", ""),
                system=cleaned.get("system") or OmsSystem.SALESFORCE_OM,
            )
        except ValidationFailed as exc:
            for name, texts in exc.field_errors.items():
                for text in texts:
                    self.add_error(name if name in self.fields else None, text)
            self.add_error(None, exc.message)
        except PlatformUnavailable:
            self.add_error(None, "The order management system could not be reached. Nothing was saved; try again.")
        return cleaned


@admin.register(OmsConnection)
class OmsConnectionAdmin(admin.ModelAdmin):
    form = OmsConnectionForm
    list_display = (
        "merchant",
        "system",
        "status",
        "base_url",
        "cursor",
        "last_run_at",
        "last_success_at",
        "backoff_until",
        "short_error",
    )
    list_filter = ("status", "system")
    search_fields = ("merchant__name", "base_url")
    list_select_related = ("merchant",)
    readonly_fields = (
        "status",
        "last_verified_at",
        "cursor",
        "last_run_at",
        "last_success_at",
        "last_error",
        "backoff_until",
        "api_usage",
        "date_created",
        "date_last_modified",
    )
    actions = ("disconnect",)

    def get_queryset(self, request):
        return super().get_queryset(request).defer("credentials")

    def get_fieldsets(self, request, obj=None):
        return (
            (None, {"fields": ("merchant", "system", "base_url", "client_id", "client_secret", "status")}),
            (
                "Discovery",
                {
                    "fields": (
                        "cursor",
                        "last_run_at",
                        "last_success_at",
                        "last_error",
                        "backoff_until",
                        "api_usage",
                        "last_verified_at",
                    )
                },
            ),
        )

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "merchant") if obj else self.readonly_fields

    @admin.display(description="Last error")
    def short_error(self, obj):
        return (obj.last_error or "")[:120]

    def save_model(self, request, obj, form, change):
        # The checked credentials are saved by the service (encrypted, merchant switched to the OMS mode).
        saved = oms_connection_save(merchant=obj.merchant, checked=form.checked, user=request.user)
        obj.pk = saved.pk
        obj.credentials = None

    def has_delete_permission(self, request, obj=None):
        return False  # disconnect instead: the credentials are wiped, the history stays

    @admin.action(description="Disconnect (wipe credentials; merchant back to Option 2)")
    def disconnect(self, request, queryset):
        for oms in queryset.select_related("merchant"):
            oms_disconnect(merchant=oms.merchant, user=request.user)
        self.message_user(request, f"{queryset.count()} connection(s) disconnected.", messages.SUCCESS)


class PrivacyRequestForm(forms.ModelForm):
    """An operator's erasure: a shopper's e-mail and/or our order ids (comma separated)."""

    email = forms.EmailField(required=False, help_text="The shopper's e-mail (not stored; only its hash is).")
    orders = forms.CharField(required=False, help_text="Our order ids, comma separated.")

    class Meta:
        model = PrivacyRequest
        fields = ()

    def clean_orders(self):
        raw = self.cleaned_data["orders"]
        try:
            return tuple(int(part) for part in raw.replace(" ", "").split(",") if part)
        except ValueError as exc:
            raise forms.ValidationError("Enter order ids separated by commas.") from exc

    def clean(self):
        cleaned = super().clean() or {}
        if not cleaned.get("email") and not cleaned.get("orders"):
            raise forms.ValidationError("Give the shopper's e-mail or at least one order id.")
        return cleaned


@admin.register(PrivacyRequest)
class PrivacyRequestAdmin(admin.ModelAdmin):
    """Privacy requests by due date; "Add" records and performs an operator's erasure (audited:
    the request row and the admin log keep who erased what, without the shopper's e-mail)."""

    list_display = ("id", "kind", "state", "merchant", "platform", "due_at", "completed_at", "requested_by")
    list_filter = ("state", "kind", "platform")
    search_fields = ("delivery_id", "shop_domain", "customer_external_id", "email_sha256")
    ordering = ("state", "due_at")
    actions = ("process_selected",)
    readonly_fields = (
        "kind",
        "state",
        "platform",
        "merchant",
        "delivery_id",
        "shop_domain",
        "customer_external_id",
        "email_sha256",
        "order_ids",
        "due_at",
        "completed_at",
        "outcome",
        "requested_by",
        "export",
        "date_created",
    )

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = PrivacyRequestForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return ("email", "orders") if obj is None else self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        email, orders = form.cleaned_data.get("email") or "", form.cleaned_data.get("orders") or ()
        result = erasure.shopper_erase(email=email, order_ids=orders)
        now = timezone.now()
        obj.kind = PrivacyRequest.Kind.ERASURE
        obj.state = PrivacyRequest.State.DONE
        obj.email_sha256 = erasure.email_sha256(email)
        obj.order_ids = [str(pk) for pk in result.order_ids]
        obj.due_at = now
        obj.completed_at = now
        obj.outcome = result.describe()
        obj.requested_by = f"operator:{request.user.get_username()}"
        super().save_model(request, obj, form, change)

    @admin.action(description="Process selected requests now", permissions=("change",))
    def process_selected(self, request, queryset):
        for privacy_request in queryset:
            compliance.privacy_request_process(privacy_request.pk)
        self.message_user(request, f"Processed {queryset.count()} request(s).", messages.SUCCESS)
