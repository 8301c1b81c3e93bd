"""Run calls at the same moment, each thread with its own database connection (PostgreSQL tests).

The one thread/barrier runner of the test suite. It fails the test loudly rather than letting it go on
with half the work done: a thread still running after `join_timeout`, and a barrier that broke (a
thread did not arrive within `barrier_timeout`), are test failures naming the call.
"""

import threading
import traceback

import pytest
from django.db import connection


def _name(index: int, call) -> str:
    return f"call #{index} ({getattr(call, '__qualname__', None) or repr(call)})"


def run_in_parallel(*calls, errors_as_results=False, barrier_timeout=10.0, join_timeout=60.0) -> list:
    """Start every call together (a barrier), wait for all of them, and return their results in order.

    A call that raises fails the test with every traceback, unless `errors_as_results`: then its
    exception is its result (for races where some callers are meant to lose). Each thread closes its
    database connection when its call is done.
    """
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    raised: dict[int, BaseException] = {}
    barrier_broken: list[int] = []

    def run(index, call):
        try:
            try:
                barrier.wait(timeout=barrier_timeout)
            except threading.BrokenBarrierError:
                barrier_broken.append(index)
                return
            results[index] = call()
        except BaseException as exc:  # pytest.fail() and SimulatedCrash included: reported below
            raised[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call), daemon=True) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=join_timeout)

    still_running = [_name(i, calls[i]) for i, thread in enumerate(threads) if thread.is_alive()]
    if still_running:
        pytest.fail(f"run_in_parallel: {', '.join(still_running)} still running after {join_timeout} s")
    if barrier_broken:
        waiting = ", ".join(_name(i, calls[i]) for i in sorted(barrier_broken))
        pytest.fail(f"run_in_parallel: start barrier broken (not all arrived within {barrier_timeout} s): {waiting}")
    if errors_as_results:
        for index, exc in raised.items():
            results[index] = exc
    elif raised:
        details = "\n".join(
            f"{_name(i, calls[i])} raised:\n{''.join(traceback.format_exception(raised[i]))}" for i in sorted(raised)
        )
        pytest.fail(f"run_in_parallel: {len(raised)} of {len(calls)} calls raised\n{details}")
    return results
