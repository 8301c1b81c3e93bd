"""A failing reply's body moves out of `last_error` (which the channel reads through GET /v1/events)
into `last_reply_excerpt` (operators only)."""

import re

from django.db import migrations, models

_HTTP_ERROR = re.compile(r"^(HTTP \d{3}): (.*)$", re.DOTALL)


def split_reply_bodies(apps, schema_editor):
    WebhookDelivery = apps.get_model("notifications", "WebhookDelivery")
    rows = WebhookDelivery.objects.filter(last_error__regex=r"^HTTP [0-9]{3}: ").only("pk", "last_error")
    for delivery in rows.iterator(chunk_size=500):
        match = _HTTP_ERROR.match(delivery.last_error)
        if match:
            WebhookDelivery.objects.filter(pk=delivery.pk).update(
                last_error=match.group(1), last_reply_excerpt=match.group(2)
            )


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0002_operator_group_permissions"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookdelivery",
            name="last_reply_excerpt",
            field=models.TextField(blank=True, verbose_name="last reply (excerpt)"),
        ),
        migrations.RunPython(split_reply_bodies, migrations.RunPython.noop),
    ]
