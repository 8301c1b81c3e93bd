"""Data migration: the operator groups (refunds 0003) see findings and Stripe's events.

Both groups view findings, Stripe events and Stripe webhook endpoints; operators also resolve
findings and replay Stripe events (the actions check refunds.change_refund too, like every operator
action). Adding or editing an endpoint (its signing secrets) takes the model's own permission.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW = (
    ("refunds", "view_reconciliationfinding"),
    ("stripe_events", "view_stripeevent"),
    ("stripe_events", "view_stripewebhookendpoint"),
)
ACT = (("refunds", "change_reconciliationfinding"), ("stripe_events", "change_stripeevent"))
GROUPS = {"Refund operators": VIEW + ACT, "Refund viewers": VIEW}


def ensure_permissions(apps, using="default"):
    """Idempotent; tests call it after a database flush (as refunds 0003's ensure_groups)."""
    for app_label in ("refunds", "stripe_events"):
        app_config = apps.get_app_config(app_label)
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = True  # create_permissions skips app configs without one
        try:
            create_permissions(app_config, verbosity=0, using=using, apps=apps)
        finally:
            app_config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, wanted in GROUPS.items():
        group, _ = Group.objects.using(using).get_or_create(name=name)
        group.permissions.add(
            *[
                Permission.objects.using(using).get(content_type__app_label=app_label, codename=codename)
                for app_label, codename in wanted
            ]
        )


def forwards(apps, schema_editor):
    ensure_permissions(apps, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("refunds", "0008_stripe_dashboard_source_and_findings"),
        ("stripe_events", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
