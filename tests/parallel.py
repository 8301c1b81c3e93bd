"""Run calls at the same moment, each thread with its own database connection (PostgreSQL tests)."""

import threading

from django.db import connection


def run_in_parallel(*calls):
    """Start every call together (a barrier), return their results in order; a call that raised
    fails the test with the exceptions."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list = []

    def run(index, call):
        try:
            barrier.wait(timeout=10)
            results[index] = call()
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results
