"""Refund repairs, each behind a confirmation page (Django's intermediate-page pattern): retry,
mark external, cancel (before money moved) and resolve errors, on a selection from the list or on one
refund from its page; and resolving selected errors from the error list.

Every page here is a thin caller: it checks the operator's permission, asks the user to confirm,
calls a refunds.services function per refund and reports what each call did. The services write
the audit events (naming the operator) and refuse what a status forbids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.contrib import messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from refunds.admin.forms import ErrorSelectionForm, OperationNoteForm, RefundReasonForm
from refunds.admin.position import operation_money_consequences
from refunds.admin.selectors import refund_step_outcomes
from refunds.admin.steps import STEP_MARKS, STEP_SHORT_NAMES, step_title
from refunds.models import ForwardingState, ReasonCode, Refund, RefundError, RefundForwarding, RefundStatus
from refunds.services import (
    refund_cancel,
    refund_error_resolve,
    refund_mark_external,
    refund_reason_change,
    refund_retry,
)
from refunds.services.forwarding import refund_forwarding_bypass, refund_forwarding_retry
from violet_refunds.admin import can_operate
from violet_refunds.exceptions import ApplicationError, InvalidTransition
from violet_refunds.money import format_amount

# One confirmation acts on at most this many refunds: each is a locked, audited service call (and
# a retry may call Stripe); a "select all 80,000" slip must not become a multi-minute request.
MAX_REFUNDS_PER_OPERATION = 200


def require_operator(request) -> None:
    if not can_operate(request.user):
        raise PermissionDenied


# --------------------------------------------------------------------------------------------------
# Repair operations: what each does, and running one over many refunds
# --------------------------------------------------------------------------------------------------


def _resolve_open_errors(*, refund: Refund, user, note: str) -> None:
    open_errors = list(RefundError.objects.filter(refund=refund, resolved=False).select_related("refund"))
    if not open_errors:
        raise InvalidTransition("It has no open errors.")
    for error in open_errors:
        refund_error_resolve(error=error, user=user, note=note)


@dataclass(frozen=True)
class RefundOperation:
    name: str  # also the URL segment of the one-refund page
    action_name: str  # the ModelAdmin action that runs it on a selection
    title: str
    button: str
    done: str  # "3 retried"
    what_happens: tuple[str, ...]
    run: Callable[..., object]  # run(refund=, user=, note=) -> anything; raises ApplicationError
    note_required: bool = False
    note_help: str = ""
    destructive: bool = False


OPERATIONS: dict[str, RefundOperation] = {
    op.name: op
    for op in (
        RefundOperation(
            name="retry",
            action_name="retry_refunds",
            title="Retry processing",
            button="Yes, retry now",
            done="retried",
            what_happens=(
                "Each refund goes back to PROCESSING and is processed again right away.",
                "Steps that already moved money are kept and never repeated.",
                "Steps that failed for good are sent to Stripe again under a new idempotency key; steps whose "
                "outcome was never recorded are looked up at Stripe first, so nothing moves twice.",
                "Refused for refunds that are COMPLETED, EXTERNAL or CANCELED, or that a worker is processing "
                "at this moment.",
            ),
            run=refund_retry,
        ),
        RefundOperation(
            name="mark-external",
            action_name="mark_refunds_external",
            title="Mark as settled outside the network",
            button="Yes, mark as external",
            done="marked external",
            what_happens=(
                "Each refund becomes EXTERNAL: the network stops moving money for it. Money it already "
                "moved stays moved; nothing is undone.",
                "Its bag counts the refund as done (refunded or partially refunded).",
                "Only FAILED, PARTIALLY_COMPLETED and PROCESSING refunds can be marked external.",
            ),
            run=refund_mark_external,
            note_required=True,
            note_help="Required: how and where the money moved (e.g. 'Refunded by the merchant in SFCC, ticket 4411').",
        ),
        RefundOperation(
            name="cancel",
            action_name="cancel_refunds",
            title="Cancel (before any money moved)",
            button="Yes, cancel",
            done="canceled",
            what_happens=(
                "Each refund becomes CANCELED and will never be processed; its amounts and SKU quantities "
                "become refundable again.",
                "Refused when any money already moved for the refund (a completed reversal or shopper "
                "refund), or when Stripe holds a step whose answer was never recorded: retry those instead.",
                "Only PROCESSING and FAILED refunds can be canceled.",
            ),
            run=refund_cancel,
            destructive=True,
        ),
        RefundOperation(
            name="resolve-errors",
            action_name="resolve_refund_errors",
            title="Resolve open errors",
            button="Yes, resolve",
            done="had its open errors resolved",
            what_happens=(
                "Every open error of each refund is marked resolved, with your name and the time.",
                "The refunds' statuses do not change.",
            ),
            run=_resolve_open_errors,
        ),
        # A channel refund whose merchant platform stayed unreachable (issue 14): the two answers.
        RefundOperation(
            name="retry-forwarding",
            action_name="retry_forwarding",
            title="Retry forwarding to the platform",
            button="Yes, send it to the platform again",
            done="sent to their platform again",
            what_happens=(
                "Each refund is sent to the merchant's platform again now, with a fresh attempt budget.",
                "If an earlier send may have reached the platform, the platform's refunds are searched for it "
                "first, so it is never created there twice.",
                "No money moves until the platform accepts the refund.",
            ),
            run=refund_forwarding_retry,
        ),
        RefundOperation(
            name="move-money-without-platform",
            action_name="move_money_without_platform",
            title="Move the money without the platform",
            button="Yes, refund the shopper without the platform",
            done="processed without their platform",
            what_happens=(
                "Each refund stops waiting for the merchant's platform: the shopper is refunded and the "
                "transfers reversed now.",
                "The merchant is e-mailed and sees the refund in the portal's 'Refunds to mirror' list, to "
                "record it on the platform by hand.",
                "If an earlier send did reach the platform, its webhook is matched to this refund: nothing is "
                "refunded twice.",
            ),
            run=refund_forwarding_bypass,
            note_required=True,
            note_help="Required: why the money moves without the platform (e.g. 'Shopify down since 9:00, ticket 77').",
            destructive=True,
        ),
    )
}

# Forwarding states in which the refund still waits for its platform (an operator may act).
_FORWARDING_WAITING = frozenset({ForwardingState.STALLED, ForwardingState.RETRYING, ForwardingState.PENDING})


# Nothing left to repair in these; the buttons would only lead to a refusal.
_SETTLED_STATUSES = frozenset({RefundStatus.COMPLETED, RefundStatus.EXTERNAL, RefundStatus.CANCELED})
# The statuses refund_cancel accepts (it also refuses once any money moved).
_CANCELABLE_STATUSES = frozenset({RefundStatus.PROCESSING, RefundStatus.FAILED})


@dataclass(frozen=True)
class OfferedOperation:
    operation: RefundOperation
    refused_because: str = ""  # why the button is disabled; empty when it may be used
    recommended: bool = False

    @property
    def enabled(self) -> bool:
        return not self.refused_because


def waits_for_platform(refund: Refund) -> bool:
    """The refund is PROCESSING and its forwarding has not reached the platform yet (issue 14)."""
    if refund.status != RefundStatus.PROCESSING:
        return False
    state = RefundForwarding.objects.filter(refund=refund).values_list("state", flat=True).first()
    return state in _FORWARDING_WAITING


def operation_refusal(
    name: str, refund: Refund, steps, *, open_errors: int, platform_pending: bool | None = None
) -> str:
    """Why `name` cannot apply to the refund as it stands ("" when it can). A hint only: each
    service still decides, and refuses what the state does not allow when the operator confirms.
    `platform_pending`: waits_for_platform(refund), when the caller already knows it."""
    status = refund.get_status_display()
    if name == "resolve-errors":
        return "" if open_errors else "No open errors to resolve."
    if refund.status in _SETTLED_STATUSES:
        return f"The refund is {status}: there is nothing left to repair."
    pending = waits_for_platform(refund) if platform_pending is None else platform_pending
    if name in ("retry-forwarding", "move-money-without-platform"):
        return "" if pending else "The refund is not waiting for the merchant's platform."
    if name == "retry" and pending:
        return "The refund waits for the merchant's platform: Retry forwarding, or Move the money without the platform."
    if name == "cancel":
        moved = [step.label.lower() for step in steps if step.money_moved]
        if moved:
            return (
                f"Money already moved ({', '.join(moved)}): a cancel cannot undo it. Retry or Mark as external instead."
            )
        if refund.status not in _CANCELABLE_STATUSES:
            return f"A {status} refund cannot be canceled."
    return ""


def operations_offered(
    refund: Refund, steps, *, open_errors: int, recommended: str | None = None
) -> list[OfferedOperation]:
    """Every repair, each enabled or disabled with the reason, the recommended one first (so Retry
    never leads for an error that a retry would only repeat)."""
    platform_pending = waits_for_platform(refund)
    offered = [
        OfferedOperation(
            operation=operation,
            refused_because=operation_refusal(
                name, refund, steps, open_errors=open_errors, platform_pending=platform_pending
            ),
            recommended=name == recommended,
        )
        for name, operation in OPERATIONS.items()
    ]
    if recommended is not None and any(o.recommended and o.enabled for o in offered):
        offered.sort(key=lambda o: not (o.recommended and o.enabled))
    else:
        offered = [OfferedOperation(o.operation, o.refused_because) for o in offered]
    return offered


def operations_worth_offering(refund: Refund, steps, *, open_errors: int) -> list[RefundOperation]:
    """The repairs that may apply to the refund as it stands (see operation_refusal)."""
    return [o.operation for o in operations_offered(refund, steps, open_errors=open_errors) if o.enabled]


@dataclass
class OperationReport:
    operation: RefundOperation
    done: list[int] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    # refund id -> its status label once the operation was done ("Processing", "Settled externally")
    new_status: dict[int, str] = field(default_factory=dict)

    def message(self, limit: int = 20) -> str:
        """Names each refund and where it stands now: "Refund 12 retried, now Processing."."""
        parts = [
            f"Refund {refund_id} {self.operation.done}, now {self.new_status[refund_id]}"
            if refund_id in self.new_status
            else f"Refund {refund_id} {self.operation.done}"
            for refund_id in self.done[:limit]
        ]
        if len(self.done) > limit:
            parts.append(f"and {len(self.done) - limit} more {self.operation.done}")
        if not self.done and not self.refused:
            parts.append(f"0 {self.operation.done}")
        parts += [f"refund {refund_id}: {reason.rstrip('.')}" for refund_id, reason in self.refused[:limit]]
        if len(self.refused) > limit:
            parts.append(f"and {len(self.refused) - limit} more refused")
        return "; ".join(parts) + "."

    @property
    def level(self) -> int:
        if not self.refused:
            return messages.SUCCESS
        return messages.WARNING if self.done else messages.ERROR


def run_operation(operation: RefundOperation, refunds: Iterable[Refund], *, user, note: str) -> OperationReport:
    """One service call per refund; a refusal of one never stops the others."""
    report = OperationReport(operation=operation)
    for refund in refunds:
        try:
            changed = operation.run(refund=refund, user=user, note=note)
        except ApplicationError as exc:
            report.refused.append((refund.pk, exc.message))
        else:
            report.done.append(refund.pk)
            current = changed if isinstance(changed, Refund) else refund
            report.new_status[refund.pk] = current.get_status_display()
    return report


def _refunds_for_confirmation(ids) -> list[Refund]:
    return list(
        Refund.objects.filter(pk__in=ids)
        .select_related("bag__merchant", "bag__order__app", "shopper_refund")
        .prefetch_related("transfer_reversals__transfer")
        .order_by("date_created", "pk")
    )


def _confirmation_rows(refunds: list[Refund], operation: RefundOperation) -> list[dict]:
    rows = []
    for refund in refunds:
        steps = refund_step_outcomes(refund)
        refused_because = operation_refusal(
            operation.name, refund, steps, open_errors=refund.errors.filter(resolved=False).count()
        )
        rows.append(
            {
                "refund": refund,
                "amount": format_amount(refund.amount, refund.refund_currency),
                "steps": [
                    {
                        "state": step.state,
                        "mark": STEP_MARKS[step.state],
                        "name": STEP_SHORT_NAMES[step.step],
                        "title": step_title(step),
                    }
                    for step in steps
                ],
                "warning": f"Will be refused: {refused_because}" if refused_because else "",
                "refused": bool(refused_because),
                "consequences": operation_money_consequences(operation.name, refund, steps),
            }
        )
    return rows


def _render_confirmation(request, model_admin, *, operation, refunds, form, hidden_action, back_url, title=None):
    opts = model_admin.model._meta
    rows = _confirmation_rows(refunds, operation)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title or f"{operation.title}: {len(refunds)} refund{'s' if len(refunds) != 1 else ''}",
        # Nothing the operator could confirm would apply: no confirm button, only the reasons.
        "all_refused": bool(rows) and all(row["refused"] for row in rows),
        "subtitle": None,
        "opts": opts,
        "operation": operation,
        "rows": rows,
        "form": form,
        "hidden_action": hidden_action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "back_url": back_url,
        "media": model_admin.media,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/refunds/refund/confirm_operation.html", context)


def _note_form(operation: RefundOperation, data=None) -> OperationNoteForm:
    """The operation's note form: bound to `data` when given (a POST), unbound otherwise."""
    return OperationNoteForm(data, note_required=operation.note_required, note_help=operation.note_help)


