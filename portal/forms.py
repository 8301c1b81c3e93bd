"""Portal forms. Django 5.2 ties each field's help text and errors to its input through
aria-describedby (`<id>_helptext`, `<id>_error`) and sets aria-invalid; portal/_field.html renders
those ids.

Amounts are typed in major units ("12.50") and become integer minor units of the bag's currency
here, through Decimal, never a float.
"""

from __future__ import annotations

import re
import secrets

from django import forms
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm, SetPasswordForm
from django.db.models import QuerySet

from platforms.clients.wix import WixCredentialsInvalid, clean_wix_credentials
from platforms.connect import clean_pasted_value
from platforms.models import Merchant
from portal.keys import NAME_MAX_LENGTH
from refunds.amounts import Remaining
from refunds.models import Bag, OrderSku, ReasonCode
from refunds.services.notices import (
    REASON_CODE_LABELS,
    REASON_MAX_LENGTH,
    REFERENCE_MAX_LENGTH,
    NoticeLine,
    NoticeTotals,
    items_amount_for,
    notice_totals,
    reference_problem,
)
from violet_refunds.money import format_major, parse_major

_FORM_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# A typed amount is at most this many characters ("1e9", "12,50", "$5" are all refused below).
_AMOUNT_MAX_LENGTH = 20


def new_form_token() -> str:
    """A per-render token: the refund's request_key, so re-posting the same form records nothing new."""
    return secrets.token_urlsafe(18)


class MajorUnitsField(forms.Field):
    """A money amount typed in major units, cleaned to integer minor units of `currency`."""

    def __init__(self, *, currency: str, maximum: int | None = None, **kwargs):
        self.currency = currency
        self.maximum = maximum
        kwargs.setdefault(
            "widget",
            forms.TextInput(
                attrs={
                    "inputmode": "decimal",
                    "autocomplete": "off",
                    "class": "money",
                    "maxlength": _AMOUNT_MAX_LENGTH,
                }
            ),
        )
        super().__init__(**kwargs)

    def to_python(self, value):
        text = str(value).strip() if value is not None else ""
        if text in self.empty_values:
            return None
        try:
            return parse_major(text, self.currency)
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid_amount") from None

    def validate(self, value):
        super().validate(value)
        if value is not None and self.maximum is not None and value > self.maximum:
            raise forms.ValidationError(
                f"At most {format_major(self.maximum, self.currency)} {self.currency} is left to refund.",
                code="above_remaining",
            )


# --- authentication --------------------------------------------------------------------------------


class PortalLoginForm(AuthenticationForm):
    # One message for a wrong password, an unknown user and an inactive account (OWASP ASVS 2.2).
    error_messages = {
        "invalid_login": "That username and password do not match an active account. Both are case-sensitive.",
        "inactive": "That username and password do not match an active account. Both are case-sensitive.",
    }


class PortalPasswordResetForm(PasswordResetForm):
    pass


class PortalSetPasswordForm(SetPasswordForm):
    pass


# --- report a refund (SFCC Option 2) ---------------------------------------------------------------


def sku_field_name(sku: OrderSku) -> str:
    return f"qty_{sku.pk}"


