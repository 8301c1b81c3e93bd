"""tests/parallel.py: results in order, and loud failures (a call that raised, a thread that hangs)."""

import threading
import time

import pytest

from tests.parallel import run_in_parallel


def test_results_come_back_in_call_order_after_all_started_together():
    started = []

    def call(n):
        def work():
            started.append(n)
            return n * 10

        return work

    assert run_in_parallel(call(1), call(2), call(3)) == [10, 20, 30]
    assert sorted(started) == [1, 2, 3]


def test_a_call_that_raises_fails_the_test_with_its_traceback():
    def boom():
        raise ValueError("the reason")

    with pytest.raises(pytest.fail.Exception, match=r"(?s)1 of 2 calls raised.*boom.*ValueError: the reason"):
        run_in_parallel(lambda: 1, boom)


def test_errors_as_results_hands_the_exceptions_back():
    error = KeyError("lost the race")

    def lose():
        raise error

    assert run_in_parallel(lambda: "won", lose, errors_as_results=True) == ["won", error]


def test_a_thread_that_does_not_finish_fails_the_test_naming_the_call():
    release = threading.Event()

    def hangs():
        release.wait(timeout=5)

    try:
        with pytest.raises(pytest.fail.Exception, match=r"call #1 \(.*hangs\) still running after 0.2 s"):
            run_in_parallel(lambda: None, hangs, join_timeout=0.2)
    finally:
        release.set()


def test_a_broken_start_barrier_fails_the_test():
    # A thread that is not scheduled in time is simulated with a zero barrier timeout and a slow peer.
    def late():
        time.sleep(0.2)

    with pytest.raises(pytest.fail.Exception, match="start barrier broke"):
        run_in_parallel(late, late, barrier_timeout=0)