def refund_operation_action(model_admin, request, queryset: QuerySet[Refund], operation: RefundOperation):
    """The body of a changelist action: a confirmation page first (Django's intermediate-page
    pattern), the service calls once the operator confirms. Returns None to go back to the list."""
    require_operator(request)  # the action's `permissions` already hid it; this refuses a forged POST
    ids = list(queryset.order_by().values_list("pk", flat=True)[: MAX_REFUNDS_PER_OPERATION + 1])
    if len(ids) > MAX_REFUNDS_PER_OPERATION:
        model_admin.message_user(
            request,
            f"Select at most {MAX_REFUNDS_PER_OPERATION} refunds for one {operation.title.lower()}.",
            messages.ERROR,
        )
        return None
    refunds = _refunds_for_confirmation(ids)
    if request.POST.get("confirm") == "yes":
        form = _note_form(operation, request.POST)
        if form.is_valid():
            report = run_operation(operation, refunds, user=request.user, note=form.cleaned_data["note"])
            model_admin.message_user(request, report.message(), report.level)
            return None
    else:
        form = _note_form(operation)
    return _render_confirmation(
        request,
        model_admin,
        operation=operation,
        refunds=refunds,
        form=form,
        hidden_action=operation.action_name,
        back_url=request.get_full_path(),
    )


