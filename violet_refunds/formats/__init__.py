"""Date formats of every page (FORMAT_MODULE_PATH): each date and time says its time zone, so an
operator never has to guess whether 05:27 is UTC or their own clock. CSV exports do not use these:
they stay UTC ISO 8601 (refunds.admin.export)."""
