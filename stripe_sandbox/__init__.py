"""A stateful Stripe emulator: the stripe SDK's HTTP transport when no STRIPE_API_KEY is configured.

`transport.SandboxHTTPClient` answers the SDK; `ledger` is what tests and demos read and inject
faults through. State lives in this app's tables, so every process sees the same Stripe world.
"""