def _get_refund_or_404(model_admin, request, object_id) -> Refund:
    refund = model_admin.get_object(request, unquote(object_id))
    if refund is None:
        raise Http404("No refund with that id.")
    return refund


def refund_operation_view(model_admin, request, object_id, operation_name: str):
    """The same operation on one refund, from its change page; back to that page afterwards."""
    require_operator(request)
    operation = OPERATIONS[operation_name]
    refund = _get_refund_or_404(model_admin, request, object_id)
    change_url = reverse("admin:refunds_refund_change", args=[refund.pk], current_app=model_admin.admin_site.name)
    if request.method == "POST":
        form = _note_form(operation, request.POST)
        if form.is_valid():
            report = run_operation(operation, [refund], user=request.user, note=form.cleaned_data["note"])
            model_admin.message_user(request, report.message(), report.level)
            return HttpResponseRedirect(change_url)
    else:
        form = _note_form(operation)
    return _render_confirmation(
        request,
        model_admin,
        operation=operation,
        refunds=_refunds_for_confirmation([refund.pk]),
        form=form,
        hidden_action=None,
        back_url=change_url,
        title=f"{operation.title}: refund {refund.pk}",
    )


def refund_resolve_errors_view(model_admin, request, object_id):
    """Pick which open errors of one refund to resolve."""
    require_operator(request)
    refund = _get_refund_or_404(model_admin, request, object_id)
    change_url = reverse("admin:refunds_refund_change", args=[refund.pk], current_app=model_admin.admin_site.name)
    open_errors = list(RefundError.objects.filter(refund=refund, resolved=False).select_related("refund"))
    if not open_errors:
        model_admin.message_user(request, f"Refund {refund.pk} has no open errors.", messages.INFO)
        return HttpResponseRedirect(change_url)
    form = ErrorSelectionForm(request.POST if request.method == "POST" else None, open_errors=open_errors)
    if request.GET.get("error") in form.open_errors:  # "Resolve…" on one error row: just that one
        form.fields["error_ids"].initial = [request.GET["error"]]
    if request.method == "POST" and form.is_valid():
        text, level = _resolve_errors(form.selected_errors(), user=request.user, note=form.cleaned_data["note"])
        model_admin.message_user(
            request, f"Refund {refund.pk}: {text} Status unchanged: {refund.get_status_display()}.", level
        )
        return HttpResponseRedirect(change_url)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Resolve errors of refund {refund.pk}",
        "subtitle": None,
        "opts": model_admin.model._meta,
        "original": refund,
        "form": form,
        "back_url": change_url,
        "errors_admin_url": None,
        "hidden_action": None,
        "what_happens": (
            "Each selected error is marked resolved, with your name and the time, and an audit event is added "
            "to the refund.",
            "The refund's status does not change: retry it, mark it external or cancel it separately.",
        ),
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/refunds/refund/resolve_errors.html", context)


