"""The operators' admin pages beyond Django's own: confirmation pages for the repair actions, the
refund notice an operator records for a merchant (SFCC Option 2), the CSV export and the triage
block of the admin index.

Every page here is a thin caller: it checks the operator's permission, asks the user to confirm,
calls a refunds.services function per refund and reports what each call did. The services write
the audit events (naming the operator) and refuse what a status forbids.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from platforms.models import InboundEvent
from refunds import selectors_admin
from refunds.admin_forms import (
    ErrorSelectionForm,
    NoticeLookupForm,
    OperationNoteForm,
    OperatorNoticeForm,
)
from refunds.amounts import bag_refundable_remaining
from refunds.models import Refund, RefundError, RefundSku, RefundSource, RefundStatus, RefundStep
from refunds.selectors_admin import StepState
from refunds.services import (
    RecordResult,
    refund_cancel,
    refund_error_resolve,
    refund_mark_external,
    refund_retry,
)
from refunds.services.notices import NoticeLine, RefundNoticesNotEnabled, refund_notice_record
from violet_refunds.admin import can_operate
from violet_refunds.exceptions import ApplicationError, InvalidTransition, ValidationFailed
from violet_refunds.money import AmountParts, format_amount, format_major

# One confirmation acts on at most this many refunds: each is a locked, audited service call (and
# a retry may call Stripe); a "select all 80,000" slip must not become a multi-minute request.
MAX_REFUNDS_PER_OPERATION = 200


def _require_operator(request) -> None:
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
            done="had their errors resolved",
            what_happens=(
                "Every open error of each refund is marked resolved, with your name and the time.",
                "The refunds' statuses do not change.",
            ),
            run=_resolve_open_errors,
        ),
    )
}


# Nothing left to repair in these; the buttons would only lead to a refusal.
_SETTLED_STATUSES = frozenset({RefundStatus.COMPLETED, RefundStatus.EXTERNAL, RefundStatus.CANCELED})


def operations_worth_offering(refund: Refund, steps, *, open_errors: int) -> list[RefundOperation]:
    """The buttons a refund's page shows. A hint only: each service still decides, and refuses
    what the refund's state does not allow at the moment the operator confirms."""
    settled = refund.status in _SETTLED_STATUSES
    money_moved = any(step.money_moved for step in steps)
    offered = {
        "retry": not settled,
        "mark-external": not settled,
        "cancel": not settled and not money_moved,
        "resolve-errors": open_errors > 0,
    }
    return [operation for name, operation in OPERATIONS.items() if offered[name]]


@dataclass
class OperationReport:
    operation: RefundOperation
    done: list[int] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)

    def message(self, limit: int = 20) -> str:
        parts = [f"{len(self.done)} {self.operation.done}"] if self.done or not self.refused else []
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
            operation.run(refund=refund, user=user, note=note)
        except ApplicationError as exc:
            report.refused.append((refund.pk, exc.message))
        else:
            report.done.append(refund.pk)
    return report


def _refunds_for_confirmation(ids) -> list[Refund]:
    return list(
        Refund.objects.filter(pk__in=ids)
        .select_related("bag__merchant", "bag__order__app", "shopper_refund")
        .prefetch_related("transfer_reversals__transfer")
        .order_by("date_created", "pk")
    )


STEP_SHORT_NAMES = {
    RefundStep.MERCHANT_REVERSAL: "Merchant",
    RefundStep.CHANNEL_REVERSAL: "Channel",
    RefundStep.SHOPPER_REFUND: "Shopper",
}
STEP_MARKS = {
    StepState.DONE: "✓",
    StepState.FAILED: "✗",
    StepState.IN_FLIGHT: "…",
    StepState.NOT_STARTED: "·",
    StepState.NOT_NEEDED: "–",
}
STEP_STATE_WORDS = {
    StepState.DONE: "money moved",
    StepState.FAILED: "failed, no money moved",
    StepState.IN_FLIGHT: "sent, outcome not recorded yet",
    StepState.NOT_STARTED: "not started",
    StepState.NOT_NEEDED: "nothing to reverse",
}


