"""Operator views of outbound webhooks: endpoints (status, failure rate, resume/disable), events and
their deliveries (status, attempts, last error), with "Resend selected" on events and deliveries.

Endpoints are registered and changed through notifications.services (the form validates with the
same rules as the API; the signing secret is generated there and shown once). Events and deliveries
are written only by the outbox and the delivery task, so they are read-only here.
"""

import json
from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from django.utils.html import format_html
from django.utils.text import Truncator

from notifications import selectors, services
from notifications.models import (
    UNFINISHED_DELIVERY_STATUSES,
    EventType,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from violet_refunds.admin import ReadOnlyAdminMixin, ReadOnlyTabularInline, admin_link, can_operate, status_badge
from violet_refunds.crypto import CredentialsUnreadable
from violet_refunds.exceptions import ApplicationError


def _operator_actor(request) -> str:
    return f"operator:{request.user.get_username()}"


def _has_operate_permission(_model_admin, request) -> bool:
    return can_operate(request.user)


# --- endpoints -----------------------------------------------------------------------------------


class WebhookEndpointForm(forms.ModelForm):
    event_types = forms.MultipleChoiceField(
        choices=EventType.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event type.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("app", "url", "event_types")

    def clean_url(self):
        try:
            return services.webhook_url_validate(self.cleaned_data.get("url"))
        except ApplicationError as exc:
            raise forms.ValidationError(exc.field_errors.get("remote_endpoint") or exc.message) from None

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data  # what ModelForm.clean returns (the stubs allow a subclass's None)
        app = cleaned.get("app") or (self.instance.app if self.instance.pk else None)
        url = cleaned.get("url")
        if app is not None and url:
            same_url = WebhookEndpoint.objects.filter(app=app, url=url).exclude(pk=self.instance.pk)
            if same_url.exists():
                self.add_error("url", "This app already has a webhook with this URL.")
            limit = services.MAX_ENDPOINTS_PER_APP
            if not self.instance.pk and WebhookEndpoint.objects.filter(app=app).count() >= limit:
                self.add_error("app", f"An app can have at most {limit} webhooks.")
        return cleaned


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = (
        "id",
        "app_link",
        "url",
        "status_column",
        "subscribed",
        "failure_rate",
        "pending",
        "paused_until",
        "pause_rounds",
        "last_success_at",
        "last_failure_at",
    )
    list_filter = ("status",)
    search_fields = ("id__exact", "url", "app__name", "app__id__exact")
    list_select_related = ("app",)
    readonly_fields = (
        "status",
        "paused_until",
        "pause_rounds",
        "failures_in_window",
        "failure_window_started_at",
        "last_success_at",
        "last_failure_at",
        "disabled_reason",
        "signing_secret_state",
        "date_created",
        "date_last_modified",
    )
    actions = ("resume_endpoints", "disable_endpoints")
    has_operate_permission = _has_operate_permission

    def get_queryset(self, request):
        # The secret is never listed, and a row encrypted under a retired key must not break pages.
        return (
            super()
            .get_queryset(request)
            .defer("signing_secret")
            .annotate(pending_count=Count("deliveries", filter=Q(deliveries__status__in=UNFINISHED_DELIVERY_STATUSES)))
        )

    def get_readonly_fields(self, request, obj=None):
        fields = self.readonly_fields
        return ("app", *fields) if obj is not None else ()

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("app", "url", "event_types")
        return ("app", "url", "event_types", *self.readonly_fields)

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        self._stats = selectors.endpoint_stats([endpoint.pk for endpoint in changelist.result_list])
        return changelist

    def save_model(self, request, obj, form, change):
        # The form checked what the services check; they write (and generate the secret).
        data = form.cleaned_data
        if change:
            services.webhook_endpoint_update(
                endpoint=WebhookEndpoint.objects.get(pk=obj.pk),
                actor=_operator_actor(request),
                url=data["url"],
                event_types=data["event_types"],
            )
            return
        registered = services.webhook_endpoint_register(
            app=data["app"], url=data["url"], event_types=data["event_types"], actor=_operator_actor(request)
        )
        obj.pk = registered.endpoint.pk
        obj.refresh_from_db()
        obj._state.adding = False
        messages.warning(
            request,
            f"Signing secret of webhook {obj.pk}, shown only now: {registered.signing_secret} "
            "— give it to the channel; it verifies X-Violet-Hmac with it.",
        )

    def delete_model(self, request, obj):
        services.webhook_endpoint_delete(endpoint=obj, actor=_operator_actor(request))

    def delete_queryset(self, request, queryset):
        for endpoint in queryset:
            services.webhook_endpoint_delete(endpoint=endpoint, actor=_operator_actor(request))

    @admin.display(description="App (channel)", ordering="app__name")
    def app_link(self, endpoint):
        return admin_link(endpoint.app)

    @admin.display(description="Status", ordering="status")
    def status_column(self, endpoint):
        return status_badge(endpoint.status)

    @admin.display(description="Events")
    def subscribed(self, endpoint):
        return ", ".join(endpoint.event_types) if endpoint.event_types else "All"

    @admin.display(description="Failure rate (7 days)")
    def failure_rate(self, endpoint):
        stats = getattr(self, "_stats", {}).get(endpoint.pk) or selectors.endpoint_stats([endpoint.pk]).get(endpoint.pk)
        if not stats or not stats.attempts:
            return "-"
        return f"{stats.failure_rate:.0%} of {stats.attempts} attempts"

    @admin.display(description="Waiting deliveries", ordering="pending_count")
    def pending(self, endpoint):
        return endpoint.pending_count

    @admin.display(description="Signing secret")
    def signing_secret_state(self, endpoint):
        try:
            secret = WebhookEndpoint.objects.get(pk=endpoint.pk).signing_secret
        except CredentialsUnreadable:
            return "Unreadable with the configured FIELD_ENCRYPTION_KEY"
        return "Set (shown once, at registration)" if secret else "Not set"

    @admin.action(description="Resume selected webhooks (ACTIVE now, failure record cleared)", permissions=("operate",))
    def resume_endpoints(self, request, queryset):
        for endpoint in queryset:
            services.webhook_endpoint_resume(endpoint=endpoint, actor=_operator_actor(request))
        messages.success(request, f"Resumed {queryset.count()} webhook(s).")

    @admin.action(description="Disable selected webhooks (waiting deliveries are cancelled)", permissions=("operate",))
    def disable_endpoints(self, request, queryset):
        actor = _operator_actor(request)
        for endpoint in queryset:
            services.webhook_endpoint_disable(endpoint=endpoint, actor=actor, reason=f"Disabled by {actor}.")
        messages.success(request, f"Disabled {queryset.count()} webhook(s).")


# --- events and deliveries -------------------------------------------------------------------------


def _resend_each(request, events_and_endpoints) -> None:
    actor = _operator_actor(request)
    copies, retried, problems = 0, 0, []
    for event, endpoint in events_and_endpoints:
        try:
            result = services.event_resend(event=event, endpoint=endpoint, actor=actor)
        except ApplicationError as exc:
            problems.append(f"{event.event_type} {event.event_id}: {exc.message}")
            continue
        copies += bool(result.resent_to)
        retried += len(result.retried_now)
    if copies:
        messages.success(request, f"Resent {copies} event(s) as new events (X-Violet-Event-Id-Source names each).")
    if retried:
        messages.success(request, f"{retried} delivery(ies) still waiting for a retry are retried now.")
    for problem in problems:
        messages.error(request, f"Not resent: {problem}")


class DeliveryOfEventInline(ReadOnlyTabularInline):
    model = WebhookDelivery
    fields = (
        "endpoint",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "last_reply_excerpt",
        "last_duration_ms",
        "date_finished",
    )
    readonly_fields = fields
    list_select_related = ("endpoint",)


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "event_type",
        "event_id",
        "app",
        "order_id",
        "bag_id",
        "refund_id",
        "sequence",
        "date_created",
    )
    list_filter = ("event_type", "date_created")
    search_fields = ("event_id__exact", "order__id__exact", "bag__id__exact", "refund__id__exact", "dedupe_key")
    list_select_related = ("app",)
    fields = (
        "event_id",
        "event_type",
        "app",
        "order",
        "bag",
        "refund",
        "sequence",
        "dedupe_key",
        "resent_from",
        "body_pretty",
        "date_created",
    )
    readonly_fields = fields
    inlines = (DeliveryOfEventInline,)
    actions = ("resend_events",)
    has_operate_permission = _has_operate_permission

    @admin.display(description="Body (as sent)")
    def body_pretty(self, event):
        return format_html("<pre>{}</pre>", json.dumps(json.loads(event.body), indent=2, ensure_ascii=False))

    @admin.action(description="Resend selected (to every webhook receiving the type)", permissions=("operate",))
    def resend_events(self, request, queryset):
        _resend_each(request, ((event, None) for event in queryset))


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "event_type",
        "event_link",
        "endpoint_short",
        "status_column",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "short_error",
        "last_duration_ms",
        "date_finished",
    )
    list_filter = ("status", "event__event_type", "date_created")
    search_fields = ("id__exact", "event__event_id__exact", "endpoint__url", "event__order__id__exact")
    list_select_related = ("event", "endpoint")
    readonly_fields = (
        "event",
        "endpoint",
        "status",
        "attempts",
        "next_attempt_at",
        "enqueued_at",
        "claimed_at",
        "last_attempt_at",
        "last_status_code",
        "last_error",
        "last_reply_excerpt",
        "last_duration_ms",
        "date_finished",
        "date_created",
        "date_last_modified",
        "request_payload",
    )
    # What was sent and what came back first, then the bookkeeping.
    fieldsets = (
        (
            "Request and response",
            {
                "fields": (
                    "event",
                    "endpoint",
                    "status",
                    "last_status_code",
                    "last_reply_excerpt",
                    "last_error",
                    "request_payload",
                )
            },
        ),
        (
            "Attempts",
            {
                "fields": (
                    "attempts",
                    "last_attempt_at",
                    "last_duration_ms",
                    "next_attempt_at",
                    "enqueued_at",
                    "claimed_at",
                    "date_finished",
                    "date_created",
                    "date_last_modified",
                )
            },
        ),
    )
    actions = ("resend_deliveries",)
    has_operate_permission = _has_operate_permission

    def get_queryset(self, request):
        return super().get_queryset(request).defer("endpoint__signing_secret")

    @admin.display(description="Type", ordering="event__event_type")
    def event_type(self, delivery):
        return delivery.event.event_type

    @admin.display(description="Request payload (the exact JSON sent, signed)")
    def request_payload(self, delivery):
        try:
            text = json.dumps(json.loads(delivery.event.body), indent=2, sort_keys=True)
        except ValueError:
            text = delivery.event.body
        return format_html('<pre class="delivery-payload" style="white-space: pre-wrap">{}</pre>', text)

    @admin.display(description="Event")
    def event_link(self, delivery):
        return admin_link(delivery.event)

    @admin.display(description="Webhook", ordering="endpoint")
    def endpoint_short(self, delivery):
        # The webhook and its host: a full URL (paths, tokens in query strings) would push status,
        # attempts and the error off a 1400 px screen; the whole URL is in the tooltip and on the page.
        endpoint = delivery.endpoint
        host = urlsplit(endpoint.url).hostname or endpoint.url
        return format_html('<span title="{}">Webhook {} → {}</span>', endpoint.url, endpoint.pk, host)

    @admin.display(description="Status", ordering="status")
    def status_column(self, delivery):
        return status_badge(delivery.status)

    @admin.display(description="Last error")
    def short_error(self, delivery):
        # Operators see the start of the failing reply too (the channel sees only the status code).
        text = delivery.last_error
        if delivery.last_reply_excerpt:
            text = f"{text}: {delivery.last_reply_excerpt}"
        return Truncator(text).chars(80)

    @admin.action(description="Resend selected", permissions=("operate",))
    def resend_deliveries(self, request, queryset):
        _resend_each(request, ((delivery.event, delivery.endpoint) for delivery in queryset))
