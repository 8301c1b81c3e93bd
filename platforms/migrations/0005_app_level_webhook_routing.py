"""StoreConnection.external_store_id: the platform's own store id (Ecwid store id, Wix app instance id)
that app-level webhooks are routed by (issue #15 item 1), filled from the stored credentials.

Named for its content (not only its number): another branch adds a platforms migration too; whoever
merges both renumbers one of them.
"""

from django.db import migrations, models

ROUTING_CREDENTIALS = {"ECWID": "store_id", "WIX": "instance_id"}


def fill_external_store_ids(apps, schema_editor):
    from violet_refunds.crypto import CredentialsUnreadable

    StoreConnection = apps.get_model("platforms", "StoreConnection")
    ids = StoreConnection.objects.filter(merchant__platform__in=list(ROUTING_CREDENTIALS)).values_list("pk", flat=True)
    for pk in list(ids):
        try:
            connection = StoreConnection.objects.select_related("merchant").get(pk=pk)
        except CredentialsUnreadable:
            continue  # filled on the next save of its credentials
        credentials = connection.credentials if isinstance(connection.credentials, dict) else {}
        value = str(credentials.get(ROUTING_CREDENTIALS[connection.merchant.platform]) or "").strip().lower()[:255]
        if value:
            StoreConnection.objects.filter(pk=pk).update(external_store_id=value)


class Migration(migrations.Migration):
    dependencies = [
        ("platforms", "0004_inbound_event_awaiting_order"),
    ]

    operations = [
        migrations.AddField(
            model_name="storeconnection",
            name="external_store_id",
            field=models.CharField(
                blank=True,
                db_index=True,
                default="",
                editable=False,
                help_text="Ecwid store id / Wix app instance id, from the credentials: routes app-level webhooks.",
                max_length=255,
            ),
        ),
        migrations.RunPython(fill_external_store_ids, migrations.RunPython.noop),
    ]