def step_title(outcome: selectors_admin.StepOutcome) -> str:
    """ "Reverse merchant transfer: money moved · 249.90 USD · trr_…" (a badge's hover text)."""
    title = f"{outcome.label}: {STEP_STATE_WORDS[outcome.state]}"
    if outcome.amount is not None:
        title += f" · {format_amount(outcome.amount, outcome.currency)}"
    if outcome.gateway_id:
        title += f" · {outcome.gateway_id}"
    if outcome.detail and outcome.state != StepState.DONE:
        title += f" · {outcome.detail}"
    return title


def _confirmation_rows(refunds: list[Refund], operation: RefundOperation) -> list[dict]:
    rows = []
    for refund in refunds:
        steps = selectors_admin.refund_step_outcomes(refund)
        moved = [step.label.lower() for step in steps if step.money_moved]
        warning = ""
        if operation.name == "cancel" and moved:
            warning = f"Money already moved ({', '.join(moved)}): this cancel will be refused."
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
                "warning": warning,
            }
        )
    return rows


def _render_confirmation(request, model_admin, *, operation, refunds, form, hidden_action, back_url, title=None):
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title or f"{operation.title}: {len(refunds)} refund{'s' if len(refunds) != 1 else ''}",
        "subtitle": None,
        "opts": opts,
        "operation": operation,
        "rows": _confirmation_rows(refunds, operation),
        "form": form,
        "hidden_action": hidden_action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "back_url": back_url,
        "media": model_admin.media,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/refunds/refund/confirm_operation.html", context)


def refund_operation_action(model_admin, request, queryset: QuerySet[Refund], operation: RefundOperation):
    """The body of a changelist action: a confirmation page first (Django's intermediate-page
    pattern), the service calls once the operator confirms. Returns None to go back to the list."""
    _require_operator(request)  # the action's `permissions` already hid it; this refuses a forged POST
    ids = list(queryset.order_by().values_list("pk", flat=True)[: MAX_REFUNDS_PER_OPERATION + 1])
    if len(ids) > MAX_REFUNDS_PER_OPERATION:
        model_admin.message_user(
            request,
            f"Select at most {MAX_REFUNDS_PER_OPERATION} refunds for one {operation.title.lower()}.",
            messages.ERROR,
        )
        return None
    refunds = _refunds_for_confirmation(ids)
    form_kwargs = {"note_required": operation.note_required, "note_help": operation.note_help}
    if request.POST.get("confirm") == "yes":
        form = OperationNoteForm(request.POST, **form_kwargs)
        if form.is_valid():
            report = run_operation(operation, refunds, user=request.user, note=form.cleaned_data["note"])
            model_admin.message_user(request, report.message(), report.level)
            return None
    else:
        form = OperationNoteForm(**form_kwargs)
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
    _require_operator(request)
    operation = OPERATIONS[operation_name]
    refund = _get_refund_or_404(model_admin, request, object_id)
    change_url = reverse("admin:refunds_refund_change", args=[refund.pk], current_app=model_admin.admin_site.name)
    form_kwargs = {"note_required": operation.note_required, "note_help": operation.note_help}
    if request.method == "POST":
        form = OperationNoteForm(request.POST, **form_kwargs)
        if form.is_valid():
            report = run_operation(operation, [refund], user=request.user, note=form.cleaned_data["note"])
            model_admin.message_user(request, report.message(), report.level)
            return HttpResponseRedirect(change_url)
    else:
        form = OperationNoteForm(**form_kwargs)
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
    _require_operator(request)
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
        report = _resolve_errors(form.selected_errors(), user=request.user, note=form.cleaned_data["note"])
        model_admin.message_user(request, report[0], report[1])
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
    _require_operator(request)
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


# --------------------------------------------------------------------------------------------------
# Failed refunds, CSV export
# --------------------------------------------------------------------------------------------------

TRIAGE_PARAMETER = "triage"
TRIAGE_FAILED = "failed"
TRIAGE_STUCK = "stuck"


