"""Accessibility pass on the portal's forms: every input has a label; its hint and its errors are tied
to it by aria-describedby (and aria-invalid on error); required fields say so in the label and carry
the required attribute."""

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from platforms.models import Platform
from tests.factories import MerchantFactory
from tests.portal.conftest import logged_in, notice_bag, portal_user

pytestmark = pytest.mark.django_db

_FIELDS = {"input", "select", "textarea"}
_NOT_LABELLED = {"hidden", "submit", "button"}


class _Form(HTMLParser):
    def __init__(self):
        super().__init__()
        self.fields: list[dict] = []
        self.labels: dict[str, str] = {}
        self.ids: set[str] = set()
        self._label_for: str | None = None
        self._label_text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(attributes["id"])
        if tag == "label":
            self._label_for, self._label_text = attributes.get("for"), []
        if tag in _FIELDS and attributes.get("type") not in _NOT_LABELLED:
            self.fields.append(attributes)

    def handle_data(self, data):
        if self._label_for is not None:
            self._label_text.append(data)

    def handle_endtag(self, tag):
        if tag == "label" and self._label_for:
            self.labels[self._label_for] = " ".join("".join(self._label_text).split())
            self._label_for = None


def check_form(html: str) -> list[dict]:
    form = _Form()
    form.feed(html)
    assert form.fields
    for field in form.fields:
        name = field.get("name")
        assert field.get("id") in form.labels, f"{name} has no <label for>"
        described = (field.get("aria-describedby") or "").split()
        assert all(target in form.ids for target in described), f"{name} points at a missing id"
        for suffix in ("_helptext", "_error"):
            if f"{field['id']}{suffix}" in form.ids:
                assert f"{field['id']}{suffix}" in described, f"{name}: {suffix} not in aria-describedby"
        if f"{field['id']}_error" in form.ids:
            assert field.get("aria-invalid") == "true"
        if "required" in field:
            assert form.labels[field["id"]].endswith("(required)"), f"{name}: required not said in its label"
    return form.fields


def test_the_refund_report_form_with_errors():
    bag = notice_bag()
    client = logged_in(portal_user(bag.merchant))
    url = reverse("portal:refund_report", args=[bag.pk])
    check_form(client.get(url).content.decode())
    fields = check_form(client.post(url, {"reference": "", "shipping_amount": "x"}).content.decode())
    assert any(field.get("aria-invalid") == "true" for field in fields)


def test_the_wix_connect_form_empty_and_with_errors():
    merchant = MerchantFactory(platform=Platform.WIX)
    client = logged_in(portal_user(merchant))
    url = reverse("portal:connect_wix")
    check_form(client.get(url).content.decode())
    check_form(client.post(url, {"merchant": merchant.pk}).content.decode())


def test_the_login_and_order_search_forms(client):
    check_form(client.get(reverse("portal:login")).content.decode())
    merchant = MerchantFactory()
    check_form(logged_in(portal_user(merchant)).get(reverse("portal:orders")).content.decode())
