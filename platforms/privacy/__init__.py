"""Personal data's lifecycle in the platforms layer (issue #22; docs/privacy.md is the inventory).

- `ingest`: least data at the door: headers from a per-platform allow-list, capability fields
  stripped from the body, a body hash, and `event_minimize` for events that carry no refund signal.
- `disconnect`: the one disconnect service (uninstall webhooks, the portal button, the admin action),
  marking a connection INVALID when its platform answers 401, and reconnecting with fresh secrets.
- `retention`: what is redacted or deleted after how long (settings RETENTION_*), daily.
- `erasure`: a shopper's personal data redacted everywhere we hold it (money records stay).
- `compliance`: Shopify's mandatory compliance webhooks recorded as PrivacyRequest rows and done.
"""