def _resolve_errors(errors: Iterable[RefundError], *, user, note: str) -> tuple[str, int]:
    done, refused = [], []
    for error in errors:
        try:
            refund_error_resolve(error=error, user=user, note=note)
        except ApplicationError as exc:
            refused.append(f"error {error.pk}: {exc.message.rstrip('.')}")
        else:
            done.append(error.pk)
    parts = [f"{len(done)} resolved"] if done or not refused else []
    text = "; ".join([*parts, *refused])
    level = messages.SUCCESS if not refused else messages.WARNING if done else messages.ERROR
    return text + ".", level


def error_resolve_action(model_admin, request, queryset: QuerySet[RefundError]):
    """RefundErrorAdmin's action: confirm, then resolve each selected error through the service."""
    require_operator(request)
    errors = list(queryset.select_related("refund").order_by("pk")[: MAX_REFUNDS_PER_OPERATION + 1])
    if len(errors) > MAX_REFUNDS_PER_OPERATION:
        model_admin.message_user(
            request, f"Select at most {MAX_REFUNDS_PER_OPERATION} errors at a time.", messages.ERROR
        )
        return None
    if request.POST.get("confirm") == "yes":
        form = OperationNoteForm(request.POST)
        if form.is_valid():
            text, level = _resolve_errors(errors, user=request.user, note=form.cleaned_data["note"])
            model_admin.message_user(request, text, level)
            return None
    else:
        form = OperationNoteForm()
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Resolve {len(errors)} error{'s' if len(errors) != 1 else ''}",
        "subtitle": None,
        "opts": model_admin.model._meta,
        "refund_errors": errors,
        "form": form,
        "hidden_action": "resolve_selected_errors",
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "back_url": request.get_full_path(),
        "what_happens": (
            "Each selected error is marked resolved, with your name and the time, and an audit event is added "
            "to its refund. Errors already resolved are reported and left as they are.",
            "No refund changes status.",
        ),
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/refunds/refund/resolve_errors.html", context)


