"""Apply the retention rules now (beat does it daily): `manage.py apply_retention [--dry-run]`."""

from django.core.management.base import BaseCommand

from platforms.privacy.retention import retention_apply


class Command(BaseCommand):
    help = "Redact or delete personal data past its retention (docs/privacy.md); prints the counts."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count what would change; change nothing.")
        parser.add_argument("--batch-size", type=int, default=None, help="Rows per batch (RETENTION_BATCH_SIZE).")

    def handle(self, *args, dry_run=False, batch_size=None, **options):
        result = retention_apply(dry_run=dry_run, batch_size=batch_size)
        for name, count in result.counts.items():
            self.stdout.write(f"{name}: {count}")
        self.stdout.write(result.describe())
