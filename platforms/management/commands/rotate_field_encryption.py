"""Re-encrypt every encrypted field with the newest FIELD_ENCRYPTION_KEY, so an older key can be retired.

    FIELD_ENCRYPTION_KEY=<new>,<old> manage.py rotate_field_encryption [--batch-size 500] [--dry-run]

Every column whose field is EncryptedTextField or EncryptedJSONField (store credentials and webhook
secrets, endpoint signing secrets...) is read raw, batch by batch in primary-key order; a value
already encrypted with the newest key is left alone, any other is rotated (MultiFernet.rotate: same
plaintext, same timestamp, newest key) and written back. Each batch is its own transaction with its
rows locked, so the command can be stopped and run again at any time: what was done stays done and
is counted as current next time (idempotent, resumable). It reports, per field: rotated, already
current, empty, unreadable. Unreadable values (no configured key decrypts them) are left as they
are and make the command exit with an error: do not retire a key while any remain.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import models, transaction
from django.db.models.functions import Cast

from violet_refunds.crypto import CredentialsUnreadable, encrypted_fields, token_is_current, token_rotate


class Command(BaseCommand):
    help = "Re-encrypt every encrypted field with the newest FIELD_ENCRYPTION_KEY (idempotent, resumable)."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--dry-run", action="store_true", help="Count what would be rotated; write nothing.")

    def handle(self, *args, batch_size: int, dry_run: bool, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        totals = {"rotated": 0, "current": 0, "empty": 0, "unreadable": 0}
        for model, field in encrypted_fields():
            counts = self._rotate_field(model, field, batch_size=batch_size, dry_run=dry_run)
            for name, value in counts.items():
                totals[name] += value
            label = f"{model._meta.label}.{field.name}"
            verb = "to rotate" if dry_run else "rotated"
            self.stdout.write(
                f"{label}: {counts['rotated']} {verb}, {counts['current']} already current, "
                f"{counts['empty']} empty, {counts['unreadable']} unreadable"
            )
        verb = "to rotate" if dry_run else "rotated"
        self.stdout.write(
            f"Total: {totals['rotated']} {verb}, {totals['current']} already current, "
            f"{totals['empty']} empty, {totals['unreadable']} unreadable"
        )
        if totals["unreadable"]:
            raise CommandError(
                f"{totals['unreadable']} value(s) cannot be decrypted with any configured key; "
                "keep the old keys until they are fixed."
            )

    def _rotate_field(self, model, field, *, batch_size: int, dry_run: bool) -> dict[str, int]:
        counts = {"rotated": 0, "current": 0, "empty": 0, "unreadable": 0}
        # The raw column (the Fernet token), not the decrypted value the field would give.
        raw = Cast(field.attname, output_field=models.TextField())
        manager = model._base_manager
        last_pk = None
        while True:
            with transaction.atomic():
                rows = manager.order_by("pk").annotate(_raw=raw)
                if last_pk is not None:
                    rows = rows.filter(pk__gt=last_pk)
                batch = list(rows.select_for_update().values_list("pk", "_raw")[:batch_size])
                if not batch:
                    return counts
                for pk, token in batch:
                    if not token:
                        counts["empty"] += 1
                    elif token_is_current(token):
                        counts["current"] += 1
                    else:
                        try:
                            rotated = token_rotate(token)
                        except CredentialsUnreadable:
                            counts["unreadable"] += 1
                            continue
                        if not dry_run:
                            manager.filter(pk=pk).update(**{field.attname: models.Value(rotated, models.TextField())})
                        counts["rotated"] += 1
                last_pk = batch[-1][0]
