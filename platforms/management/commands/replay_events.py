"""Replay inbound platform events through the same processing service as the webhook task."""

from django.core.management.base import BaseCommand, CommandError

from platforms import selectors, services


class Command(BaseCommand):
    help = (
        "Process inbound platform events again: every FAILED and AWAITING_ORDER event (--failed: a "
        "permanent error, transient errors past the retry horizon, or an order not (yet) known; RETRYING "
        "events are left to their automatic retries) or the given ids (--ids, any status: a RETRYING "
        "event is tried now)."
    )

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument(
            "--failed",
            action="store_true",
            help="Replay every FAILED event (they need an operator) and every AWAITING_ORDER event (their "
            "order may exist by now). RETRYING events are left out: they are retried automatically.",
        )
        which.add_argument("--ids", nargs="+", type=int, metavar="ID", help="Replay these InboundEvent ids.")

    def handle(self, *args, failed=False, ids=None, **options):
        events = list(selectors.events_for_replay(failed=failed, ids=ids or ()))
        if ids:
            missing = sorted(set(ids) - {event.pk for event in events})
            if missing:
                raise CommandError(f"No inbound event with id {', '.join(map(str, missing))}.")
        counts = services.events_replay(events)
        for event in events:
            event.refresh_from_db(fields=["status", "outcome"])
            first_line = (event.outcome or "").splitlines()[0] if event.outcome else ""
            self.stdout.write(f"#{event.pk} {event.platform} {event.topic} -> {event.status}: {first_line}")
        summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or "nothing to replay"
        self.stdout.write(self.style.SUCCESS(f"Replayed {len(events)} event(s): {summary}."))
        if failed:
            retrying_count = selectors.events_retrying_count()
            if retrying_count:
                self.stdout.write(
                    f"{retrying_count} event(s) are RETRYING after transient errors and were left alone: they "
                    "are retried automatically (`--ids` processes given ones now)."
                )
