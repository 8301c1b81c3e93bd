"""Outbound webhooks: every write lives in this package (docs/violet-api.md, Outbound webhooks,
docs/reliability.md).

- `endpoints`: registration (URL validation), update, resume, disable, delete.
- `outbox`: events written in the transaction of the change (the refund domain, through
  refunds.announcements, decides which and renders their body), and resends.
- `delivery`: the relay, one attempt of one delivery, retries, pausing and disabling endpoints.

Public names are re-exported here. Notifications sit below the refund domain: nothing in this
package imports refunds. To change a policy constant in a test, patch the module that uses it
(`notifications.services.delivery.MAX_ATTEMPTS`), not this package.
"""

from notifications.services.delivery import (
    DELIVERY_TIMEOUT_SECONDS,
    FAILURE_WINDOW,
    FAILURES_BEFORE_PAUSE,
    MAX_ATTEMPTS,
    PAUSE_DURATIONS,
    RELAY_BATCH_SIZE,
    RELAY_REPUBLISH_AFTER,
    RETRY_BASE_SECONDS,
    RETRY_JITTER,
    STUCK_AFTER,
    AttemptOutcome,
    RelayResult,
    deliveries_publish,
    deliveries_relay,
    deliveries_relay_kick,
    delivery_attempt,
    delivery_headers,
    delivery_retry_delay,
    delivery_timeout_seconds,
    endpoint_disable_locked,
)
from notifications.services.endpoints import (
    MAX_ENDPOINTS_PER_APP,
    RegisteredEndpoint,
    event_types_validate,
    webhook_endpoint_delete,
    webhook_endpoint_disable,
    webhook_endpoint_register,
    webhook_endpoint_resume,
    webhook_endpoint_update,
    webhook_url_validate,
)
from notifications.services.outbox import (
    OutboxEvent,
    ResendResult,
    event_resend,
    events_write,
    payload_json,
    webhook_test_event_send,
)

__all__ = [
    "DELIVERY_TIMEOUT_SECONDS",
    "FAILURES_BEFORE_PAUSE",
    "FAILURE_WINDOW",
    "MAX_ATTEMPTS",
    "MAX_ENDPOINTS_PER_APP",
    "PAUSE_DURATIONS",
    "RELAY_BATCH_SIZE",
    "RELAY_REPUBLISH_AFTER",
    "RETRY_BASE_SECONDS",
    "RETRY_JITTER",
    "STUCK_AFTER",
    "AttemptOutcome",
    "OutboxEvent",
    "RegisteredEndpoint",
    "RelayResult",
    "ResendResult",
    "deliveries_publish",
    "deliveries_relay",
    "deliveries_relay_kick",
    "delivery_attempt",
    "delivery_headers",
    "delivery_retry_delay",
    "delivery_timeout_seconds",
    "endpoint_disable_locked",
    "event_resend",
    "event_types_validate",
    "events_write",
    "payload_json",
    "webhook_endpoint_delete",
    "webhook_endpoint_disable",
    "webhook_endpoint_register",
    "webhook_endpoint_resume",
    "webhook_endpoint_update",
    "webhook_test_event_send",
    "webhook_url_validate",
]
