"""Data migration: the two operator groups of the admin.

`Refund operators` read everything refund-related and act (retry, mark external, cancel, resolve
errors, record notices: the admin checks refunds.change_refund for those; replaying inbound events
needs platforms.change_inboundevent). `Refund viewers` read the same pages and act on nothing.
Permissions are created here first: Django only adds them after the last migration, which is too
late for a fresh database.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

READABLE_MODELS = {
    "refunds": ("app", "order", "bag", "ordersku", "refund", "refundsku", "refunderror", "refundevent"),
    "payments": ("paymenttransaction", "transfer", "transferreversal", "shopperrefund"),
    "platforms": ("merchant", "storeconnection", "inboundevent"),
}
VIEW_PERMISSIONS = tuple(
    (app_label, f"view_{model}") for app_label, models in READABLE_MODELS.items() for model in models
)
OPERATOR_PERMISSIONS = (("refunds", "change_refund"), ("platforms", "change_inboundevent"))

GROUPS = {
    "Refund operators": VIEW_PERMISSIONS + OPERATOR_PERMISSIONS,
    "Refund viewers": VIEW_PERMISSIONS,
}


def ensure_groups(apps, using="default"):
    """Create (or complete) both groups. Idempotent; tests call it after a database flush."""
    for app_label in READABLE_MODELS:
        app_config = apps.get_app_config(app_label)
        # create_permissions skips app configs without a models module, which the migration
        # state's app configs never have.
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = True
        try:
            create_permissions(app_config, verbosity=0, using=using, apps=apps)
        finally:
            app_config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, wanted in GROUPS.items():
        group, _ = Group.objects.using(using).get_or_create(name=name)
        permissions = [
            Permission.objects.using(using).get(content_type__app_label=app_label, codename=codename)
            for app_label, codename in wanted
        ]
        group.permissions.add(*permissions)


def create_groups(apps, schema_editor):
    ensure_groups(apps, using=schema_editor.connection.alias)


def delete_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("payments", "0001_initial"),
        ("platforms", "0002_merchant_api_keys"),
        ("refunds", "0002_shorter_constraint_names"),
    ]

    operations = [migrations.RunPython(create_groups, delete_groups)]
