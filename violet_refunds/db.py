"""Model building blocks shared by every app: timestamps, money columns and their constraints."""

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

currency_validator = RegexValidator(r"^[A-Z]{3}$", "Use an upper-case ISO 4217 code such as USD.")


def MoneyField(verbose_name=None, **kwargs):  # noqa: N802 - reads like a field class
    """Integer minor units (cents). Never floats; the currency sits in a sibling column."""
    kwargs.setdefault("default", 0)
    return models.BigIntegerField(verbose_name, **kwargs)


def CurrencyField(verbose_name=None, **kwargs):  # noqa: N802
    kwargs.setdefault("max_length", 3)
    kwargs.setdefault("validators", [currency_validator])
    return models.CharField(verbose_name, **kwargs)


def non_negative(model_name: str, *fields: str) -> list[models.BaseConstraint]:
    """One named CHECK (field >= 0) per money column, so a bad row fails in the database itself."""
    for field in fields:
        name = f"{model_name}_{field}_non_negative"
        if len(name) > 63:  # PostgreSQL would silently truncate it
            raise ValueError(f"Constraint name {name!r} is longer than 63 characters; spell it out.")
    return [
        models.CheckConstraint(
            condition=Q(**{f"{field}__gte": 0}) | Q(**{f"{field}__isnull": True}),
            name=f"{model_name}_{field}_non_negative",
        )
        for field in fields
    ]


class TimeStampedModel(models.Model):
    date_created = models.DateTimeField(auto_now_add=True, db_index=True)
    date_last_modified = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