def changelist_url(model_admin, **params) -> str:
    url = reverse("admin:refunds_refund_changelist", current_app=model_admin.admin_site.name)
    return f"{url}?{urlencode(params)}" if params else url


def failed_refunds_view(model_admin, request):
    """/admin/refunds/refund/failed/: a stable address for the failed-refunds list (oldest first)."""
    return HttpResponseRedirect(changelist_url(model_admin, **{TRIAGE_PARAMETER: TRIAGE_FAILED}))


_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _csv_text(value) -> str:
    """Text from merchants and platforms must not run as a formula when the file is opened in a
    spreadsheet (CSV injection): such cells get a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def _csv_money(amount: int | None, currency: str) -> str:
    return "" if amount is None or not currency else format_major(amount, currency)


def _csv_time(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).isoformat() if value else ""


CSV_HEADER = (
    "refund_id",
    "status",
    "source",
    "merchant_id",
    "merchant",
    "platform",
    "app_id",
    "app",
    "order_id",
    "bag_id",
    "bag_external_id",
    "refund_external_id",
    "currency",
    "amount",
    "sub_total_amount",
    "shipping_amount",
    "tax_amount",
    "platform_currency",
    "merchant_transfer_reversal_amount",
    "developer_transfer_reversal_amount",
    "reason_code",
    "reason",
    "last_error_code",
    "last_error_message",
    "date_created",
    "date_completed",
)


def _csv_row(refund: Refund) -> tuple:
    bag, currency = refund.bag, refund.refund_currency
    merchant, app = bag.merchant, bag.order.app
    return (
        refund.pk,
        refund.status,
        refund.source,
        merchant.pk,
        _csv_text(merchant.name),
        merchant.platform,
        app.pk,
        _csv_text(app.name),
        bag.order_id,
        bag.pk,
        _csv_text(bag.external_id),
        _csv_text(refund.external_id),
        currency,
        _csv_money(refund.amount, currency),
        _csv_money(refund.sub_total_amount, currency),
        _csv_money(refund.shipping_amount, currency),
        _csv_money(refund.tax_amount, currency),
        refund.platform_currency,
        _csv_money(refund.merchant_transfer_reversal_amount_platform_currency, refund.platform_currency),
        _csv_money(refund.developer_transfer_reversal_amount_platform_currency, refund.platform_currency),
        refund.reason_code,
        _csv_text(refund.reason),
        refund.last_error_code or "",
        _csv_text(refund.last_error_message),
        _csv_time(refund.date_created),
        _csv_time(refund.date_completed),
    )


class _Echo:
    """csv.writer writes each row here and gets the line back to stream it."""

    def write(self, value):
        return value


def export_csv_view(model_admin, request):
    """The refund list as CSV, with the filters, search and ordering of the page it was opened from."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    try:
        changelist = model_admin.get_changelist_instance(request)
    except IncorrectLookupParameters:
        return HttpResponseRedirect(changelist_url(model_admin, e=1))
    latest_error = RefundError.objects.filter(refund=OuterRef("pk")).order_by("-pk")
    queryset = (
        changelist.queryset.prefetch_related(None)
        .select_related("bag__merchant", "bag__order__app")
        .annotate(
            last_error_code=Subquery(latest_error.values("error_code")[:1]),
            last_error_message=Subquery(latest_error.values("error_message")[:1]),
        )
    )
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(CSV_HEADER)
        for refund in queryset.iterator(chunk_size=2000):
            yield writer.writerow(_csv_row(refund))

    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="refunds-{stamp}.csv"'
    return response


# --------------------------------------------------------------------------------------------------
# The operator's refund notice (SFCC Option 2)
# --------------------------------------------------------------------------------------------------


class _DryRunRollback(Exception):
    def __init__(self, result: RecordResult, lines: list[RefundSku]):
        super().__init__("dry run")
        self.result, self.lines = result, lines


