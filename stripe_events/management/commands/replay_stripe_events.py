"""Replay stored Stripe events through the same processing service as the webhook task."""

from django.core.management.base import BaseCommand, CommandError

from stripe_events import services
from stripe_events.models import StripeEvent


class Command(BaseCommand):
    help = (
        "Process stored Stripe events again: every FAILED event (--failed; RETRYING ones are left to their "
        "automatic retries), the given ids (--ids) or Stripe event ids (--stripe-ids evt_…), any status."
    )

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--failed", action="store_true", help="Replay every FAILED event.")
        which.add_argument("--ids", nargs="+", type=int, metavar="ID", help="Replay these StripeEvent ids.")
        which.add_argument("--stripe-ids", nargs="+", metavar="EVT", help="Replay these Stripe event ids (evt_…).")

    def handle(self, *args, failed=False, ids=None, stripe_ids=None, **options):
        if failed:
            events = list(StripeEvent.objects.filter(status=StripeEvent.Status.FAILED).order_by("date_created", "pk"))
        elif ids:
            events = list(StripeEvent.objects.filter(pk__in=ids).order_by("date_created", "pk"))
            missing = sorted(set(ids) - {event.pk for event in events})
            if missing:
                raise CommandError(f"No Stripe event with id {', '.join(map(str, missing))}.")
        else:
            events = list(StripeEvent.objects.filter(stripe_id__in=stripe_ids).order_by("date_created", "pk"))
            missing = sorted(set(stripe_ids) - {event.stripe_id for event in events})
            if missing:
                raise CommandError(f"No Stripe event {', '.join(missing)} is stored.")
        counts = services.stripe_events_replay(events)
        for event in events:
            event.refresh_from_db(fields=["status", "outcome"])
            first_line = (event.outcome or "").splitlines()[0] if event.outcome else ""
            self.stdout.write(f"#{event.pk} {event.type} {event.stripe_id} -> {event.status}: {first_line}")
        summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or "nothing to replay"
        self.stdout.write(self.style.SUCCESS(f"Replayed {len(events)} event(s): {summary}."))
