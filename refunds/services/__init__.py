"""Refund services: every write to the refund domain goes through these functions.

Entry points (platform signals, merchant notices, channel API, operators) call `refund_record`
(record.py); the `process_refund` task calls `refund_process` (engine.py, running the Stripe steps
of steps.py), which moves the money through Stripe exactly once; operators repair with
`refund_retry`, `refund_mark_external`, `refund_cancel`, `refund_error_resolve` (repairs.py); a
bag's status follows its refunds (bags.py). A merchant's refund notice (SFCC Option 2, from the
portal, its API or an operator) goes through `refund_notice_record` (notices.py). Every change is
audited as a RefundEvent (events.py).
"""

from refunds.amounts import bag_refunded_parts
from refunds.selectors import refunds_stuck_queryset
from refunds.services.bags import bag_mark_canceled, bag_update_refund_state
from refunds.services.engine import ProcessOutcome, refund_process
from refunds.services.notices import (
    NoticeLine,
    NoticeTotals,
    RefundNoticesNotEnabled,
    notice_totals,
    reference_problem,
    refund_notice_record,
)
from refunds.services.record import (
    PlatformRecordResult,
    PlatformRefundRequest,
    RecordResult,
    RefundSkuLine,
    RequestMismatch,
    refund_for_request,
    refund_record,
    refund_record_platform,
)
from refunds.services.repairs import (
    refund_cancel,
    refund_error_resolve,
    refund_mark_external,
    refund_retry,
    refund_sweep_stuck,
)

__all__ = [
    "NoticeLine",
    "NoticeTotals",
    "PlatformRecordResult",
    "PlatformRefundRequest",
    "ProcessOutcome",
    "RecordResult",
    "RefundNoticesNotEnabled",
    "RefundSkuLine",
    "RequestMismatch",
    "bag_mark_canceled",
    "bag_refunded_parts",
    "bag_update_refund_state",
    "notice_totals",
    "reference_problem",
    "refund_cancel",
    "refund_error_resolve",
    "refund_for_request",
    "refund_mark_external",
    "refund_notice_record",
    "refund_process",
    "refund_record",
    "refund_record_platform",
    "refund_retry",
    "refund_sweep_stuck",
    "refunds_stuck_queryset",
]
