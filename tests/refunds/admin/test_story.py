"""The refund page as a story: parties and steps with formatted amounts and Stripe links, open errors
beside their recommended step, one newest-first timeline (also HISTORY), repairs disabled with the
reason, and confirmation pages that state the money consequence per party."""

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from refunds.admin.operations import OPERATIONS
from refunds.admin.position import RECOMMENDED_ACTIONS, recommendation_for
from refunds.errors import RefundErrorCode
from refunds.models import Refund, RefundError, RefundEvent
from tests.factories import InboundEventFactory
from violet_refunds.admin import stripe_dashboard_url
from violet_refunds.money import format_amount

pytestmark = pytest.mark.django_db


def change_page(client, refund):
    return client.get(reverse("admin:refunds_refund_change", args=[refund.pk]))


def test_every_error_code_has_a_recommended_step_naming_an_existing_repair():
    assert set(RECOMMENDED_ACTIONS) == set(RefundErrorCode)
    for row in RECOMMENDED_ACTIONS.values():
        assert row.operation in OPERATIONS and row.text
    # Retry never leads where a retry would only repeat the refusal.
    assert RECOMMENDED_ACTIONS[RefundErrorCode.CHARGE_ALREADY_REFUNDED].operation == "mark-external"
    assert RECOMMENDED_ACTIONS[RefundErrorCode.CHARGE_DISPUTED].operation == "resolve-errors"
    assert RECOMMENDED_ACTIONS[RefundErrorCode.BALANCE_INSUFFICIENT].operation == "retry"


def test_step_events_show_formatted_amounts_never_minor_units(failed_refund):
    messages = list(failed_refund.events.filter(kind=RefundEvent.Kind.STEP_SUCCEEDED).values_list("message", flat=True))
    reversals = {r.transfer.recipient: r for r in failed_refund.transfer_reversals.select_related("transfer")}
    assert len(messages) == 2
    for reversal in reversals.values():
        assert any(f"reversed {format_amount(reversal.amount, reversal.currency)} (" in m for m in messages)
        assert not any(f"reversed {reversal.amount} " in m for m in messages)


def test_story_top_shows_parties_steps_and_the_error_beside_its_next_step(operator_client, failed_refund):
    response = change_page(operator_client, failed_refund)
    panel = response.context["triage_panel"]
    parties = {row["party"]: row for row in panel["parties"]}
    assert parties["Shopper"]["amount"] == format_amount(failed_refund.amount, failed_refund.refund_currency)
    assert parties["Shopper"]["words"] == "not refunded: the shopper refund failed"
    assert parties["Merchant"]["words"] == "gave back (transfer reversed)"
    reversed_total = sum(r.amount for r in failed_refund.transfer_reversals.all())
    assert parties["Network"]["amount"] == format_amount(failed_refund.amount - reversed_total, "USD")
    [row] = panel["errors"]
    assert row["recommendation"].operation == "resolve-errors"
    body = response.content.decode()
    assert 'id="refund-open-errors"' in body and "Resolve the error with a dispute note" in body
    # Step amounts are in the table, not only in hover text.
    for step in panel["steps"]:
        if step["outcome"].amount is not None:
            assert f'<td class="refund-amount">{step["amount"]}</td>' in body


def test_stripe_ids_link_to_the_dashboard_of_the_key_mode(operator_client, completed_refund, settings):
    shopper = completed_refund.shopper_refund
    assert change_page(operator_client, completed_refund).context["triage_panel"]["steps"][2]["stripe_id"]
    settings.STRIPE_API_KEY = ""  # the sandbox: no dashboard to link to
    body = change_page(operator_client, completed_refund).content.decode()
    assert "dashboard.stripe.com" not in body and shopper.gateway_refund_id in body
    settings.STRIPE_API_KEY = "sk_test_story"
    body = change_page(operator_client, completed_refund).content.decode()
    assert f"https://dashboard.stripe.com/test/refunds/{shopper.gateway_refund_id}" in body
    transfer_id = completed_refund.transfer_reversals.select_related("transfer").first().transfer.gateway_transfer_id
    assert f"https://dashboard.stripe.com/test/connect/transfers/{transfer_id}" in body
    assert stripe_dashboard_url("re_1", mode="LIVE") == "https://dashboard.stripe.com/refunds/re_1"
    assert stripe_dashboard_url("xx_1", mode="LIVE") == ""