def _notice_kwargs(form: OperatorNoticeForm, user) -> dict:
    """refund_notice_record's arguments: the same notice rule as the merchant portal and its API."""
    data = form.cleaned_data
    return {
        "bag": form.bag,
        "source": RefundSource.OPERATOR,
        "actor": f"operator:{user.get_username()}",
        "user": user,
        "notices_enabled": selectors_admin.merchant_accepts_operator_notice(form.bag.merchant),
        "lines": [NoticeLine(order_sku_id=pk, quantity=qty) for pk, qty in form.sku_quantities().items()],
        # Always explicit, even when 0: with no parts at all refund_record would refund the whole bag.
        "shipping_amount": data["shipping"],
        "tax_amount": data["tax"],
        "reference": data["external_id"],
        "request_key": f"admin-notice-{data['form_token']}",
        "reason": data["reason"],
        "reason_code": data["reason_code"],
    }


def _dry_run_record(kwargs: dict) -> tuple[RecordResult, list[RefundSku]]:
    """What refund_notice_record would record, computed by the service itself in a transaction that
    is then rolled back: the preview can never disagree with the real thing."""
    try:
        with transaction.atomic():
            result = refund_notice_record(enqueue=False, **kwargs)
            lines = list(result.refund.skus.select_related("order_sku"))
            raise _DryRunRollback(result, lines)
    except _DryRunRollback as rollback:
        return rollback.result, rollback.lines


_FORM_FIELD_FOR_SERVICE_FIELD = {
    "shipping_amount": "shipping",
    "tax_amount": "tax",
    "external_id": "external_id",
    "reference": "external_id",
    "reason": "reason",
    "reason_code": "reason_code",
}


def _attach_service_errors(form: OperatorNoticeForm, exc: ApplicationError) -> None:
    if not exc.field_errors:
        form.add_error(None, exc.message)
        return
    for service_field, problems in exc.field_errors.items():
        target = _FORM_FIELD_FOR_SERVICE_FIELD.get(service_field)
        for problem in problems:
            form.add_error(target, problem if target else f"{service_field}: {problem}")


