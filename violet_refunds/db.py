"""Model building blocks shared by every app: timestamps, money columns and their constraints."""

from django.core.validators import RegexValidator
from django.db import connections, models
from django.db.models import NOT_PROVIDED, Q

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


# --- One-statement insert for hot paths (issue #20 item 2) ----------------------------------------

# (model, database vendor, conflict fields) -> (the INSERT statement, the fields whose values it takes).
_insert_statements: dict[tuple[type[models.Model], str, tuple[str, ...]], tuple[str, list[models.Field]]] = {}


def _insert_statement(model: type[models.Model], connection, conflict_fields: tuple[str, ...]):
    key = (model, connection.vendor, conflict_fields)
    cached = _insert_statements.get(key)
    if cached is not None:
        return cached
    meta = model._meta
    fields = [field for field in meta.concrete_fields if field is not meta.auto_field]
    for field in fields:
        if field.generated or field.db_default is not NOT_PROVIDED or hasattr(field, "get_placeholder"):
            # Values the statement below cannot carry as a plain parameter: Model.save() only.
            raise ValueError(f"{meta.label}.{field.name} cannot be inserted by row_insert_unless_conflict")
    quote = connection.ops.quote_name
    by_name = {field.name: field for field in meta.concrete_fields}
    conflict_columns = ", ".join(quote(by_name[name].column) for name in conflict_fields)
    # Identifiers from the model's own metadata, quoted; every value is a parameter.
    columns = ", ".join(quote(field.column) for field in fields)
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(fields))}) "
        f"ON CONFLICT ({conflict_columns}) DO NOTHING RETURNING {quote(meta.pk.column)}"
    )
    _insert_statements[key] = (sql, fields)
    return sql, fields


def row_insert_unless_conflict(obj: models.Model, *, conflict_fields: tuple[str, ...], using: str = "default") -> bool:
    """Insert `obj` (unsaved, auto primary key) in one statement, unless a row with the same values
    of `conflict_fields` (a unique constraint) exists: `INSERT ... ON CONFLICT DO NOTHING RETURNING`.
    True (and `obj.pk` set) when inserted; False when the row exists (nothing written).

    The hot path's alternative to `create()` in a savepoint with `IntegrityError` caught for the
    duplicate: one round trip, and no transaction of its own when called in autocommit (a duplicate
    raises nothing, so an outer transaction is never poisoned by it). Values are prepared by each
    field as save() prepares them (auto_now_add/auto_now set, JSON adapted); no model signals are
    sent. PostgreSQL and SQLite (3.35+) both run the statement."""
    connection = connections[using]
    sql, fields = _insert_statement(type(obj), connection, conflict_fields)
    values = [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        return False
    obj.pk = row[0]
    obj._state.adding = False
    obj._state.db = using
    return True
