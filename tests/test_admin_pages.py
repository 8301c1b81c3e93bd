"""Every registered admin page renders for an operator, and the refund pages show what triage needs.

The page tests iterate `admin.site._registry`, so a model any app registers is covered as soon as
it is registered; its row comes from the matching factory in tests/factories.py.
"""

import inspect

import factory
import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.hashers import identify_hasher
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from refunds.models import Refund, RefundStatus
from tests import factories
from tests.factories import (
    AppFactory,
    OperatorFactory,
    RefundErrorFactory,
    RefundEventFactory,
    RefundFactory,
    RefundSkuFactory,
    ShopperRefundFactory,
    TransferReversalFactory,
)
from violet_refunds.money import format_amount

REGISTERED_MODELS = sorted(admin.site._registry, key=lambda model: model._meta.label)


# Models without a factory in tests/factories.py: how to make one row of each.
ROW_BUILDERS_WITHOUT_FACTORY = {
    "auth.Group": lambda model: Group.objects.get_or_create(name="Refund viewers")[0],
    # django-axes: operators see (and can clear) login lockouts.
    "axes.AccessAttempt": lambda model: model.objects.create(
        username="mallory", ip_address="127.0.0.1", user_agent="test", failures_since_start=3
    ),
    "axes.AccessLog": lambda model: model.objects.create(username="mallory", ip_address="127.0.0.1", user_agent="test"),
    "axes.AccessFailureLog": lambda model: model.objects.create(
        username="mallory", ip_address="127.0.0.1", user_agent="test"
    ),
}


def _factory_for(model):
    for _name, candidate in inspect.getmembers(factories, inspect.isclass):
        if (
            issubclass(candidate, factory.django.DjangoModelFactory)
            and candidate._meta.model is model
            and not candidate._meta.abstract
        ):
            return candidate
    return None


def _create_row(model):
    model_factory = _factory_for(model)
    if model_factory is not None:
        return model_factory()
    builder = ROW_BUILDERS_WITHOUT_FACTORY.get(model._meta.label) or ROW_BUILDERS_WITHOUT_FACTORY.get(
        model._meta.app_label
    )
    assert builder is not None, (
        f"{model._meta.label} is registered in the admin but tests/factories.py has no factory for it"
    )
    return builder(model)


def _url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _add_money_moves(refund, gateway_refund_id, gateway_reversal_id):
    """A shopper refund and a merchant-transfer reversal, both against the order's one payment."""
    shopper_refund = ShopperRefundFactory(refund=refund, gateway_refund_id=gateway_refund_id)
    TransferReversalFactory(
        refund=refund,
        transfer__payment_transaction=shopper_refund.payment_transaction,
        gateway_reversal_id=gateway_reversal_id,
    )


@pytest.fixture
def operator_client(client):
    client.force_login(OperatorFactory())
    return client


def test_every_refunds_and_payments_model_is_registered():
    models = [model for label in ("refunds", "payments") for model in apps.get_app_config(label).get_models()]
    assert len(models) == 15
    assert set(models) <= set(REGISTERED_MODELS)


@pytest.mark.django_db
@pytest.mark.parametrize("model", REGISTERED_MODELS, ids=lambda model: model._meta.label)
def test_changelist_search_and_change_page_render_for_the_operator(operator_client, model):
    row = _create_row(model)
    change_url = _url(model, "change", row.pk)

    changelist = operator_client.get(_url(model, "changelist"))
    assert changelist.status_code == 200
    assert change_url in changelist.content.decode()

    # A term that matches the row's id, and one that cannot be an id (exact id lookups must cope).
    for term in (str(row.pk), "no-such-thing"):
        searched = operator_client.get(_url(model, "changelist"), {"q": term})
        assert searched.status_code == 200

    change_page = operator_client.get(change_url)
    assert change_page.status_code == 200
    assert escape(str(row)) in change_page.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("model", REGISTERED_MODELS, ids=lambda model: model._meta.label)