def record_notice_view(model_admin, request):
    """Record a refund a merchant reported (SFCC Option 2) on the merchant's behalf.

    Step 1 (GET): merchant and order. Step 2: quantities per SKU, shipping, tax, reason and the
    merchant's refund reference; "Preview" shows the amount and the merchant/channel split, "Confirm"
    records it through refund_notice_record (source OPERATOR), the merchant portal's own notice rule
    (a `cancel:` reference is refused here too). The merchant's reference is the refund's external id
    and the form token its request key, so a double submit records one refund.
    """
    _require_operator(request)
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Record a refund notice for a merchant",
        "subtitle": None,
        "opts": opts,
        "media": model_admin.media,
    }
    request.current_app = model_admin.admin_site.name
    lookup = NoticeLookupForm(request.GET if "merchant" in request.GET else None)
    bag = None
    if lookup.is_bound and lookup.is_valid():
        bag = selectors_admin.bag_for_operator_notice(
            merchant=lookup.cleaned_data["merchant"], reference=lookup.cleaned_data["order"]
        )
        if bag is None:
            lookup.add_error("order", "This merchant has no order with that id.")
    context["lookup"] = lookup
    if bag is None:
        return TemplateResponse(request, "admin/refunds/refund/record_notice.html", context)

    skus_left = selectors_admin.bag_skus_left(bag)
    form = OperatorNoticeForm(request.POST if request.method == "POST" else None, bag=bag, skus_left=skus_left)
    remaining = bag_refundable_remaining(bag)
    context.update(
        bag=bag,
        form=form,
        remaining={
            "items": format_amount(remaining.parts.sub_total, bag.currency),
            "shipping": format_amount(remaining.parts.shipping, bag.currency),
            "tax": format_amount(remaining.parts.tax, bag.currency),
            "total": format_amount(remaining.total, bag.currency),
        },
    )
    if request.method != "POST" or "_edit" in request.POST or not form.is_valid():
        return TemplateResponse(request, "admin/refunds/refund/record_notice.html", context)

    kwargs = _notice_kwargs(form, request.user)
    if "_confirm" in request.POST:
        try:
            result = refund_notice_record(**kwargs)
        except (ValidationFailed, RefundNoticesNotEnabled) as exc:
            _attach_service_errors(form, exc)
            return TemplateResponse(request, "admin/refunds/refund/record_notice.html", context)
        refund = result.refund
        amount = format_amount(refund.amount, refund.refund_currency)
        if result.created:
            model_admin.message_user(
                request,
                f"Recorded refund {refund.pk} of {amount} for order {bag.external_id or bag.pk}; processing started.",
                messages.SUCCESS,
            )
        else:
            model_admin.message_user(
                request,
                f"This notice was already recorded as refund {refund.pk} ({amount}); nothing new was recorded.",
                messages.WARNING,
            )
        return HttpResponseRedirect(
            reverse("admin:refunds_refund_change", args=[refund.pk], current_app=model_admin.admin_site.name)
        )

    try:
        result, lines = _dry_run_record(kwargs)
    except (ValidationFailed, RefundNoticesNotEnabled) as exc:
        _attach_service_errors(form, exc)
        return TemplateResponse(request, "admin/refunds/refund/record_notice.html", context)
    refund = result.refund
    parts = AmountParts(sub_total=refund.sub_total_amount, shipping=refund.shipping_amount, tax=refund.tax_amount)
    split = selectors_admin.refund_split_preview(bag=bag, parts=parts)
    context.update(
        preview={
            "existing": None if result.created else refund,
            "lines": [
                {
                    "name": line.order_sku.name,
                    "quantity": line.quantity_refunded,
                    "price": format_amount(line.order_sku.price, bag.currency),
                }
                for line in lines
            ],
            "items": format_amount(refund.sub_total_amount, bag.currency),
            "shipping": format_amount(refund.shipping_amount, bag.currency),
            "tax": format_amount(refund.tax_amount, bag.currency),
            "amount": format_amount(refund.amount, bag.currency),
            "merchant_reversal": _leg_text(split.merchant, split.merchant_currency, bag.currency),
            "channel_reversal": _leg_text(split.channel, split.channel_currency, bag.currency),
            "commission_at_checkout": format_amount(split.commission_at_checkout, bag.currency),
            "problem": split.problem,
        }
    )
    return TemplateResponse(request, "admin/refunds/refund/record_notice.html", context)


def _leg_text(leg, transfer_currency: str, bag_currency: str) -> str:
    if leg is None:
        return "no transfer to reverse"
    text = format_amount(leg.amount, transfer_currency)
    if transfer_currency and transfer_currency != bag_currency:
        text += f" ({format_amount(leg.bag_amount, bag_currency)})"
    return text


# --------------------------------------------------------------------------------------------------
# The admin index: triage counts and the 30-day chart
# --------------------------------------------------------------------------------------------------

# Stacking order (bottom up) and colours of the chart; the same colours as the status badges.
CHART_STATUSES = (
    (RefundStatus.COMPLETED, "#2e7d32"),
    (RefundStatus.EXTERNAL, "#6a1b9a"),
    (RefundStatus.PROCESSING, "#1565c0"),
    (RefundStatus.PARTIALLY_COMPLETED, "#e65100"),
    (RefundStatus.FAILED, "#c62828"),
    (RefundStatus.CANCELED, "#757575"),
)
CHART_HEIGHT = 160
CHART_BAR_WIDTH = 18
CHART_BAR_GAP = 6
CHART_LEFT = 36  # room for the y-axis labels


