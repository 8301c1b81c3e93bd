"""Erase a shopper's personal data: `manage.py erase_shopper --email a@b.c` or `--order 12 --order 13`.

Orders, refunds and transfers stay (financial records) without the shopper's contact details; the
erasure is recorded as a PrivacyRequest (kind ERASURE) holding only a hash of the e-mail."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from platforms.models import PrivacyRequest
from platforms.privacy.erasure import email_sha256, shopper_erase


class Command(BaseCommand):
    help = "Redact one shopper's personal data everywhere we hold it (money records stay)."

    def add_arguments(self, parser):
        parser.add_argument("--email", default="", help="The shopper's e-mail.")
        parser.add_argument("--order", type=int, action="append", default=[], help="Our order id (repeatable).")
        parser.add_argument("--operator", default="", help="Who asked (recorded with the request).")

    def handle(self, *args, email="", order=(), operator="", **options):
        if not email and not order:
            raise CommandError("Give --email or at least one --order.")
        result = shopper_erase(email=email, order_ids=tuple(order))
        now = timezone.now()
        request = PrivacyRequest.objects.create(
            kind=PrivacyRequest.Kind.ERASURE,
            state=PrivacyRequest.State.DONE,
            email_sha256=email_sha256(email),
            order_ids=[str(pk) for pk in result.order_ids],
            due_at=now,
            completed_at=now,
            outcome=result.describe(),
            requested_by=f"operator:{operator or 'manage.py'}",
        )
        self.stdout.write(f"Privacy request #{request.pk}: {result.describe()}")
