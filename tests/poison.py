"""A poison event for the tests of the poison guard (violet_refunds.retrying): its processing kills the
worker in every run, as seen from inside the run."""


class WorkerKilled(BaseException):
    """What the run looks like from inside when the worker dies in it: nothing after it runs (not
    even an `except Exception`), so no outcome is written."""


class Poison:
    """While `active`, every processing run dies inside; `runs` counts those runs."""

    def __init__(self):
        self.active = True
        self.runs = 0


def poison_processing(monkeypatch, module, name: str) -> Poison:
    """Replace `module.name` (a step every processing run goes through) by one that dies while the
    returned Poison is active, and runs the original once it is not."""
    original = getattr(module, name)
    poison = Poison()

    def dying(event, *args, **kwargs):
        if not poison.active:
            return original(event, *args, **kwargs)
        poison.runs += 1
        raise WorkerKilled(f"worker killed processing event {event.pk}")

    monkeypatch.setattr(module, name, dying)
    return poison


def assert_failed_as_poison(event, *, died: int, limit: int) -> None:
    """The event's outcome says its last `died` runs died without one and the limit stopped it; the
    count is clear again (the FAILED outcome is an outcome)."""
    assert f"Processing started {died} times without ever recording an outcome" in event.outcome
    assert f"INBOUND_EVENT_MAX_CLAIMS_WITHOUT_OUTCOME={limit}" in event.outcome and "replay the event" in event.outcome
    assert event.error == f"{died} processing runs without an outcome (worker died)"
    assert event.claims_without_outcome == 0