def _chart(model_admin, days: list[selectors_admin.DayOfRefunds]) -> dict:
    """Bars as SVG rectangles, computed here so the template only draws them."""
    peak = max((day.total for day in days), default=0)
    scale = CHART_HEIGHT / peak if peak else 0
    bars = []
    for index, day in enumerate(days):
        x = CHART_LEFT + index * (CHART_BAR_WIDTH + CHART_BAR_GAP)
        stacked = 0
        segments = []
        for status, colour in CHART_STATUSES:
            count = day.counts.get(status, 0)
            if not count:
                continue
            # From cumulative counts, so the rounded segments of the tallest bar add up to the axis.
            bottom = round(CHART_HEIGHT - stacked * scale, 2)
            stacked += count
            top = round(CHART_HEIGHT - stacked * scale, 2)
            top = min(top, bottom - 1)  # a single refund stays visible next to a busy day's peak
            segments.append(
                {"status": status, "count": count, "colour": colour, "y": top, "height": round(bottom - top, 2)}
            )
        start = timezone.make_aware(dt.datetime.combine(day.day, dt.time.min))
        end = timezone.make_aware(dt.datetime.combine(day.day + dt.timedelta(days=1), dt.time.min))
        bars.append(
            {
                "x": x,
                "label_x": x + CHART_BAR_WIDTH / 2,
                "day": day.day,
                "total": day.total,
                "segments": segments,
                "show_label": index % 5 == 0 or index == len(days) - 1,
                "href": changelist_url(
                    model_admin,
                    date_created__gte=start.isoformat(),
                    date_created__lt=end.isoformat(),
                ),
            }
        )
    width = CHART_LEFT + len(days) * (CHART_BAR_WIDTH + CHART_BAR_GAP)
    return {
        "bars": bars,
        "peak": peak,
        "width": width,
        "height": CHART_HEIGHT,
        "view_height": CHART_HEIGHT + 24,
        "bar_width": CHART_BAR_WIDTH,
        "left": CHART_LEFT,
        "legend": [{"status": status, "colour": colour} for status, colour in CHART_STATUSES],
        "total": sum(day.total for day in days),
    }


def index_triage_context(model_admin, request) -> dict:
    """Counts for the four things an operator checks first, each linking to its list, and the chart."""
    if not request.user.has_perm("refunds.view_refund"):
        return {}
    now = timezone.now()
    counts = selectors_admin.triage_counts(now=now)
    since = (now - dt.timedelta(hours=24)).isoformat(timespec="seconds")
    cards = [
        {
            "label": "Failed",
            "count": counts.failed,
            "href": changelist_url(model_admin, status__exact=RefundStatus.FAILED, **{TRIAGE_PARAMETER: TRIAGE_FAILED}),
            "tone": "failed",
            "help": "The shopper was not refunded; an operator must retry, mark external or cancel.",
        },
        {
            "label": "Partially completed",
            "count": counts.partially_completed,
            "href": changelist_url(
                model_admin, status__exact=RefundStatus.PARTIALLY_COMPLETED, **{TRIAGE_PARAMETER: TRIAGE_FAILED}
            ),
            "tone": "partial",
            "help": "The shopper was refunded but a transfer reversal failed: funds to recover.",
        },
        {
            "label": "Stuck in processing",
            "count": counts.stuck,
            "href": changelist_url(model_admin, **{TRIAGE_PARAMETER: TRIAGE_STUCK}),
            "tone": "stuck",
            "help": "PROCESSING with nobody working on it; the sweep re-enqueues these.",
        },
    ]
    if request.user.has_perm("platforms.view_inboundevent"):
        cards.append(
            {
                "label": "Inbound events failed (24 h)",
                "count": counts.inbound_failed_last_24h,
                "href": reverse("admin:platforms_inboundevent_changelist", current_app=model_admin.admin_site.name)
                + "?"
                + urlencode({"status__exact": InboundEvent.Status.FAILED, "date_created__gte": since}),
                "tone": "events",
                "help": "Platform webhooks or polls that could not be processed; replay them once fixed.",
            }
        )
    return {
        "triage": {
            "cards": cards,
            "needing_attention": counts.needing_attention,
            "failed_refunds_url": reverse("admin:refunds_refund_failed", current_app=model_admin.admin_site.name),
            "notice_url": (
                reverse("admin:refunds_refund_record_notice", current_app=model_admin.admin_site.name)
                if can_operate(request.user)
                else None
            ),
            "chart": _chart(model_admin, selectors_admin.refunds_per_day(days=30, now=now)),
        }
    }
