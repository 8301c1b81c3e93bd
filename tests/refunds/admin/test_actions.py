"""Every repair action, through the admin as an operator clicks it: a confirmation page first, then
one service call per refund. Each is tested for the happy path, for a viewer (hidden and refused)
and for a refund whose status forbids it, asserting the rows and the audit events."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from payments.models import ShopperRefund
from refunds.models import FinancialStatus, OrderSku, Refund, RefundError, RefundEvent, RefundStatus
from refunds.services import RefundSkuLine
from tests.factories import RefundErrorFactory
from tests.refunds.admin.helpers import record
from tests.world import funded_bag

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:refunds_refund_changelist"
REFUND_ACTIONS = (
    "retry_refunds",
    "mark_refunds_external",
    "cancel_refunds",
    "resolve_refund_errors",
    "retry_forwarding",
    "move_money_without_platform",
)


def changelist_url(**params):
    url = reverse(CHANGELIST)
    return url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


def choose_action(client, action, refunds, url=None):
    """The changelist's action form as the browser submits it (with `index`): the confirmation page."""
    return client.post(
        url or changelist_url(),
        {"action": action, "_selected_action": [r.pk for r in refunds], "index": "0"},
    )


def confirm_action(client, action, refunds, note="", url=None):
    """The confirmation page's form (no `index`, confirm=yes): the service calls."""
    return client.post(
        url or changelist_url(),
        {"action": action, "_selected_action": [r.pk for r in refunds], "confirm": "yes", "note": note},
    )


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


def events(refund, kind):
    return list(RefundEvent.objects.filter(refund=refund, kind=kind).order_by("pk"))


def status_of(refund):
    return Refund.objects.values_list("status", flat=True).get(pk=refund.pk)


# --- the changelist offers exactly these actions, each with a confirmation page ---


def test_operator_sees_every_repair_action(operator_client):
    response = operator_client.get(changelist_url())
    choices = [value for value, _label in response.context["action_form"].fields["action"].choices if value]
    assert choices == list(REFUND_ACTIONS)


# The forwarding answers apply only to a refund waiting for its platform
# (tests/refunds/admin/test_forwarding_actions.py).
FORWARDING_ACTIONS = ("retry_forwarding", "move_money_without_platform")


@pytest.mark.parametrize(
    "action", [action for action in REFUND_ACTIONS if action != "cancel_refunds" and action not in FORWARDING_ACTIONS]
)
def test_choosing_an_action_only_shows_the_confirmation_page(operator_client, failed_refund, action):
    before = RefundEvent.objects.filter(refund=failed_refund).count()
    response = choose_action(operator_client, action, [failed_refund])
    assert response.status_code == 200
    assert response.templates[0].name == "admin/refunds/refund/confirm_operation.html"
    body = response.content.decode()
    assert "What will happen" in body
    assert f'name="_selected_action" value="{failed_refund.pk}"' in body
    assert f'name="action" value="{action}"' in body
    # Nothing happened yet.
    assert status_of(failed_refund) == RefundStatus.FAILED
    assert RefundEvent.objects.filter(refund=failed_refund).count() == before
    assert RefundError.objects.filter(refund=failed_refund, resolved=False).count() == 1


# --- retry ---


def test_retry_moves_the_money_and_names_the_operator(
    operator_client, operator, failed_refund, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):  # the retry enqueues processing on commit
        response = confirm_action(operator_client, "retry_refunds", [failed_refund], note="Dispute closed")
    assert response.status_code == 302
    assert messages_of(response) == [f"Refund {failed_refund.pk} retried, now Processing."]
    failed_refund.refresh_from_db()
    assert failed_refund.status == RefundStatus.COMPLETED
    assert ShopperRefund.objects.get(refund=failed_refund).status == ShopperRefund.Status.SUCCEEDED
    [retry] = events(failed_refund, RefundEvent.Kind.RETRY_REQUESTED)
    assert (retry.actor, retry.user, retry.message) == ("operator:olivia", operator, "Dispute closed")
    assert (retry.from_status, retry.to_status) == (RefundStatus.FAILED, RefundStatus.PROCESSING)


