"""Data migration (issue #22):

- `Refund operators` may see raw inbound payloads (platforms.view_raw_payload); `Refund viewers`
  see events without their bodies and headers.
- Shopify connections get their routing id (the shop domain) for /webhooks/shopify/.
- Events stored before the header allow-list lose their signature and auth headers (a frozen
  deny-list here; new events only ever store the adapters' allow-lists).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from violet_refunds.crypto import CredentialsUnreadable

GROUPS_WITH_RAW_PAYLOADS = ("Refund operators",)


def ensure_raw_payload_permission(apps, using="default"):
    """Idempotent; tests call it after a database flush (like refunds 0003's ensure_groups)."""
    app_config = apps.get_app_config("platforms")
    models_module = getattr(app_config, "models_module", None)
    app_config.models_module = True  # create_permissions skips app configs without one
    try:
        create_permissions(app_config, verbosity=0, using=using, apps=apps)
    finally:
        app_config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permission = Permission.objects.using(using).get(content_type__app_label="platforms", codename="view_raw_payload")
    for name in GROUPS_WITH_RAW_PAYLOADS:
        group, _ = Group.objects.using(using).get_or_create(name=name)
        group.permissions.add(permission)


def shopify_routing_ids(apps, using="default"):
    StoreConnection = apps.get_model("platforms", "StoreConnection")
    for connection in StoreConnection.objects.using(using).filter(merchant__platform="SHOPIFY", external_store_id=""):
        try:
            credentials = connection.credentials
        except CredentialsUnreadable:  # routed once the credentials are replaced
            continue
        shop = (
            str((credentials or {}).get("shop_domain") or "").strip().lower()[:255]
            if isinstance(credentials, dict)
            else ""
        )
        if shop:
            StoreConnection.objects.using(using).filter(pk=connection.pk).update(external_store_id=shop)


# Lower-cased name fragments of headers that carry a signature or a credential.
_SECRET_HEADER_FRAGMENTS = ("signature", "hmac", "authorization", "api-key", "apikey", "cookie", "token", "secret")


def strip_secret_headers(apps, using="default"):
    InboundEvent = apps.get_model("platforms", "InboundEvent")
    events = InboundEvent.objects.using(using).exclude(headers={}).only("pk", "headers")
    for event in events.iterator(chunk_size=2000):
        headers = event.headers if isinstance(event.headers, dict) else {}
        kept = {
            name: value
            for name, value in headers.items()
            if not any(fragment in name.lower() for fragment in _SECRET_HEADER_FRAGMENTS)
        }
        if kept != headers:
            InboundEvent.objects.using(using).filter(pk=event.pk).update(headers=kept)


def forwards(apps, schema_editor):
    ensure_raw_payload_permission(apps, using=schema_editor.connection.alias)
    shopify_routing_ids(apps, using=schema_editor.connection.alias)
    strip_secret_headers(apps, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("platforms", "0008_privacy_lifecycle"),
        ("refunds", "0003_refund_operator_groups"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