def refund_reason_view(model_admin, request, object_id):
    """Correct the descriptive reason of one refund: the page's only edit, through an audited
    service (the refund page itself is read-only)."""
    require_operator(request)
    refund = _get_refund_or_404(model_admin, request, object_id)
    change_url = reverse("admin:refunds_refund_change", args=[refund.pk], current_app=model_admin.admin_site.name)
    initial = {"reason_code": refund.reason_code, "reason": refund.reason}
    form = RefundReasonForm(request.POST if request.method == "POST" else None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            refund_reason_change(
                refund=refund,
                user=request.user,
                reason_code=form.cleaned_data["reason_code"],
                reason=form.cleaned_data["reason"],
                note=form.cleaned_data["note"],
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            new_reason = ReasonCode(form.cleaned_data["reason_code"]).label
            model_admin.message_user(
                request,
                f"Refund {refund.pk}: reason changed to {new_reason}; "
                f"status unchanged ({refund.get_status_display()}).",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(change_url)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Change the reason of refund {refund.pk}",
        "subtitle": None,
        "opts": model_admin.model._meta,
        "original": refund,
        "form": form,
        "back_url": change_url,
        "what_happens": (
            "Only the descriptive reason changes; the refund's amounts and status do not, and no money moves.",
            "The old and new reason are written to the refund's timeline with your name.",
        ),
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/refunds/refund/change_reason.html", context)