def test_retry_is_refused_for_a_completed_refund_and_reported_per_row(
    operator_client, failed_refund, completed_refund, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = confirm_action(operator_client, "retry_refunds", [failed_refund, completed_refund])
    assert messages_of(response) == [
        f"Refund {failed_refund.pk} retried, now Processing; "
        f"refund {completed_refund.pk}: A COMPLETED refund cannot be retried."
    ]
    assert status_of(completed_refund) == RefundStatus.COMPLETED
    assert events(completed_refund, RefundEvent.Kind.RETRY_REQUESTED) == []
    assert status_of(failed_refund) == RefundStatus.COMPLETED


# --- mark external ---


def test_mark_external_requires_a_note(operator_client, failed_refund):
    response = confirm_action(operator_client, "mark_refunds_external", [failed_refund], note="  ")
    assert response.status_code == 200  # the confirmation page again, with the error
    assert response.context["form"].errors == {"note": ["This field is required."]}
    assert status_of(failed_refund) == RefundStatus.FAILED
    assert events(failed_refund, RefundEvent.Kind.MARKED_EXTERNAL) == []


def test_mark_external_settles_the_refund_with_the_note(operator_client, operator, failed_refund):
    response = confirm_action(
        operator_client, "mark_refunds_external", [failed_refund], note="Merchant refunded by bank transfer"
    )
    assert messages_of(response) == [f"Refund {failed_refund.pk} marked external, now External."]
    failed_refund.refresh_from_db()
    assert failed_refund.status == RefundStatus.EXTERNAL
    [event] = events(failed_refund, RefundEvent.Kind.MARKED_EXTERNAL)
    assert (event.actor, event.user, event.message) == (
        "operator:olivia",
        operator,
        "Merchant refunded by bank transfer",
    )
    assert failed_refund.bag.__class__.objects.get(pk=failed_refund.bag_id).financial_status == (
        FinancialStatus.REFUNDED
    )


def test_mark_external_is_refused_for_a_completed_refund(operator_client, completed_refund):
    response = confirm_action(operator_client, "mark_refunds_external", [completed_refund], note="by cheque")
    assert messages_of(response) == [f"refund {completed_refund.pk}: A COMPLETED refund cannot be marked external."]
    assert status_of(completed_refund) == RefundStatus.COMPLETED
    assert events(completed_refund, RefundEvent.Kind.MARKED_EXTERNAL) == []


# --- cancel ---


def test_cancel_before_money_moved_releases_the_quantities(operator_client, operator):
    bag = funded_bag(skus=((5000, 2),))
    sku = bag.skus.get()
    refund = record(bag, skus=[RefundSkuLine(order_sku_id=sku.pk, quantity=2)])
    assert OrderSku.objects.get(pk=sku.pk).quantity_refunded == 2

    response = confirm_action(operator_client, "cancel_refunds", [refund], note="Recorded twice")
    assert messages_of(response) == [f"Refund {refund.pk} canceled, now Canceled."]
    assert status_of(refund) == RefundStatus.CANCELED
    assert OrderSku.objects.get(pk=sku.pk).quantity_refunded == 0
    [event] = events(refund, RefundEvent.Kind.CANCELED)
    assert (event.actor, event.user, event.message) == ("operator:olivia", operator, "Recorded twice")


def test_cancel_is_refused_once_money_moved(operator_client, failed_refund, completed_refund):
    # The failed refund reversed both transfers before the shopper refund failed: money moved.
    confirmation = choose_action(operator_client, "cancel_refunds", [failed_refund])
    body = confirmation.content.decode()
    assert "Will be refused: Money already moved" in body
    # Nothing could be confirmed: the page offers no confirm button, only the way back.
    assert confirmation.context["all_refused"] and 'id="confirm-operation"' not in body
    assert 'id="operation-refused"' in body

    response = confirm_action(operator_client, "cancel_refunds", [failed_refund, completed_refund])
    assert messages_of(response) == [
        f"refund {failed_refund.pk}: Money has already moved for this refund; it cannot be canceled; "
        f"refund {completed_refund.pk}: A COMPLETED refund cannot be canceled."
    ]
    assert (status_of(failed_refund), status_of(completed_refund)) == (RefundStatus.FAILED, RefundStatus.COMPLETED)
    assert events(failed_refund, RefundEvent.Kind.CANCELED) == events(completed_refund, RefundEvent.Kind.CANCELED) == []


# --- resolve errors (from the refund list, the refund page and the error list) ---


def test_resolve_refund_errors_resolves_every_open_error(operator_client, operator, failed_refund):
    response = confirm_action(operator_client, "resolve_refund_errors", [failed_refund], note="Dispute lost")
    assert messages_of(response) == [f"Refund {failed_refund.pk} had its open errors resolved, now Failed."]
    error = RefundError.objects.get(refund=failed_refund)
    assert (error.resolved, error.resolved_by) == (True, operator)
    assert error.date_resolved is not None
    [event] = events(failed_refund, RefundEvent.Kind.ERROR_RESOLVED)
    assert (event.actor, event.message, event.data) == ("operator:olivia", "Dispute lost", {"error_id": error.pk})
    assert status_of(failed_refund) == RefundStatus.FAILED  # resolving does not change the status


def test_resolve_refund_errors_is_refused_without_open_errors(operator_client, completed_refund):
    response = confirm_action(operator_client, "resolve_refund_errors", [completed_refund])
    assert messages_of(response) == [f"refund {completed_refund.pk}: It has no open errors."]
    assert events(completed_refund, RefundEvent.Kind.ERROR_RESOLVED) == []


def test_error_list_action_resolves_selected_errors_and_reports_resolved_ones(operator_client, operator):
    open_error = RefundErrorFactory()
    done_error = RefundErrorFactory(resolved=True)
    url = reverse("admin:refunds_refunderror_changelist")
    confirmation = operator_client.post(
        url, {"action": "resolve_selected_errors", "_selected_action": [open_error.pk, done_error.pk], "index": "0"}
    )
    assert confirmation.status_code == 200
    assert not RefundError.objects.get(pk=open_error.pk).resolved

    response = operator_client.post(
        url,
        {"action": "resolve_selected_errors", "_selected_action": [open_error.pk, done_error.pk], "confirm": "yes"},
    )
    assert messages_of(response) == [f"1 resolved; error {done_error.pk}: This error is already resolved."]
    open_error.refresh_from_db()
    assert (open_error.resolved, open_error.resolved_by) == (True, operator)
    assert len(events(open_error.refund, RefundEvent.Kind.ERROR_RESOLVED)) == 1
    assert events(done_error.refund, RefundEvent.Kind.ERROR_RESOLVED) == []


def test_refund_page_resolves_only_the_chosen_errors(operator_client, operator, failed_refund):
    other = RefundErrorFactory(refund=failed_refund, error_message="A second problem")
    first = RefundError.objects.filter(refund=failed_refund).exclude(pk=other.pk).get()
    url = reverse("admin:refunds_refund_resolve_errors", args=[failed_refund.pk])

    page = operator_client.get(url, {"error": other.pk})
    assert page.context["form"]["error_ids"].initial == [str(other.pk)]

    response = operator_client.post(url, {"error_ids": [str(other.pk)], "note": "Known issue"})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:refunds_refund_change", args=[failed_refund.pk])
    assert RefundError.objects.get(pk=other.pk).resolved
    assert not RefundError.objects.get(pk=first.pk).resolved
    [event] = events(failed_refund, RefundEvent.Kind.ERROR_RESOLVED)
    assert (event.actor, event.data) == ("operator:olivia", {"error_id": other.pk})


# --- the same operations from one refund's page ---


@pytest.mark.parametrize(
    ("url_name", "note", "status_after", "event_kind"),
    [
        ("admin:refunds_refund_retry", "", RefundStatus.COMPLETED, RefundEvent.Kind.RETRY_REQUESTED),
        (
            "admin:refunds_refund_mark_external",
            "Paid by cheque",
            RefundStatus.EXTERNAL,
            RefundEvent.Kind.MARKED_EXTERNAL,
        ),
    ],
)
def test_refund_page_operation_confirms_then_acts_and_returns_to_the_refund(
    operator_client, failed_refund, url_name, note, status_after, event_kind, django_capture_on_commit_callbacks
):
    url = reverse(url_name, args=[failed_refund.pk])
    page = operator_client.get(url)
    assert page.status_code == 200 and "What will happen" in page.content.decode()
    assert status_of(failed_refund) == RefundStatus.FAILED

    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(url, {"note": note})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:refunds_refund_change", args=[failed_refund.pk])
    assert status_of(failed_refund) == status_after
    assert [event.actor for event in events(failed_refund, event_kind)] == ["operator:olivia"]


def test_refund_page_cancel_of_an_unprocessed_refund(operator_client, unprocessed_refund):
    response = operator_client.post(reverse("admin:refunds_refund_cancel", args=[unprocessed_refund.pk]), {})
    assert response.status_code == 302
    assert status_of(unprocessed_refund) == RefundStatus.CANCELED
    assert len(events(unprocessed_refund, RefundEvent.Kind.CANCELED)) == 1


def test_refund_page_operation_in_a_wrong_status_reports_why(operator_client, completed_refund):
    response = operator_client.post(reverse("admin:refunds_refund_retry", args=[completed_refund.pk]), {}, follow=True)
    assert f"refund {completed_refund.pk}: A COMPLETED refund cannot be retried." in messages_of(response)
    assert status_of(completed_refund) == RefundStatus.COMPLETED
    assert events(completed_refund, RefundEvent.Kind.RETRY_REQUESTED) == []


def test_operation_page_of_a_missing_refund_is_404(operator_client):
    assert operator_client.get(reverse("admin:refunds_refund_retry", args=[999999])).status_code == 404


def test_refund_page_shows_the_operations_and_what_each_step_did(operator_client, failed_refund):
    response = operator_client.get(reverse("admin:refunds_refund_change", args=[failed_refund.pk]))
    panel = response.context["triage_panel"]
    assert [(step["outcome"].step, step["outcome"].state) for step in panel["steps"]] == [
        ("MERCHANT_REVERSAL", "done"),
        ("CHANNEL_REVERSAL", "done"),
        ("SHOPPER_REFUND", "failed"),
    ]
    assert panel["open_errors"] == 1
    # Money moved (both reversals), so cancel is disabled with the reason. The charge is disputed:
    # the recommended step (resolve the error with a dispute note) leads, Retry does not.
    operations = response.context["refund_operations"]
    assert [(op["title"], op["enabled"], op["recommended"]) for op in operations] == [
        ("Resolve open errors", True, True),
        ("Retry processing", True, False),
        ("Mark as settled outside the network", True, False),
        ("Cancel (before any money moved)", False, False),
        ("Retry forwarding to the platform", False, False),
        ("Move the money without the platform", False, False),
    ]
    by_title = {op["title"]: op for op in operations}
    assert by_title["Cancel (before any money moved)"]["refused_because"].startswith("Money already moved")
    assert by_title["Retry forwarding to the platform"]["refused_because"] == (
        "The refund is not waiting for the merchant's platform."
    )
    body = response.content.decode()
    assert reverse("admin:refunds_refund_retry", args=[failed_refund.pk]) in body
    assert reverse("admin:refunds_refund_resolve_errors", args=[failed_refund.pk]) + "?error=" in body
    for linked in ("refunds_bag_change", "refunds_order_change", "platforms_merchant_change", "refunds_app_change"):
        assert reverse(f"admin:{linked}", args=[_linked_pk(failed_refund, linked)]) in body


@pytest.mark.parametrize(
    ("refund_fixture", "offered"),
    [
        (
            "unprocessed_refund",
            ["Retry processing", "Mark as settled outside the network", "Cancel (before any money moved)"],
        ),
        ("completed_refund", []),
    ],
)
def test_refund_page_offers_only_operations_that_can_apply(request, operator_client, refund_fixture, offered):
    refund = request.getfixturevalue(refund_fixture)
    response = operator_client.get(reverse("admin:refunds_refund_change", args=[refund.pk]))
    assert [op["title"] for op in response.context["refund_operations"] if op["enabled"]] == offered
    disabled = [op for op in response.context["refund_operations"] if not op["enabled"]]
    assert all(op["refused_because"] for op in disabled)


def _linked_pk(refund, url_name):
    return {
        "refunds_bag_change": refund.bag_id,
        "refunds_order_change": refund.bag.order_id,
        "platforms_merchant_change": refund.bag.merchant_id,
        "refunds_app_change": refund.bag.order.app_id,
    }[url_name]


# --- viewers: actions hidden and refused ---


def test_viewer_sees_no_actions_and_no_operation_buttons(viewer_client, failed_refund):
    response = viewer_client.get(changelist_url())
    assert response.status_code == 200
    assert response.context["action_form"] is None
    assert response.context["notice_url"] is None
    page = viewer_client.get(reverse("admin:refunds_refund_change", args=[failed_refund.pk]))
    assert page.status_code == 200
    assert "refund_operations" not in page.context
    assert reverse("admin:refunds_refund_retry", args=[failed_refund.pk]) not in page.content.decode()
    assert "?error=" not in page.content.decode()


@pytest.mark.parametrize("action", REFUND_ACTIONS)
def test_viewer_posting_an_action_changes_nothing(viewer_client, failed_refund, action):
    events_before = RefundEvent.objects.filter(refund=failed_refund).count()
    for post in (choose_action, confirm_action):
        response = post(viewer_client, action, [failed_refund])
        assert response.templates[0].name != "admin/refunds/refund/confirm_operation.html"
    assert status_of(failed_refund) == RefundStatus.FAILED
    assert RefundEvent.objects.filter(refund=failed_refund).count() == events_before
    assert RefundError.objects.filter(refund=failed_refund, resolved=False).count() == 1


@pytest.mark.parametrize("url_name", ["retry", "mark_external", "cancel", "resolve_errors"])
def test_viewer_is_refused_the_refund_page_operations(viewer_client, failed_refund, url_name):
    url = reverse(f"admin:refunds_refund_{url_name}", args=[failed_refund.pk])
    events_before = RefundEvent.objects.filter(refund=failed_refund).count()
    assert viewer_client.get(url).status_code == 403
    assert viewer_client.post(url, {"note": "x", "error_ids": []}).status_code == 403
    assert status_of(failed_refund) == RefundStatus.FAILED
    assert RefundEvent.objects.filter(refund=failed_refund).count() == events_before


def test_viewer_cannot_resolve_from_the_error_list(viewer_client, failed_refund):
    error = RefundError.objects.get(refund=failed_refund)
    url = reverse("admin:refunds_refunderror_changelist")
    response = viewer_client.get(url)
    assert response.status_code == 200 and response.context["action_form"] is None
    viewer_client.post(url, {"action": "resolve_selected_errors", "_selected_action": [error.pk], "confirm": "yes"})
    assert not RefundError.objects.get(pk=error.pk).resolved
    assert events(failed_refund, RefundEvent.Kind.ERROR_RESOLVED) == []


def test_viewer_cannot_change_the_refund_reason(viewer_client, failed_refund):
    url = reverse("admin:refunds_refund_change", args=[failed_refund.pk])
    assert viewer_client.post(url, {"reason_code": "FRAUD", "reason": "x"}).status_code == 403
    assert Refund.objects.get(pk=failed_refund.pk).reason_code == failed_refund.reason_code


def test_a_selection_larger_than_the_cap_is_refused(operator_client, failed_refund, settings, monkeypatch):
    from refunds.admin import operations

    monkeypatch.setattr(operations, "MAX_REFUNDS_PER_OPERATION", 0)
    response = choose_action(operator_client, "retry_refunds", [failed_refund])
    assert response.status_code == 302
    assert messages_of(response) == ["Select at most 0 refunds for one retry processing."]
    assert events(failed_refund, RefundEvent.Kind.RETRY_REQUESTED) == []
