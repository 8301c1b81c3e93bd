"""Operator views of Stripe's webhooks: the endpoints to register in the Stripe Dashboard, and every
event Stripe sent (read-only, raw body pretty-printed), replayable after a confirmation page.

Signing secrets are never shown: the endpoint page says how many are stored and takes a new one in
a write-only field (kept alongside the old while a secret is rolled)."""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from stripe_events import services
from stripe_events.models import StripeEvent, StripeWebhookEndpoint
from violet_refunds.admin import admin_link, can_operate
from violet_refunds.crypto import CredentialsUnreadable
from violet_refunds.money import format_amount

# One confirmation replays at most this many events (each may call Stripe).
REPLAY_LIMIT = 200


class StripeWebhookEndpointForm(forms.ModelForm):
    new_signing_secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="The endpoint's signing secret (whsec_…) from the Stripe Dashboard. It is added to the secrets "
        "in use, so a rolled secret and its predecessor both verify until the old one is dropped.",
    )
    drop_other_secrets = forms.BooleanField(
        required=False, help_text="Keep only the new secret (once Stripe no longer signs with the old one)."
    )

    class Meta:
        model = StripeWebhookEndpoint
        fields = ("name", "enabled", "tolerance_seconds")

    def clean_new_signing_secret(self):
        value = self.cleaned_data.get("new_signing_secret") or ""
        if value and not value.startswith("whsec_"):
            raise forms.ValidationError("A Stripe signing secret starts with whsec_.")
        if not value and not self.instance.pk:
            raise forms.ValidationError("Paste the signing secret the Stripe Dashboard shows for this endpoint.")
        return value


@admin.register(StripeWebhookEndpoint)
class StripeWebhookEndpointAdmin(admin.ModelAdmin):
    form = StripeWebhookEndpointForm
    list_display = ("name", "enabled", "webhook_url", "tolerance_seconds", "is_sandbox", "date_created")
    readonly_fields = ("webhook_url", "events_to_enable", "stored_secrets", "is_sandbox")

    def get_fieldsets(self, request, obj=None):
        return (
            (None, {"fields": ("name", "enabled", "tolerance_seconds")}),
            ("Register in the Stripe Dashboard", {"fields": ("webhook_url", "events_to_enable")}),
            ("Signing secrets", {"fields": ("stored_secrets", "new_signing_secret", "drop_other_secrets")}),
        )

    def has_delete_permission(self, request, obj=None):
        return False  # its events point at it; disable it instead

    def _absolute_url(self, request, endpoint) -> str:
        path = reverse("stripe_events:webhook", args=[endpoint.public_id])
        return request.build_absolute_uri(path) if request is not None else path

    @admin.display(description="Webhook URL")
    def webhook_url(self, endpoint):
        if not endpoint.pk:
            return "Shown once the endpoint is saved."
        return reverse("stripe_events:webhook", args=[endpoint.public_id])

    @admin.display(description="Events to enable")
    def events_to_enable(self, endpoint):
        return ", ".join(services.EVENTS_TO_ENABLE)

    @admin.display(description="Stored signing secrets")
    def stored_secrets(self, endpoint):
        try:
            count = len(endpoint.secrets)
        except CredentialsUnreadable:
            return "Unreadable with the configured FIELD_ENCRYPTION_KEY."
        return f"{count} stored." if count else "None stored: every delivery is refused."

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        secret = form.cleaned_data.get("new_signing_secret")
        if secret:
            services.stripe_endpoint_secret_add(
                endpoint=obj, secret=secret, drop_others=bool(form.cleaned_data.get("drop_other_secrets"))
            )
        if not change:
            self.message_user(
                request,
                f"Register {self._absolute_url(request, obj)} in the Stripe Dashboard (Developers -> Webhooks) "
                f"with the events: {', '.join(services.EVENTS_TO_ENABLE)}.",
                messages.SUCCESS,
            )


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    list_display = ("id", "type", "stripe_id", "status", "livemode", "attempts", "stripe_created", "date_created")
    list_filter = ("status", "type", "livemode", "endpoint", "date_created")
    search_fields = ("stripe_id", "object_id")
    date_hierarchy = "date_created"
    actions = ("replay_selected_events",)
    fieldsets = (
        (None, {"fields": ("stripe_id", "type", "api_version", "livemode", "stripe_created", "object_id", "endpoint")}),
        ("Processing", {"fields": ("status", "attempts", "processed_at", "outcome", "linked_refunds", "error")}),
        (
            "Automatic retry",
            {"fields": ("next_attempt_at", "retrying_since", "retries", "requeued_at", "claims_without_outcome")},
        ),
        ("Delivery", {"fields": ("date_created", "headers_pretty", "body_pretty", "traceback")}),
    )
    readonly_fields = (
        "stripe_id",
        "type",
        "api_version",
        "livemode",
        "stripe_created",
        "object_id",
        "endpoint",
        "status",
        "attempts",
        "claims_without_outcome",
        "processed_at",
        "outcome",
        "linked_refunds",
        "error",
        "next_attempt_at",
        "retrying_since",
        "retries",
        "requeued_at",
        "date_created",
        "headers_pretty",
        "body_pretty",
        "traceback",
    )

    def has_add_permission(self, request):
        return False  # events arrive through the receiver only

    def has_delete_permission(self, request, obj=None):
        return False  # the raw record of what Stripe said is kept

    @admin.display(description="Headers")
    def headers_pretty(self, event):
        return format_html("<pre>{}</pre>", json.dumps(event.headers, indent=2, sort_keys=True))

    @admin.display(description="Raw body (as received)")
    def body_pretty(self, event):
        try:
            text = json.dumps(json.loads(event.body), indent=2, sort_keys=True, ensure_ascii=False)
        except ValueError:
            text = event.body
        return format_html("<pre style='white-space: pre-wrap'>{}</pre>", text)

    @admin.display(description="Refunds this event touched")
    def linked_refunds(self, event):
        refunds = list(event.refunds.all())
        if not refunds:
            return "None."
        return format_html_join(
            "",
            "<div>{} {} ({})</div>",
            ((admin_link(r), format_amount(r.amount, r.refund_currency), r.status) for r in refunds),
        )

    @admin.action(description="Replay selected events", permissions=("change",))
    def replay_selected_events(self, request, queryset):
        if not can_operate(request.user):
            self.message_user(request, "Only operators may replay events.", messages.ERROR)
            return None
        events = list(queryset.order_by("date_created", "pk")[: REPLAY_LIMIT + 1])
        if len(events) > REPLAY_LIMIT:
            self.message_user(request, f"Select at most {REPLAY_LIMIT} events at a time.", messages.ERROR)
            return None
        if request.POST.get("confirm") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": "Replay Stripe events?",
                "opts": self.model._meta,
                "events": events,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "button": f"Replay {len(events)} event(s)",
                "back_url": reverse("admin:stripe_events_stripeevent_changelist"),
            }
            return TemplateResponse(request, "admin/stripe_events/stripeevent/confirm_replay.html", context)
        counts = services.stripe_events_replay(events)
        summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or "nothing"
        unsettled = counts.get(StripeEvent.Status.FAILED) or counts.get(StripeEvent.Status.RETRYING)
        level = messages.WARNING if unsettled else messages.SUCCESS
        self.message_user(request, f"Replayed {sum(counts.values())} event(s): {summary}.", level)
        return None
