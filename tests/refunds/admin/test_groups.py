"""The data migration's groups: operators read and act, viewers only read."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from tests.factories import InboundEventFactory

pytestmark = pytest.mark.django_db


def codenames(group_name):
    group = Group.objects.get(name=group_name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def test_the_migration_created_both_groups():
    # No fixture: these rows come from refunds/migrations/0003 on the freshly migrated test database.
    operators, viewers = codenames("Refund operators"), codenames("Refund viewers")
    assert {"refunds.view_refund", "refunds.view_refunderror", "payments.view_transferreversal"} <= viewers
    assert {p for p in viewers if not p.split(".")[1].startswith("view_")} == set()
    # platforms 0009 (issue #22): raw inbound payloads are for operators only; refunds 0009: resolving
    # findings, replaying Stripe's events.
    assert operators - viewers == {
        "refunds.change_refund",
        "platforms.change_inboundevent",
        "platforms.view_raw_payload",
        "refunds.change_reconciliationfinding",
        "stripe_events.change_stripeevent",
    }
    assert {"refunds.view_reconciliationfinding", "stripe_events.view_stripeevent"} <= viewers


@pytest.mark.parametrize("who", ["operator_client", "viewer_client"])
def test_both_groups_read_every_triage_page(request, who, failed_refund):
    client = request.getfixturevalue(who)
    for url in (
        reverse("admin:index"),
        reverse("admin:refunds_refund_changelist") + "?triage=failed",
        reverse("admin:refunds_refund_change", args=[failed_refund.pk]),
        reverse("admin:refunds_refunderror_changelist"),
        reverse("admin:payments_transferreversal_changelist"),
        reverse("admin:platforms_inboundevent_changelist"),
        reverse("admin:refunds_reconciliationfinding_changelist"),
        reverse("admin:stripe_events_stripeevent_changelist"),
    ):
        assert client.get(url).status_code == 200, url


def test_only_operators_may_replay_inbound_events(operator_client, viewer_client):
    InboundEventFactory()
    url = reverse("admin:platforms_inboundevent_changelist")
    assert operator_client.get(url).context["action_form"] is not None
    assert viewer_client.get(url).context["action_form"] is None