class RefundNoticeForm(forms.Form):
    """The refund a merchant made in their own system: quantities per SKU, shipping and tax refunded,
    a reason code and their reference. Checked here against what is left on the bag (and again by
    refund_record, under the bag's lock)."""

    items_amount = forms.CharField(required=False)  # replaced per bag in __init__ (currency)
    shipping_amount = forms.CharField(required=False)
    tax_amount = forms.CharField(required=False)
    reason_code = forms.ChoiceField(
        label="Reason",
        choices=[(code.value, REASON_CODE_LABELS[code]) for code in ReasonCode],
        initial=ReasonCode.CUSTOMER,
    )
    reason = forms.CharField(
        label="Note (optional)",
        required=False,
        max_length=REASON_MAX_LENGTH,
        help_text="Anything the team should know about this refund. Not shown to the shopper.",
    )
    reference = forms.CharField(
        label="Your refund reference",
        max_length=REFERENCE_MAX_LENGTH,
        strip=True,
        help_text="The refund's id in your own system (Commerce Cloud, your OMS or payment cartridge). "
        "Sending the same reference again for this order does not create a second refund.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    form_token = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args, bag: Bag, skus: list[OrderSku], remaining: Remaining, **kwargs):
        super().__init__(*args, **kwargs)
        self.bag, self.skus, self.remaining = bag, skus, remaining
        self.skus_by_id = {sku.pk: sku for sku in skus}
        currency = bag.currency
        left = remaining.parts
        self.sku_rows = []
        for sku in skus:
            quantity_left = remaining.skus.get(sku.pk, 0)
            name = sku_field_name(sku)
            self.fields[name] = forms.IntegerField(
                label=f"Quantity refunded: {sku.name}",
                required=False,
                min_value=0,
                max_value=quantity_left,
                initial=0,
                disabled=quantity_left == 0,
                error_messages={
                    "max_value": f"Only {quantity_left} of this item can still be refunded.",
                    "min_value": "The quantity cannot be negative.",
                    "invalid": "Enter a whole number of items.",
                },
                widget=forms.NumberInput(
                    attrs={"inputmode": "numeric", "data-unit-price": sku.price, "class": "qty", "step": 1}
                ),
            )
            self.sku_rows.append((sku, quantity_left, name))
        self.fields["items_amount"] = MajorUnitsField(
            currency=currency,
            maximum=left.sub_total,
            required=False,
            label=f"Items amount refunded ({currency}, optional)",
            help_text="Leave empty to refund the full price of the quantities above. Enter a lower amount "
            "if you refunded less for them (for example after a restocking fee).",
        )
        self.fields["shipping_amount"] = MajorUnitsField(
            currency=currency,
            maximum=left.shipping,
            required=False,
            label=f"Shipping refunded ({currency})",
            help_text=f"Up to {format_major(left.shipping, currency)} {currency}.",
        )
        self.fields["tax_amount"] = MajorUnitsField(
            currency=currency,
            maximum=left.tax,
            required=False,
            label=f"Tax refunded ({currency})",
            help_text=f"Up to {format_major(left.tax, currency)} {currency}.",
        )
        self.order_fields(
            [name for _, _, name in self.sku_rows]
            + ["items_amount", "shipping_amount", "tax_amount", "reason_code", "reference", "reason", "form_token"]
        )
        self.totals: NoticeTotals | None = None

    def clean_reference(self):
        reference = self.cleaned_data["reference"]
        problem = reference_problem(reference)
        if problem:
            raise forms.ValidationError(problem, code="invalid_reference")
        return reference

    def clean_form_token(self):
        token = self.cleaned_data["form_token"].strip()
        if not _FORM_TOKEN.match(token):
            raise forms.ValidationError("This form has expired; open it again.", code="invalid_token")
        return token

    def lines(self) -> list[NoticeLine]:
        return [
            NoticeLine(order_sku_id=sku.pk, quantity=quantity)
            for sku, _, name in self.sku_rows
            if (quantity := self.cleaned_data.get(name) or 0) > 0
        ]

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data  # what Form.clean returns (the stubs allow a subclass's None)
        if any(name in self.errors for name in ("items_amount", "shipping_amount", "tax_amount")) or any(
            name in self.errors for _, _, name in self.sku_rows
        ):
            return cleaned
        lines = self.lines()
        items_amount = cleaned.get("items_amount")
        if items_amount is not None and lines:
            most = items_amount_for(lines, self.skus_by_id)
            if items_amount > most:
                self.add_error(
                    "items_amount",
                    f"At most {format_major(most, self.bag.currency)} {self.bag.currency} "
                    "for these quantities (price × quantity).",
                )
                return cleaned
        self.totals = notice_totals(
            lines=lines,
            skus=self.skus_by_id,
            remaining=self.remaining,
            shipping=cleaned.get("shipping_amount") or 0,
            tax=cleaned.get("tax_amount") or 0,
            items_amount=items_amount,
        )
        if self.totals.total <= 0:
            raise forms.ValidationError(
                "Nothing to refund: enter the quantities, shipping or tax you refunded.", code="nothing_to_refund"
            )
        return cleaned

    def notice_arguments(self) -> dict:
        """refund_notice_record's keyword arguments from the cleaned form."""
        data = self.cleaned_data
        return {
            "lines": self.lines(),
            "items_amount": data.get("items_amount"),
            "shipping_amount": data.get("shipping_amount") or 0,
            "tax_amount": data.get("tax_amount") or 0,
            "reason_code": data["reason_code"],
            "reason": data.get("reason") or "",
            "reference": data["reference"],
            "request_key": data["form_token"],
        }

    # refund_record names the parts of a refund; the form names what the merchant typed.
    SERVICE_FIELDS = {
        "sub_total_amount": "items_amount",
        "shipping_amount": "shipping_amount",
        "tax_amount": "tax_amount",
        "reference": "reference",
        "reason": "reason",
        "reason_code": "reason_code",
    }

    def add_service_errors(self, field_errors: dict, message: str) -> None:
        """Put refund_record's ValidationFailed field errors on the fields they concern; the rest
        (skus, amount, bag, currency) concern the refund as a whole."""
        placed = False
        for service_field, messages in (field_errors or {}).items():
            messages = messages if isinstance(messages, list) else [messages]
            form_field = self.SERVICE_FIELDS.get(service_field)
            for text in messages:
                self.add_error(form_field, str(text))
                placed = True
        if not placed:
            self.add_error(None, message)


def _limit_to(field: forms.Field, merchants: QuerySet[Merchant]) -> None:
    """Only the user's own merchants (a scoped queryset) can be chosen; one is chosen for them."""
    assert isinstance(field, forms.ModelChoiceField)
    field.queryset = merchants
    only = list(merchants[:2])
    if len(only) == 1:
        field.initial = only[0].pk
        field.widget = forms.HiddenInput()


# --- API keys --------------------------------------------------------------------------------------


class ApiKeyCreateForm(forms.Form):
    merchant = forms.ModelChoiceField(queryset=Merchant.objects.none(), label="Store", empty_label=None)
    name = forms.CharField(
        label="Key name",
        max_length=NAME_MAX_LENGTH,
        help_text="What uses this key, for example 'OMS refunds job'.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )

    def __init__(self, *args, merchants: QuerySet[Merchant], **kwargs):
        super().__init__(*args, **kwargs)
        _limit_to(self.fields["merchant"], merchants)


# --- connect your Wix store (seed 003, step 2) -----------------------------------------------------


class ConnectWixForm(forms.Form):
    """Same labels and order as seed 003: API Key, Account ID, Site ID, then "Connect"."""

    merchant = forms.ModelChoiceField(queryset=Merchant.objects.none(), label="Store", empty_label=None)
    api_key = forms.CharField(
        label="API Key",
        max_length=4096,
        strip=False,
        help_text="In your Wix dashboard: your profile image → Account Settings → API Keys → Generate API Key. "
        "Copy the key from the window that shows it; Wix shows it only once.",
        # Never sent back to the browser, even after an error (render_value=False).
        widget=forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"}
        ),
    )
    account_id = forms.CharField(
        label="Account ID",
        max_length=200,
        strip=False,
        help_text="On the API Keys page, in the Account ID section on the right.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"}),
    )
    site_id = forms.CharField(
        label="Site ID",
        max_length=200,
        strip=False,
        help_text="Open your dashboard Home (click the Wix logo): the Site ID is in the address between "
        "/dashboard/ and /home, like 83799f16-12a9-4803-963e-ed6fed6c7e4d.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"}),
    )
    # Optional (issue #15): Wix names a webhook's site only by the app instance id, which the API-key
    # flow cannot read from Wix; without it the store's webhooks go to its own URL.
    instance_id = forms.CharField(
        label="App instance ID (optional)",
        required=False,
        max_length=200,
        strip=False,
        help_text="Only if your channel gave you one: the instance ID of its app on your site. "
        "Leave empty to keep the one already stored.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"}),
    )
    app_id = forms.CharField(required=False, widget=forms.HiddenInput)
    redirect_uri = forms.CharField(required=False, max_length=2048, widget=forms.HiddenInput)

    def __init__(self, *args, merchants: QuerySet[Merchant], **kwargs):
        super().__init__(*args, **kwargs)
        _limit_to(self.fields["merchant"], merchants)

    def clean_instance_id(self):
        return clean_pasted_value(self.cleaned_data.get("instance_id") or "").lower()

    def clean_api_key(self):
        return clean_pasted_value(self.cleaned_data["api_key"])

    def clean_account_id(self):
        return clean_pasted_value(self.cleaned_data["account_id"]).lower()

    def clean_site_id(self):
        return clean_pasted_value(self.cleaned_data["site_id"]).lower()

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data  # what Form.clean returns (the stubs allow a subclass's None)
        values = {name: cleaned.get(name) or "" for name in ("api_key", "account_id", "site_id")}
        # The Wix client's own format rules (UUIDs, a whole key), before any call to Wix; a field that
        # already has an error (empty, NUL) keeps just that one.
        try:
            clean_wix_credentials(**values)
        except WixCredentialsInvalid as exc:
            self.add_wix_errors({name: texts for name, texts in exc.field_errors.items() if name not in self.errors})
        return cleaned

    def credentials(self) -> dict[str, str]:
        return {name: self.cleaned_data.get(name) or "" for name in ("api_key", "account_id", "site_id", "instance_id")}

    def add_wix_errors(self, field_errors: dict) -> None:
        for name, messages in (field_errors or {}).items():
            for text in messages if isinstance(messages, list) else [messages]:
                self.add_error(name if name in self.fields else None, str(text))


