"""Data migration: the operator groups (refunds 0003) see webhooks, events and deliveries.

Both groups get view permissions only: operators act through the admin actions (resume, disable,
resend), which check refunds.change_refund like every operator action. Registering or editing an
endpoint in the admin takes the model's own add/change permission (superusers, or whoever is
granted it), as channels normally register theirs through the API.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

MODELS = ("webhookendpoint", "webhookevent", "webhookdelivery")
VIEW_PERMISSIONS = tuple(f"view_{model}" for model in MODELS)
GROUPS = {
    "Refund operators": VIEW_PERMISSIONS,
    "Refund viewers": VIEW_PERMISSIONS,
}


def ensure_permissions(apps, using="default"):
    """Idempotent; tests call it after a database flush (as refunds 0003's ensure_groups)."""
    app_config = apps.get_app_config("notifications")
    models_module = getattr(app_config, "models_module", None)
    app_config.models_module = True  # create_permissions skips app configs without one
    try:
        create_permissions(app_config, verbosity=0, using=using, apps=apps)
    finally:
        app_config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUPS.items():
        group, _ = Group.objects.using(using).get_or_create(name=name)
        group.permissions.add(
            *Permission.objects.using(using).filter(content_type__app_label="notifications", codename__in=codenames)
        )


def forwards(apps, schema_editor):
    ensure_permissions(apps, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_initial"),
        ("refunds", "0003_refund_operator_groups"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
