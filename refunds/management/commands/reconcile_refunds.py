"""Compare our refund books with Stripe's and print every difference. Read-only.

    manage.py reconcile_refunds [--since DAYS] [--refund ID ...] [--open-findings]

The comparison and the kinds of difference it reports are in refunds/reconciliation.py.
Exit code 0 when everything matches, 1 when differences were found, 2 when Stripe could not be
asked (nothing is concluded then). Nothing is written, unless --open-findings: then each difference
opens an operator finding (once; what beat's nightly run does, refunds.services.findings).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from refunds.reconciliation import RefundsUnknown, StripeUnavailable, refunds_reconcile
from refunds.services.findings import findings_from_reconciliation


class Command(BaseCommand):
    help = "Compare refunds, reversals and shopper refunds with Stripe; print the differences (read-only)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--since", type=int, default=30, metavar="DAYS", help="Refunds created in the last DAYS days (30)."
        )
        parser.add_argument("--refund", type=int, nargs="+", default=[], metavar="ID", help="Only these refunds.")
        parser.add_argument(
            "--open-findings",
            action="store_true",
            help="Open an operator finding per difference (not with --refund), as the nightly run does.",
        )

    def handle(self, *args, since: int, refund: list[int], open_findings: bool = False, **options):
        if since < 0:
            raise CommandError("--since must be 0 or more days.")
        if open_findings and refund:
            raise CommandError("--open-findings reconciles a period (--since), not chosen refunds.")
        opened = None
        try:
            if open_findings:
                findings = findings_from_reconciliation(since_days=since)
                report, opened = findings.report, findings.opened
            else:
                report = refunds_reconcile(since_days=since, refund_ids=refund)
        except RefundsUnknown as exc:
            raise CommandError(str(exc)) from exc
        except StripeUnavailable as exc:
            self.stderr.write(f"Could not read from Stripe, nothing concluded: {exc}")
            raise CommandError("Stripe unavailable.", returncode=2) from exc

        self.stdout.write(
            f"Reconciled {report.scope} against Stripe ({report.payments} payments, {report.transfers} transfers)."
        )
        for difference in report.differences:
            self.stdout.write(difference.line())
        if opened is not None:
            self.stdout.write(f"{opened} new finding(s) opened; the others were already open or resolved.")
        if report.differences:
            count = len(report.differences)
            self.stdout.write(f"{count} difference(s).")
            raise CommandError(f"{count} difference(s) between our refunds and Stripe.", returncode=1)
        self.stdout.write("No differences.")