# --- connect your order management system (SFCC, issue #25) ----------------------------------------

_PLAIN = {"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"}


class ConnectOmsForm(forms.Form):
    """Salesforce Order Management: the org's My Domain URL and the connected app's credentials."""

    merchant = forms.ModelChoiceField(queryset=Merchant.objects.none(), label="Store", empty_label=None)
    base_url = forms.CharField(
        label="My Domain URL",
        max_length=500,
        help_text="In Salesforce Setup → My Domain, the “Current My Domain URL”, like https://acme.my.salesforce.com.",
        widget=forms.TextInput(attrs={**_PLAIN, "inputmode": "url", "placeholder": "https://acme.my.salesforce.com"}),
    )
    client_id = forms.CharField(
        label="Consumer key",
        max_length=500,
        strip=False,
        help_text="The connected app's consumer key (client id): Setup → App Manager → your app → View → "
        "Manage Consumer Details.",
        widget=forms.TextInput(attrs=_PLAIN),
    )
    client_secret = forms.CharField(
        label="Consumer secret",
        max_length=500,
        strip=False,
        help_text="Shown next to the consumer key.",
        # Never sent back to the browser, even after an error.
        widget=forms.PasswordInput(render_value=False, attrs=_PLAIN),
    )

    def __init__(self, *args, merchants: QuerySet[Merchant], **kwargs):
        super().__init__(*args, **kwargs)
        _limit_to(self.fields["merchant"], merchants)

    def add_service_errors(self, field_errors: dict) -> None:
        for field, texts in field_errors.items():
            for text in texts:
                self.add_error(field if field in self.fields else None, text)


class DisconnectOmsForm(forms.Form):
    merchant = forms.ModelChoiceField(queryset=Merchant.objects.none())

    def __init__(self, *args, merchants: QuerySet[Merchant], **kwargs):
        super().__init__(*args, **kwargs)
        merchant_field = self.fields["merchant"]
        assert isinstance(merchant_field, forms.ModelChoiceField)
        merchant_field.queryset = merchants
