"""Findings: differences with Stripe an operator must look at (nightly reconciliation, Stripe events).

Read-only rows; an operator resolves them (after a confirmation page with a note saying how) through
refunds.services.findings."""

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.urls import reverse

from refunds.models import ReconciliationFinding
from refunds.services.findings import finding_resolve
from violet_refunds.admin import can_operate, status_badge
from violet_refunds.exceptions import ApplicationError

RESOLVE_LIMIT = 200


@admin.register(ReconciliationFinding)
class ReconciliationFindingAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "state_badge",
        "kind",
        "origin",
        "refund",
        "bag",
        "short_detail",
        "times_seen",
        "last_seen_at",
    )
    list_filter = ("state", "origin", "kind", "date_created")
    search_fields = ("detail", "key", "refund__id", "bag__id")
    list_select_related = ("refund", "bag")
    date_hierarchy = "date_created"
    actions = ("resolve_selected_findings",)
    readonly_fields = (
        "key",
        "origin",
        "kind",
        "refund",
        "bag",
        "step",
        "detail",
        "state",
        "times_seen",
        "last_seen_at",
        "date_created",
        "date_resolved",
        "resolved_by",
        "resolution_note",
    )

    def has_add_permission(self, request):
        return False  # opened by the reconciliation and Stripe events only

    def has_delete_permission(self, request, obj=None):
        return False  # resolved with a note instead

    @admin.display(description="State", ordering="state")
    def state_badge(self, finding):
        return status_badge(
            "FAILED" if finding.state == ReconciliationFinding.State.OPEN else "COMPLETED", finding.state
        )

    @admin.display(description="Detail")
    def short_detail(self, finding):
        return finding.detail if len(finding.detail) <= 140 else finding.detail[:139] + "…"

    @admin.action(description="Resolve selected findings (with a note)", permissions=("change",))
    def resolve_selected_findings(self, request, queryset):
        if not can_operate(request.user):
            self.message_user(request, "Only operators may resolve findings.", messages.ERROR)
            return None
        findings = list(queryset.filter(state=ReconciliationFinding.State.OPEN).order_by("pk")[: RESOLVE_LIMIT + 1])
        if not findings:
            self.message_user(request, "None of the selected findings is open.", messages.WARNING)
            return None
        if len(findings) > RESOLVE_LIMIT:
            self.message_user(request, f"Select at most {RESOLVE_LIMIT} findings at a time.", messages.ERROR)
            return None
        note = (request.POST.get("note") or "").strip()
        if request.POST.get("confirm") != "yes" or not note:
            context = {
                **self.admin_site.each_context(request),
                "title": "Resolve findings?",
                "opts": self.model._meta,
                "findings": findings,
                "note": note,
                "note_missing": request.POST.get("confirm") == "yes" and not note,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "button": f"Resolve {len(findings)} finding(s)",
                "back_url": reverse("admin:refunds_reconciliationfinding_changelist"),
            }
            return TemplateResponse(request, "admin/refunds/reconciliationfinding/confirm_resolve.html", context)
        resolved = 0
        for finding in findings:
            try:
                finding_resolve(finding=finding, user=request.user, note=note)
                resolved += 1
            except ApplicationError:
                continue  # resolved meanwhile
        self.message_user(request, f"Resolved {resolved} finding(s).", messages.SUCCESS)
        return None
