"""The operators' admin of the refund app (autodiscovered as `refunds.admin`).

Importing the package registers the model admins:
- channels: apps (channels) and their users;
- orders: orders, bags and their lines (read-only mirrors);
- refunds: the refund list and page (the operators' home), with history for lines, errors, events;
- findings: differences with Stripe for an operator (nightly reconciliation, Stripe's events);
- forwarding: channel refunds' trips to the merchants' platforms (read-only);
and the pages beyond Django's own live next to them: operations (repairs behind a confirmation page),
notice (the operator's SFCC refund notice), export (CSV), triage (failed/stuck lists), index (the
triage counts and chart on the admin index). Reads are in selectors, forms in forms; shared building
blocks (read-only admins, money columns, status badges, can_operate) in violet_refunds.admin.
"""

from refunds.admin import channels, findings, forwarding, history, orders, refunds

__all__ = ["channels", "findings", "forwarding", "history", "orders", "refunds"]
