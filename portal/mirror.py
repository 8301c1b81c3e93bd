"""The merchant's "Refunds to mirror" task list (issue 14): channel refunds Violet could not record on
the merchant's platform (no refund API there, a partial refund the platform cannot take, no write
credentials, or money moved without an unreachable platform). The merchant records each by hand on
the platform and ticks it off here (done), or back on (undo). Thin views: the scoping selector reads,
refunds.services.forwarding.forwarding_mirror_mark writes (audited on the refund)."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from portal import presenters
from portal import selectors as scoped
from portal.views import portal_page
from refunds.services.forwarding import forwarding_mirror_mark
from violet_refunds.exceptions import InvalidTransition


def _task_row(task) -> dict:
    refund = task.refund
    currency = refund.refund_currency
    lines = [f"{line.order_sku.name} × {line.quantity_refunded}" for line in refund.skus.all()]
    if refund.shipping_amount:
        lines.append(f"shipping {presenters.money(refund.shipping_amount, currency)}")
    return {
        "task": task,
        "refund": refund,
        "order_id": refund.bag.external_id or f"bag {refund.bag_id}",
        "merchant": refund.bag.merchant.name,
        "amount": presenters.money(refund.amount, currency),
        "lines": lines,
        "why": task.reason or "the money moved while your platform was unreachable",
        "done": task.mirror_done_at is not None,
    }


@portal_page
def mirror_list(request):
    rows = [_task_row(task) for task in scoped.mirror_tasks_for_user(request.user)[:200]]
    return render(
        request,
        "portal/mirror.html",
        {"rows": rows, "open_count": sum(1 for row in rows if not row["done"])},
    )


@portal_page
@require_POST
def mirror_mark(request, task_id: int):
    task = scoped.mirror_task_get_for_user(request.user, task_id)
    done = request.POST.get("done") == "1"
    try:
        forwarding_mirror_mark(forwarding=task, done=done, user=request.user)
    except InvalidTransition as exc:
        messages.error(request, exc.message)
    else:
        order = task.refund.bag.external_id or task.refund.bag_id
        messages.success(
            request,
            f"Refund #{task.refund_id} of order {order} is marked mirrored."
            if done
            else f"Refund #{task.refund_id} of order {order} is back on your list.",
        )
    return redirect("portal:mirror")
