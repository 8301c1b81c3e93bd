"""English formats: Django's, with the time zone on every date and time ("2026-12-02 05:27 UTC").
`T` is the abbreviation of the zone the value is shown in (settings.TIME_ZONE, or the zone a page
activates)."""

DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
TIME_FORMAT = "H:i T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
