"""Advisory-lock keys: one per (kind, id), never shared by two ids (no folding to 32 bits)."""

import threading

import pytest
from django.db import connection

from violet_refunds.locks import _key, try_exclusive


def test_ids_two_to_the_32_apart_and_kinds_get_different_keys():
    assert _key("refund", 1) != _key("refund", 1 + 2**32)
    assert _key("refund", 7) != _key("bag", 7)
    for kind in ("refund", "bag"):
        assert 0 < _key(kind, 2**48 - 1) < 2**63  # a signed bigint, as pg_try_advisory_lock takes


@pytest.mark.parametrize("object_id", [0, -1, 2**48])
def test_an_id_that_does_not_fit_is_refused_not_folded(object_id):
    with pytest.raises(ValueError, match="does not fit"):
        _key("refund", object_id)


def _held_elsewhere(kind: str, object_id: int) -> bool:
    answer: list[bool] = []

    def probe():
        try:
            with try_exclusive(kind, object_id) as acquired:
                answer.append(acquired)
        finally:
            connection.close()

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(timeout=30)
    assert answer, "the probe thread did not finish"
    return not answer[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_holding_one_refund_does_not_lock_another_whose_id_differs_by_two_to_the_32():
    with try_exclusive("refund", 5) as acquired:
        assert acquired
        assert _held_elsewhere("refund", 5)
        assert not _held_elsewhere("refund", 5 + 2**32)
        assert not _held_elsewhere("bag", 5)
    assert not _held_elsewhere("refund", 5)


@pytest.mark.parametrize("vendor", ["postgresql", "sqlite"])
@pytest.mark.django_db(transaction=True)
def test_a_nested_attempt_by_the_same_thread_is_refused_on_every_database(monkeypatch, vendor):
    """The sandbox delivers Stripe events in-process while the engine holds the refund: the event's
    engine pass must not re-enter the one running (SQLite has no advisory locks to refuse it)."""
    if vendor == "postgresql" and connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    monkeypatch.setattr(connection, "vendor", vendor)
    with try_exclusive("refund", 9) as outer:
        assert outer
        with try_exclusive("refund", 9) as nested:
            assert not nested
        with try_exclusive("refund", 10) as other:
            assert other
    with try_exclusive("refund", 9) as again:
        assert again