def test_anonymous_user_is_sent_to_the_login_page(client, model):
    # The login check comes before any lookup, so the object need not exist.
    for url in (_url(model, "changelist"), _url(model, "change", 1)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.django_db
def test_refund_changelist_query_count_does_not_grow_with_rows(operator_client, django_assert_max_num_queries):
    # Every refund gets its own bag, merchant, order and app: the worst case for per-row lookups.
    RefundFactory.create_batch(5)
    url = _url(Refund, "changelist")
    with CaptureQueriesContext(connection) as five_rows:
        assert len(operator_client.get(url).context["cl"].result_list) == 5

    RefundFactory.create_batch(45)
    with django_assert_max_num_queries(len(five_rows.captured_queries)):
        response = operator_client.get(url)
    assert len(response.context["cl"].result_list) == 50


@pytest.mark.django_db
def test_refund_changelist_shows_merchant_platform_app_and_formatted_amount(operator_client):
    refund = RefundFactory(sub_total_amount=3000, shipping_amount=500, refund_currency="USD")
    body = operator_client.get(_url(Refund, "changelist")).content.decode()
    assert "35.00 USD" in body
    assert refund.bag.merchant.name in body
    assert "Shopify" in body
    assert refund.bag.order.app.name in body


@pytest.mark.django_db
@pytest.mark.parametrize(
    "term_of",
    [
        pytest.param(lambda r: str(r.pk), id="refund id"),
        pytest.param(lambda r: str(r.bag.order_id), id="order id"),
        pytest.param(lambda r: r.bag.external_id, id="bag external id"),
        pytest.param(lambda r: r.external_id, id="refund external id"),
        pytest.param(lambda r: r.shopper_refund.gateway_refund_id, id="gateway refund id"),
        pytest.param(lambda r: r.transfer_reversals.get().gateway_reversal_id, id="gateway reversal id"),
        pytest.param(lambda r: "re_3SearchMe", id="start of a gateway refund id"),
        pytest.param(lambda r: "trr_1SearchMe", id="start of a gateway reversal id"),
        pytest.param(lambda r: r.bag.order.payment_transaction.gateway_charge_id, id="charge id"),
        pytest.param(lambda r: r.bag.merchant.name.upper(), id="merchant name"),
    ],
)
def test_refund_search_finds_the_refund_by_each_identifier(operator_client, term_of):
    wanted = RefundFactory()
    _add_money_moves(wanted, "re_3SearchMe0001", "trr_1SearchMe0002")
    other = RefundFactory()
    _add_money_moves(other, "re_3Other0001", "trr_1Other0002")

    response = operator_client.get(_url(Refund, "changelist"), {"q": term_of(wanted)})
    assert [refund.pk for refund in response.context["cl"].result_list] == [wanted.pk]


@pytest.mark.django_db
def test_refund_change_page_shows_its_history_read_only(operator_client):
    refund = RefundFactory(status=RefundStatus.FAILED)
    RefundSkuFactory(refund=refund)
    RefundErrorFactory(refund=refund, error_message="Insufficient funds in the connected account.")
    RefundEventFactory(refund=refund, actor="worker", message="Step failed for good.")
    _add_money_moves(refund, "re_3History0001", "trr_1History0001")

    response = operator_client.get(_url(Refund, "change", refund.pk))
    body = response.content.decode()
    for shown in (
        "Insufficient funds in the connected account.",
        "Step failed for good.",
        "trr_1History0001",
        "re_3History0001",
        "50.00 USD",
    ):
        assert shown in body
    # Inline rows are read-only: no form inputs for them, no delete boxes, no "add another".
    for formset in response.context["inline_admin_formsets"]:
        assert formset.formset.total_form_count() == formset.formset.initial_form_count()
        assert not formset.has_add_permission
        assert not formset.has_change_permission
        assert not formset.has_delete_permission
    # A money record: nothing is editable and there is no Save (the reason has its own audited page).
    assert not response.context["has_change_permission"]
    assert 'name="_save"' not in body and 'name="_continue"' not in body
    assert reverse("admin:refunds_refund_change_reason", args=[refund.pk]) in body


@pytest.mark.django_db
def test_refund_cannot_be_changed_through_the_form(operator_client):
    refund = RefundFactory()
    response = operator_client.post(
        _url(Refund, "change", refund.pk),
        {"reason_code": "FRAUD", "reason": "Chargeback risk.", "amount": "1", "status": "COMPLETED"},
    )
    assert response.status_code == 403
    refund.refresh_from_db()
    assert (refund.reason_code, refund.amount, refund.status) == ("OTHER", 5000, RefundStatus.PROCESSING)


@pytest.mark.django_db
def test_reason_change_is_audited_in_the_refund_timeline_and_history(operator_client):
    refund = RefundFactory(status=RefundStatus.COMPLETED, reason_code="OTHER", reason="")
    url = reverse("admin:refunds_refund_change_reason", args=[refund.pk])
    assert operator_client.get(url).status_code == 200
    response = operator_client.post(url, {"reason_code": "FRAUD", "reason": "Chargeback risk.", "note": "Ticket 12"})
    assert response.status_code == 302
    refund.refresh_from_db()
    assert (refund.reason_code, refund.reason, refund.status) == ("FRAUD", "Chargeback risk.", RefundStatus.COMPLETED)
    event = refund.events.get(kind="NOTE")
    assert event.actor.startswith("operator:")
    assert event.message == "Reason changed from Other (no text) to Fraud (Chargeback risk.). Ticket 12"
    assert event.data == {"reason_code": ["OTHER", "FRAUD"], "reason": ["", "Chargeback risk."]}
    # The refund's page and its HISTORY show the same timeline, with the change in it.
    history = operator_client.get(_url(Refund, "history", refund.pk))
    assert history.status_code == 200
    assert "Reason changed from Other" in history.content.decode()
    assert [e.title for e in history.context["timeline"]] == [
        e.title for e in operator_client.get(_url(Refund, "change", refund.pk)).context["timeline"]
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model_factory",
    [
        RefundEventFactory,
        RefundErrorFactory,
        RefundSkuFactory,
        ShopperRefundFactory,
        TransferReversalFactory,
        factories.TransferFactory,
        factories.PaymentTransactionFactory,
        factories.OrderSkuFactory,
        factories.BagFactory,
    ],
    ids=lambda f: f._meta.model.__name__,
)
def test_audit_and_money_records_cannot_be_added_edited_or_deleted(operator_client, model_factory):
    row = model_factory()
    model = type(row)
    assert operator_client.get(_url(model, "add")).status_code == 403
    assert operator_client.get(_url(model, "delete", row.pk)).status_code == 403
    change_page = operator_client.get(_url(model, "change", row.pk))
    assert change_page.status_code == 200
    assert not change_page.context["has_change_permission"]
    assert operator_client.post(_url(model, "change", row.pk), {}).status_code == 403
    assert model.objects.filter(pk=row.pk).exists()


@pytest.mark.django_db
def test_refunds_cannot_be_added_or_deleted_by_hand(operator_client):
    refund = RefundFactory()
    assert operator_client.get(_url(Refund, "add")).status_code == 403
    assert operator_client.get(_url(Refund, "delete", refund.pk)).status_code == 403


@pytest.mark.django_db
def test_app_secrets_are_never_shown_in_clear(operator_client):
    from tests.factories import WebhookEndpointFactory

    app = AppFactory()
    endpoint = WebhookEndpointFactory(app=app, signing_secret="whsec-outbound-plaintext")
    response = operator_client.get(_url(type(app), "change", app.pk))
    body = response.content.decode()
    assert app.secret_hash not in body
    assert f"only a {identify_hasher(app.secret_hash).algorithm} hash is stored" in body
    assert "secret_hash" not in response.context["adminform"].form.fields
    endpoint_page = operator_client.get(_url(type(endpoint), "change", endpoint.pk)).content.decode()
    assert "whsec-outbound-plaintext" not in endpoint_page


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (3500, "USD", "35.00 USD"),
        (5, "EUR", "0.05 EUR"),
        (0, "USD", "0.00 USD"),
        (123456789, "GBP", "1234567.89 GBP"),
        (3500, "JPY", "3500 JPY"),
        (1234, "KWD", "1.234 KWD"),
        (None, "USD", "-"),
    ],
)
def test_money_is_formatted_from_minor_units(amount, currency, shown):
    assert format_amount(amount, currency) == shown
