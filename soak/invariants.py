"""The invariant table, computed after settling from the database alone (ours and the sandbox's own
tables, which stand for what Stripe holds). Each check is a row: what was measured, what it must be,
and the cases that break it (refund ids and why).
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

from soak.processes import PROJECT_DIR

# An attempt's evidence (an event it wrote) before its scheduled time by more than this is early.
EARLY_TOLERANCE = timedelta(milliseconds=10)


@dataclass
class Check:
    name: str
    value: object
    expected: str
    ok: bool
    cases: list = field(default_factory=list)  # one line per violation
    note: str = ""

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "value": self.value,
            "expected": self.expected,
            "ok": self.ok,
            "cases": self.cases,
            "note": self.note,
        }


def _refund_line(refund) -> str:
    return f"refund {refund.pk} ({refund.status}, bag {refund.bag_id}, {refund.amount})"


# --- terminal statuses --------------------------------------------------------------------------------


def check_statuses(refunds) -> list[Check]:
    counts = Counter(r.status for r in refunds)
    processing = [r for r in refunds if r.status == "PROCESSING"]
    return [
        Check(
            "refunds by status",
            dict(sorted(counts.items())),
            "none PROCESSING after settling",
            not processing,
            [
                f"{_refund_line(r)} never settled (attempts {r.attempts}, next attempt {r.next_attempt_at})"
                for r in processing
            ],
        )
    ]


# --- Stripe objects vs our step rows ------------------------------------------------------------------


def check_stripe_vs_records(refunds) -> list[Check]:
    """Every sandbox refund/reversal whose metadata names one of our refunds is recorded on that
    refund's step row (same id, same amount, matching state), and every step row that claims an
    object points at one that exists with that amount."""
    from payments.models import ShopperRefund, TransferReversal
    from stripe_sandbox.models import SandboxRefund, SandboxTransferReversal

    by_id = {r.pk: r for r in refunds}
    shopper_rows = {row.gateway_refund_id: row for row in ShopperRefund.objects.exclude(gateway_refund_id=None)}
    reversal_rows = {row.gateway_reversal_id: row for row in TransferReversal.objects.exclude(gateway_reversal_id=None)}
    unrecorded, mismatched, missing_at_stripe = [], [], []
    money_moved_but_failed = set()

    live_refund_states = {"succeeded", "pending"}
    for obj in SandboxRefund.objects.all():
        refund_id = _metadata_refund(obj)
        if refund_id is None:
            continue
        row = shopper_rows.get(obj.stripe_id)
        refund = by_id.get(refund_id)
        where = f"refund {refund_id} ({refund.status if refund else 'unknown'}) shopper refund {obj.stripe_id}"
        if row is None:
            if obj.status in live_refund_states:
                unrecorded.append(f"{where}: {obj.amount} {obj.status} at Stripe, not recorded on the step row")
                if refund is not None and refund.status == "FAILED":
                    money_moved_but_failed.add(refund_id)
            elif obj.status not in ("failed", "canceled"):
                unrecorded.append(f"{where}: {obj.status} at Stripe, not recorded")
            continue
        expected_state = {"succeeded": "SUCCEEDED", "pending": "PENDING", "failed": "FAILED", "canceled": "FAILED"}
        if row.refund_id != refund_id or row.amount != obj.amount or expected_state.get(obj.status) != row.status:
            mismatched.append(
                f"{where}: Stripe {obj.amount} {obj.status}, ours refund {row.refund_id} {row.amount} {row.status}"
            )
    for obj in SandboxTransferReversal.objects.all():
        refund_id = _metadata_refund(obj)
        if refund_id is None:
            continue
        row = reversal_rows.get(obj.stripe_id)
        refund = by_id.get(refund_id)
        step = obj.metadata.get("step", "?")
        where = f"refund {refund_id} ({refund.status if refund else 'unknown'}) {step} {obj.stripe_id}"
        if row is None:
            unrecorded.append(f"{where}: {obj.amount} reversed at Stripe, not recorded on the step row")
            if refund is not None and refund.status == "FAILED":
                money_moved_but_failed.add(refund_id)
            continue
        if row.refund_id != refund_id or row.amount != obj.amount or row.status != "COMPLETE":
            mismatched.append(f"{where}: Stripe {obj.amount}, ours refund {row.refund_id} {row.amount} {row.status}")

    stripe_refunds = {o.stripe_id: o for o in SandboxRefund.objects.all()}
    stripe_reversals = {o.stripe_id: o for o in SandboxTransferReversal.objects.all()}
    for gateway_id, row in shopper_rows.items():
        obj = stripe_refunds.get(gateway_id)
        if obj is None or obj.amount != row.amount:
            missing_at_stripe.append(
                f"refund {row.refund_id} shopper refund {gateway_id}: not at Stripe with {row.amount}"
            )
    for gateway_id, row in reversal_rows.items():
        obj = stripe_reversals.get(gateway_id)
        if obj is None or obj.amount != row.amount:
            missing_at_stripe.append(f"refund {row.refund_id} reversal {gateway_id}: not at Stripe with {row.amount}")
    done_without_id = [
        f"refund {row.refund_id} shopper refund SUCCEEDED without a Stripe id"
        for row in ShopperRefund.objects.filter(status="SUCCEEDED", gateway_refund_id=None)
    ] + [
        f"refund {row.refund_id} reversal COMPLETE without a Stripe id"
        for row in TransferReversal.objects.filter(status="COMPLETE", gateway_reversal_id=None)
    ]

    return [
        Check("Stripe objects not recorded on their step row", len(unrecorded), "0", not unrecorded, unrecorded),
        Check(
            "FAILED refunds whose money moved at Stripe",
            len(money_moved_but_failed),
            "0",
            not money_moved_but_failed,
            [
                f"refund {i}: FAILED here, but Stripe holds a live object for one of its steps"
                for i in sorted(money_moved_but_failed)
            ],
            note="any would mean the channel was told REFUND_FAILED for money that moved (issue #13 V1)",
        ),
        Check("step rows that disagree with Stripe (amount/state)", len(mismatched), "0", not mismatched, mismatched),
        Check(
            "step rows pointing at nothing at Stripe",
            len(missing_at_stripe) + len(done_without_id),
            "0",
            not (missing_at_stripe or done_without_id),
            missing_at_stripe + done_without_id,
        ),
    ]


def _metadata_refund(obj) -> int | None:
    value = str((obj.metadata or {}).get("refund_id", ""))
    return int(value) if value.isdigit() else None


# --- duplicates and limits ----------------------------------------------------------------------------


def check_limits(refunds) -> list[Check]:
    from payments.models import Transfer, TransferReversal
    from refunds.models import Bag
    from stripe_sandbox.models import SandboxPaymentIntent, SandboxRefund, SandboxTransfer, SandboxTransferReversal

    duplicates = []
    per_step = defaultdict(list)
    for obj in SandboxRefund.objects.exclude(status__in=["failed", "canceled"]):
        if _metadata_refund(obj) is not None:
            per_step[(_metadata_refund(obj), obj.metadata.get("step"))].append(obj.stripe_id)
    for obj in SandboxTransferReversal.objects.all():
        if _metadata_refund(obj) is not None:
            per_step[(_metadata_refund(obj), obj.metadata.get("step"))].append(obj.stripe_id)
    for (refund_id, step), ids in sorted(per_step.items()):
        if len(ids) > 1:
            duplicates.append(f"refund {refund_id} {step}: {len(ids)} live Stripe objects {', '.join(ids)}")

    over = []
    for intent in SandboxPaymentIntent.objects.all():
        live_refunds = SandboxRefund.objects.filter(payment_intent=intent, status__in=["succeeded", "pending"])
        live = sum(o.amount for o in live_refunds)
        if live > intent.amount or intent.amount_refunded > intent.amount:
            over.append(f"charge {intent.stripe_id}: refunded {live} of {intent.amount}")
    for transfer in SandboxTransfer.objects.all():
        reversed_total = sum(r.amount for r in transfer.reversals.all())
        if reversed_total > transfer.amount:
            over.append(f"transfer {transfer.stripe_id}: reversed {reversed_total} of {transfer.amount}")
    by_bag = defaultdict(list)
    for refund in refunds:
        by_bag[refund.bag_id].append(refund)
    bags = {b.pk: b for b in Bag.objects.filter(pk__in=list(by_bag))}
    commission = []
    for bag_id, bag_refunds in by_bag.items():
        bag = bags[bag_id]
        recorded = sum(r.amount for r in bag_refunds if r.status != "CANCELED")
        if recorded > bag.total:
            over.append(f"bag {bag_id}: refunds recorded {recorded} > bag total {bag.total}")
        transfers = {t.recipient: t for t in Transfer.objects.filter(bag_id=bag_id)}
        channel = transfers.get("DEVELOPER")
        if channel is None:
            continue
        reversals = TransferReversal.objects.filter(transfer=channel, status="COMPLETE")
        reversed_total = sum(r.amount for r in reversals)
        rate = Fraction(Decimal(bag.commission_rate)) / 100
        for reversal in reversals:
            refund = next(r for r in bag_refunds if r.pk == reversal.refund_id)
            if reversal.amount > rate * refund.sub_total_amount + 1:
                commission.append(
                    f"refund {refund.pk}: channel reversal {reversal.amount} > {float(rate * 100):g}% of its "
                    f"sub_total {refund.sub_total_amount} (+1 cent rounding)"
                )
        if reversed_total > channel.amount:
            commission.append(f"bag {bag_id}: channel reversed {reversed_total} > commission paid {channel.amount}")
    return [
        Check(
            "Stripe objects per refund step (duplicates)",
            len(duplicates),
            "0 steps with 2+",
            not duplicates,
            duplicates,
        ),
        Check("refunded <= charged (per charge, transfer, bag)", len(over), "0 over", not over, over),
        Check("commission limits (channel reversals)", len(commission), "0 over", not commission, commission),
    ]


# --- acknowledged intents -----------------------------------------------------------------------------


def check_intents(intents, refunds) -> list[Check]:
    """Every acknowledged intent has exactly one refund (or a documented reason), nothing else exists."""
    from platforms.models import InboundEvent

    by_key = {(r.bag_id, r.request_key): r for r in refunds if r.request_key}
    by_external = {(r.bag_id, r.external_id): r for r in refunds if r.external_id}
    by_id = {r.pk: r for r in refunds}
    lost, reasoned, split, claimed = [], [], [], set()
    acknowledged = [i for i in intents if i.acknowledged]
    events_by_refund = defaultdict(list)
    if any(i.kind == "shopify" for i in acknowledged):
        for event in InboundEvent.objects.all():
            refund_id = _shopify_refund_id(event.body)
            events_by_refund[refund_id].append(event)
    for intent in acknowledged:
        found = set(intent.refund_ids)
        if "request_key" in intent.identity and (intent.bag_id, intent.identity["request_key"]) in by_key:
            found.add(by_key[(intent.bag_id, intent.identity["request_key"])].pk)
        if "external_id" in intent.identity and (intent.bag_id, intent.identity["external_id"]) in by_external:
            found.add(by_external[(intent.bag_id, intent.identity["external_id"])].pk)
        found = {i for i in found if i in by_id}
        if len(found) > 1:
            split.append(f"intent {intent.key}: several refunds {sorted(found)}")
        claimed |= found
        if found:
            continue
        if intent.kind == "shopify":
            events = events_by_refund.get(intent.identity["external_id"], [])
            states = sorted({e.status for e in events})
            if events and all(e.status == "IGNORED" for e in events):
                reasoned.append(f"intent {intent.key}: IGNORED: {events[0].outcome[:160]}")
                continue
            failures = [
                f"event {e.pk} {e.status}: {(e.error or e.outcome)[:160]}" for e in events if e.status != "PROCESSED"
            ]
            lost.append(
                f"intent {intent.key} (Shopify refund {intent.identity['external_id']}, bag {intent.bag_id}, "
                f"{intent.amount}) acknowledged, no refund; events {states}: {'; '.join(failures)}"
            )
            continue
        lost.append(f"intent {intent.key} (bag {intent.bag_id}, {intent.amount}) acknowledged, no refund")
    unacknowledged_refunds = [_refund_line(r) for r in refunds if r.pk not in claimed]
    return [
        Check(
            "acknowledged intents without a refund (lost)",
            len(lost),
            "0",
            not lost,
            lost,
            note=(
                f"{len(acknowledged)} acknowledged of {len(intents)} intents; {len(reasoned)} with a documented reason"
            ),
        ),
        Check("acknowledged intents with a documented reason instead", len(reasoned), "info", True, reasoned),
        Check("intents that made more than one refund", len(split), "0", not split, split),
        Check(
            "refunds no acknowledged intent asked for",
            len(unacknowledged_refunds),
            "info (client saw no 2xx, e.g. the answer was lost)",
            True,
            unacknowledged_refunds,
        ),
    ]


def _shopify_refund_id(body: str) -> str:
    import json

    try:
        return str(json.loads(body).get("id"))
    except (ValueError, AttributeError):
        return ""


# --- early attempts -----------------------------------------------------------------------------------


def check_early_attempts(refunds) -> list[Check]:
    """An attempt ran before its time when the engine wrote evidence of a new attempt (any event by
    the worker: STEP_SUCCEEDED, STEP_FAILED, RETRY_SCHEDULED, STATUS_CHANGED) after a RETRY_SCHEDULED
    event and before that event's time + its countdown (`data.countdown`): the retry it scheduled was
    not due yet. Evidence is written after the attempt began, so this undercounts, never overcounts.
    A sweep re-queue (REQUEUED by "sweep") in between is named as the likely cause.

    Also counted from the sandbox's request log: Stripe POSTs made with one of the refund's keys in
    that window (an early attempt that reached Stripe)."""
    from refunds.models import RefundError, RefundEvent
    from stripe_sandbox.models import SandboxRequest

    ids = [r.pk for r in refunds]
    events = defaultdict(list)
    for event in RefundEvent.objects.filter(refund_id__in=ids).order_by("pk"):
        events[event.refund_id].append(event)
    posts = defaultdict(list)
    for request in SandboxRequest.objects.filter(method="POST", idempotency_key__startswith="refund-").only(
        "idempotency_key", "created"
    ):
        refund_id = request.idempotency_key.split("-")[1]
        if refund_id.isdigit():
            posts[int(refund_id)].append(request.created)
    early, early_refunds, early_posts, after_sweep = [], set(), 0, 0
    for refund_id, trail in events.items():
        for index, event in enumerate(trail):
            if event.kind != "RETRY_SCHEDULED":
                continue
            due = event.date_created + timedelta(seconds=float(event.data.get("countdown", 0)))
            swept = False
            for later in trail[index + 1 :]:
                if later.kind == "REQUEUED":
                    swept = True
                    continue
                if later.actor != "worker" or later.kind not in (
                    "STEP_SUCCEEDED",
                    "STEP_FAILED",
                    "RETRY_SCHEDULED",
                    "STATUS_CHANGED",
                ):
                    continue
                if later.date_created < due - EARLY_TOLERANCE:
                    ahead = (due - later.date_created).total_seconds()
                    early.append(
                        f"refund {refund_id}: '{event.message[:60]}' then {later.kind} {ahead:.1f}s early"
                        + (" (after a sweep re-queue)" if swept else "")
                    )
                    early_refunds.add(refund_id)
                    after_sweep += swept
                break
            early_posts += sum(1 for at in posts.get(refund_id, []) if event.date_created < at < due - EARLY_TOLERANCE)
    exhausted = set(
        RefundError.objects.filter(refund_id__in=ids, error_code=_retries_exhausted_code()).values_list(
            "refund_id", flat=True
        )
    )
    return [
        Check(
            "early attempts (ran before next_attempt_at)",
            len(early),
            "0",
            not early,
            early,
            note=(
                f"{len(early_refunds)} refunds; {after_sweep} after a sweep re-queue; {early_posts} Stripe POSTs "
                f"sent early (sandbox log); {len(exhausted & early_refunds)} of {len(exhausted)} out-of-retries "
                "refunds had early attempts"
            ),
        )
    ]


def _retries_exhausted_code() -> int:
    from refunds.errors import RefundErrorCode

    return int(RefundErrorCode.RETRIES_EXHAUSTED)


# --- outbox -------------------------------------------------------------------------------------------


def check_outbox(refunds, receiver) -> list[Check]:
    """Every status a refund went through (recorded as PROCESSING, then each STATUS_CHANGED) has its
    REFUND_<status> event, and every event was delivered (SUCCEEDED) and reached the receiver."""
    from notifications.models import WebhookDelivery, WebhookEvent
    from refunds.models import RefundEvent

    ids = [r.pk for r in refunds]
    emitted = defaultdict(set)
    for refund_id, event_type in WebhookEvent.objects.filter(refund_id__in=ids).values_list("refund_id", "event_type"):
        emitted[refund_id].add(event_type)
    changes = defaultdict(set)
    for refund_id, to_status in RefundEvent.objects.filter(refund_id__in=ids, kind="STATUS_CHANGED").values_list(
        "refund_id", "to_status"
    ):
        changes[refund_id].add(to_status)
    missing = []
    for refund in refunds:
        for status in {"PROCESSING", refund.status, *changes[refund.pk]}:
            if f"REFUND_{status}" not in emitted[refund.pk]:
                missing.append(f"{_refund_line(refund)}: no REFUND_{status} event")
    deliveries = Counter(WebhookDelivery.objects.values_list("status", flat=True))
    undelivered = [
        f"delivery {d.pk} of {d.event.event_type} (refund {d.event.refund_id}, bag {d.event.bag_id}): {d.status}, "
        f"attempts {d.attempts}, {d.last_error[:100]}"
        for d in WebhookDelivery.objects.exclude(status="SUCCEEDED").select_related("event")
    ]
    not_received = [
        str(event_id)
        for event_id in WebhookDelivery.objects.filter(status="SUCCEEDED").values_list("event__event_id", flat=True)
        if receiver.received.get(str(event_id), 0) == 0
    ]
    duplicates = sum(1 for count in receiver.received.values() if count > 1)
    return [
        Check("refund status changes without their webhook event", len(missing), "0", not missing, missing),
        Check(
            "webhook deliveries not SUCCEEDED",
            dict(sorted(deliveries.items())),
            "all SUCCEEDED",
            not undelivered,
            undelivered,
            note=(
                f"receiver got {sum(receiver.received.values())} posts for {len(receiver.received)} events "
                f"({duplicates} events more than once, {receiver.bad_signatures} bad signatures); "
                f"{len(not_received)} SUCCEEDED deliveries never reached it"
            ),
        ),
    ]


# --- inbound events -----------------------------------------------------------------------------------


def check_inbound(receiver_unused=None) -> list[Check]:
    from platforms.models import InboundEvent

    counts = Counter(InboundEvent.objects.values_list("status", flat=True))
    bad = [
        f"event {e.pk} ({e.event_id}) {e.status}: {(e.error or e.outcome)[:160]}"
        for e in InboundEvent.objects.filter(status__in=["RECEIVED", "FAILED"])
    ]
    return [
        Check(
            "inbound events by status",
            dict(sorted(counts.items())),
            "none RECEIVED or FAILED",
            not bad,
            bad,
            note="RECEIVED or FAILED after settling would be an acknowledged event left behind (issue #13 V3)",
        )
    ]


# --- reconcile_refunds --------------------------------------------------------------------------------


def check_reconcile(env: dict) -> tuple[list[Check], str]:
    result = subprocess.run(
        [sys.executable, "manage.py", "reconcile_refunds"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = (result.stdout + result.stderr).strip()
    lines = [line for line in output.splitlines() if line.strip()]
    differences = [line for line in lines if not line.startswith(("Reconciled", "No differences", "CommandError"))]
    return (
        [
            Check(
                "manage.py reconcile_refunds exit code (no operator action)",
                result.returncode,
                "0",
                result.returncode == 0,
                differences[:200] if result.returncode else [],
            )
        ],
        output,
    )


# --- forwarding to the platform (issue 14) ----------------------------------------------------------


def check_forwarding(refunds, receiver) -> list[Check]:
    """Every channel refund of the Shopify merchant was recorded on (the receiver's) Shopify exactly
    once before its money moved: forwarding ACCEPTED with the id Shopify gave, one Shopify refund
    carrying its marker, and no money step planned before acceptance."""
    from refunds.models import RefundForwarding

    forwardings = {f.refund_id: f for f in RefundForwarding.objects.filter(refund_id__in=[r.pk for r in refunds])}
    with receiver.lock:
        created = [refund for refunds_of_order in receiver.shopify_refunds.values() for refund in refunds_of_order]
    by_marker = Counter()
    for refund in created:
        note = str(refund.get("note") or "")
        if note.startswith("[violet-refund:"):
            by_marker[int(note.split(":", 1)[1].split("]", 1)[0])] += 1
    not_accepted, twice, unmatched = [], [], []
    for refund in refunds:
        forwarding = forwardings.get(refund.pk)
        if refund.source != "CHANNEL_API" or forwarding is None or forwarding.platform != "SHOPIFY":
            continue
        if forwarding.state != "ACCEPTED" and refund.status != "FAILED":
            not_accepted.append(f"{_refund_line(refund)}: forwarding {forwarding.state} ({forwarding.last_error[:80]})")
        if by_marker[refund.pk] > 1:
            twice.append(f"{_refund_line(refund)}: {by_marker[refund.pk]} refunds on Shopify")
        if forwarding.state == "ACCEPTED" and (
            by_marker[refund.pk] != 1 or refund.external_id != forwarding.platform_refund_id
        ):
            unmatched.append(f"{_refund_line(refund)}: Shopify holds {by_marker[refund.pk]}, id {refund.external_id}")
    return [
        Check("channel refunds on Shopify", len(created), "info", True),
        Check("channel refunds not accepted by Shopify", len(not_accepted), "0", not not_accepted, not_accepted),
        Check("channel refunds created twice on Shopify", len(twice), "0", not twice, twice),
        Check("accepted refunds without their one Shopify refund", len(unmatched), "0", not unmatched, unmatched),
    ]