def test_one_timeline_newest_first_merges_events_admin_actions_and_the_platform_event(
    operator_client, operator, completed_refund
):
    inbound = InboundEventFactory(topic="refunds/create")
    Refund.objects.filter(pk=completed_refund.pk).update(inbound_event=inbound)
    LogEntry.objects.log_action(
        user_id=operator.pk,
        content_type_id=ContentType.objects.get_for_model(Refund).pk,
        object_id=str(completed_refund.pk),
        object_repr=str(completed_refund),
        action_flag=CHANGE,
        change_message="Looked at it",
    )
    timeline = change_page(operator_client, completed_refund).context["timeline"]
    assert [entry.when for entry in timeline] == sorted((entry.when for entry in timeline), reverse=True)
    assert {entry.source for entry in timeline} == {"refund", "operator", "platform"}
    assert timeline[0].source == "operator" and timeline[0].detail == "Looked at it"
    assert any(entry.to_status == "Completed" for entry in timeline)  # labels, not enum names
    history = operator_client.get(reverse("admin:refunds_refund_history", args=[completed_refund.pk]))
    assert [(e.source, e.title) for e in history.context["timeline"]] == [(e.source, e.title) for e in timeline]
    assert "UTC" in history.content.decode()  # every date says its zone


def test_mark_external_confirmation_states_the_money_per_party(operator_client, failed_refund):
    url = reverse("admin:refunds_refund_mark_external", args=[failed_refund.pk])
    response = operator_client.get(url)
    [row] = response.context["rows"]
    lines = {line.party: line.text for line in row["consequences"]}
    assert set(lines) == {"merchant", "channel", "shopper", "network"}
    reversals = {r.transfer.recipient: r for r in failed_refund.transfer_reversals.select_related("transfer")}
    assert (
        lines["merchant"]
        == f"already gave back {format_amount(reversals['MERCHANT'].amount, 'USD')} (transfer reversed); that stays."
    )
    assert lines["shopper"].startswith(f"is NOT refunded {format_amount(failed_refund.amount, 'USD')} by the network")
    held = format_amount(sum(r.amount for r in reversals.values()), "USD")
    assert lines["network"].startswith(f"holds {held} taken back from the merchant and channel")
    assert "Money afterwards" in response.content.decode()


def test_outcome_message_names_the_refund_and_its_new_status(operator_client, failed_refund):
    url = reverse("admin:refunds_refund_mark_external", args=[failed_refund.pk])
    response = operator_client.post(url, {"note": "Paid by bank transfer"}, follow=True)
    assert f"Refund {failed_refund.pk} marked external, now External." in response.content.decode()


def test_a_refused_repair_is_disabled_with_its_reason_on_the_page(operator_client, failed_refund):
    body = change_page(operator_client, failed_refund).content.decode()
    assert 'aria-disabled="true" data-operation="cancel"' in body
    assert 'id="refused-cancel"' in body and "a cancel cannot undo it" in body
    assert reverse("admin:refunds_refund_cancel", args=[failed_refund.pk]) not in body


def test_unknown_error_code_gets_the_default_step():
    error = RefundError(error_code="42", error_message="?")
    assert recommendation_for(error).operation == "retry"


def test_index_shows_funds_to_recover_branding_and_a_collapsed_system_section(
    operator_client, failed_refund, partially_completed_refund
):
    response = operator_client.get(reverse("admin:index"))
    body = response.content.decode()
    funds = response.context["triage"]["funds"]
    # Partially completed: the shopper was refunded, the merchant's reversal failed -> to recover.
    failed_reversal = partially_completed_refund.transfer_reversals.get(status="FAILED")
    assert funds["to_recover"] == [format_amount(failed_reversal.amount, "USD")]
    # Failed after both reversals: the network holds them for the shopper.
    assert funds["held"] == [format_amount(sum(r.amount for r in failed_refund.transfer_reversals.all()), "USD")]
    assert 'id="funds-to-recover"' in body
    assert "Violet refunds back office" in body and "Django administration" not in body
    assert 'id="stripe-mode-badge"' in body


def test_infrastructure_apps_sit_in_a_collapsed_system_section(admin_client):
    response = admin_client.get(reverse("admin:index"))
    body = response.content.decode()
    main = [app["app_label"] for app in response.context["app_list"]]
    system = [app["app_label"] for app in response.context["system_app_list"]]
    assert "refunds" in main and "stripe_sandbox" not in main and "axes" not in main
    assert {"stripe_sandbox", "axes"} <= set(system)
    assert '<details class="module" id="system-apps">' in body  # collapsed until opened


def test_event_list_shows_status_labels_not_enum_names(operator_client, failed_refund):
    body = operator_client.get(reverse("admin:refunds_refundevent_changelist")).content.decode()
    assert "Processing → Failed" in body
    assert "PROCESSING → FAILED" not in body
