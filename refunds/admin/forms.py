"""Forms of the operators' admin pages: the note every repair action asks for, and the refund
notice an operator records for a merchant (SFCC Option 2). Forms only parse and check input; what a
refund may be is decided by refunds.services.refund_record."""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation

from django import forms

from platforms.models import Merchant
from refunds.admin.selectors import SkuLeft, merchants_for_operator_notice
from refunds.models import Bag, ReasonCode
from violet_refunds.money import currency_exponent, decimal_to_minor_units, format_amount


class OperationNoteForm(forms.Form):
    note = forms.CharField(
        required=False,
        strip=True,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Kept in each refund's audit trail with your name.",
    )

    def __init__(self, *args, note_required: bool = False, note_help: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["note"].required = note_required
        if note_help:
            self.fields["note"].help_text = note_help


class RefundReasonForm(OperationNoteForm):
    """The descriptive reason of a recorded refund (its money and status never change here)."""

    reason_code = forms.ChoiceField(choices=ReasonCode.choices, label="Reason code")
    reason = forms.CharField(required=False, max_length=255, strip=True, label="Reason")


class ErrorSelectionForm(OperationNoteForm):
    """Which of a refund's open errors to resolve."""

    error_ids = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, label="Errors to resolve")

    def __init__(self, *args, open_errors=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.open_errors = {str(error.pk): error for error in open_errors}
        field = self.fields["error_ids"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [
            (key, f"{error.error_code} {error.get_step_display() or ''}: {error.error_message[:160]}")
            for key, error in self.open_errors.items()
        ]
        field.initial = list(self.open_errors)

    def selected_errors(self):
        return [self.open_errors[key] for key in self.cleaned_data["error_ids"]]


class NoticeLookupForm(forms.Form):
    """Step 1 of the operator's refund notice: which merchant, which of its orders."""

    merchant = forms.ModelChoiceField(
        queryset=Merchant.objects.none(),
        empty_label="Choose a merchant",
        help_text="SFCC merchants on Option 2, and merchants whose platform cannot report refunds.",
    )
    order = forms.CharField(
        label="Order",
        max_length=255,
        strip=True,
        help_text="The order id on the merchant's platform (the bag's external id), or our bag id.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["merchant"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = merchants_for_operator_notice()


class _MinorUnitsField(forms.DecimalField):
    """A money amount typed in major units ("12.50") for one currency; cleans to minor units."""

    def __init__(self, *, currency: str, **kwargs):
        self.currency = currency
        exponent = currency_exponent(currency)
        kwargs.setdefault("min_value", Decimal(0))
        super().__init__(max_digits=15, decimal_places=exponent, **kwargs)
        self.widget.attrs.setdefault("step", "1" if exponent == 0 else f"0.{'0' * (exponent - 1)}1")

    def clean(self, value):
        cleaned = super().clean(value)
        if cleaned is None:
            return 0
        try:
            return decimal_to_minor_units(cleaned, self.currency)
        except (InvalidOperation, ValueError) as exc:
            raise forms.ValidationError("Enter an amount.") from exc


class OperatorNoticeForm(forms.Form):
    """Step 2: what the merchant refunded. One quantity field per SKU with something left."""

    shipping = forms.Field()  # replaced per bag in __init__ (the currency decides the decimals)
    tax = forms.Field()
    reason_code = forms.ChoiceField(choices=ReasonCode.choices, initial=ReasonCode.CUSTOMER)
    reason = forms.CharField(required=False, max_length=255, strip=True)
    external_id = forms.CharField(
        label="Merchant's refund reference",
        max_length=255,
        strip=True,
        help_text="The merchant's own id for this refund. Recording the same reference twice for this order "
        "returns the first refund.",
    )
    form_token = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args, bag: Bag, skus_left: list[SkuLeft], **kwargs):
        super().__init__(*args, **kwargs)
        self.bag = bag
        self.skus_left = skus_left
        self.fields["shipping"] = _MinorUnitsField(
            currency=bag.currency,
            required=False,
            initial=Decimal(0),
            label=f"Shipping refunded ({bag.currency})",
        )
        self.fields["tax"] = _MinorUnitsField(
            currency=bag.currency, required=False, initial=Decimal(0), label=f"Tax refunded ({bag.currency})"
        )
        self.fields["form_token"].initial = uuid.uuid4().hex
        for line in skus_left:
            self.fields[self.sku_field_name(line.sku.pk)] = forms.IntegerField(
                label=line.sku.name,
                min_value=0,
                max_value=line.remaining,
                initial=0,
                required=False,
                disabled=line.remaining == 0,
                help_text=(
                    f"{line.remaining} of {line.sku.quantity} left at "
                    f"{format_amount(line.sku.price, bag.currency)} each"
                ),
            )

    @staticmethod
    def sku_field_name(order_sku_id: int) -> str:
        return f"sku_{order_sku_id}"

    def sku_fields(self):
        return [(line, self[self.sku_field_name(line.sku.pk)]) for line in self.skus_left]

    def other_fields(self):
        return [self[name] for name in ("shipping", "tax", "reason_code", "reason", "external_id")]

    def clean_form_token(self):
        token = self.cleaned_data["form_token"]
        if not token.isalnum():
            raise forms.ValidationError("The form is damaged; open it again.")
        return token

    def sku_quantities(self) -> dict[int, int]:
        """order_sku_id -> quantity, only the lines with a quantity."""
        chosen = {}
        for line in self.skus_left:
            quantity = self.cleaned_data.get(self.sku_field_name(line.sku.pk)) or 0
            if quantity:
                chosen[line.sku.pk] = quantity
        return chosen
