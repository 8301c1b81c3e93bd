"""Chaos while the load runs, bounded in time, and the restart policy that survives it.

- `FaultInjector`: keeps ~`ratio` of the Stripe calls made since the start faulted. Every tick it
  counts the calls the sandbox recorded (SandboxRequest) and tops the switchboard up
  (`stripe_sandbox.faults.inject`) with a mix of kinds at the paths the gateway uses, so the workers
  take them. `clear()` zeroes every remaining unit when chaos stops.
- `Supervisor`: a restart policy. Any worker node, beat, gunicorn or redis that is not running is
  started again; an exit the harness did not cause is recorded as a death "on its own".
- `Chaos`: kill -9 of a worker child or a whole worker node every 5-10 s; Redis killed and restarted
  on the same port; every backend of the soak database terminated, at planned moments.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from django.db import close_old_connections, connection

# (kind, method, path) with weights: transient faults anywhere the engine calls, business refusals
# where Stripe would raise them. Paths are globs over the sandbox's URL paths.
REVERSALS = "/v1/transfers/*/reversals"
FAULT_MIX = [
    (("connection_error", "POST", REVERSALS), 6),
    (("connection_error", "POST", "/v1/refunds"), 6),
    (("timeout", "POST", REVERSALS), 4),
    (("timeout", "POST", "/v1/refunds"), 4),
    (("http_429", "", REVERSALS), 4),
    (("http_429", "", "/v1/refunds*"), 4),
    (("http_503", "", REVERSALS), 4),
    (("http_503", "", "/v1/refunds*"), 4),
    (("http_409", "POST", REVERSALS), 3),
    (("http_409", "POST", "/v1/refunds"), 3),
    (("http_500", "POST", REVERSALS), 3),
    (("http_500", "POST", "/v1/refunds"), 3),
    (("response_lost", "POST", REVERSALS), 5),
    (("response_lost", "POST", "/v1/refunds"), 5),
    (("stall", "POST", REVERSALS), 2),
    (("stall", "POST", "/v1/refunds"), 2),
    (("balance_insufficient", "POST", REVERSALS), 2),
    (("charge_disputed", "POST", "/v1/refunds"), 1),
    (("refund_fails_async", "POST", "/v1/refunds"), 2),
]


def _db_retry(call, attempts: int = 5):
    """Run an ORM call; the soak itself terminates database backends, so reconnect and retry."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception:
            connection.close()
            close_old_connections()
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    return None


@dataclass
class FaultInjector:
    ratio: float
    rng: random.Random
    log: object
    tick: float = 0.5
    start_request_id: int = 0
    injected: dict = field(default_factory=dict)  # kind -> units injected
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        from stripe_sandbox.models import SandboxRequest

        newest = _db_retry(lambda: SandboxRequest.objects.order_by("-pk").values_list("pk", flat=True).first())
        self.start_request_id = newest or 0
        self._thread = threading.Thread(target=self._run, name="fault-injector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        from stripe_sandbox.faults import inject
        from stripe_sandbox.models import SandboxFault, SandboxRequest

        kinds = [item for item, _ in FAULT_MIX]
        weights = [weight for _, weight in FAULT_MIX]
        try:
            while not self._stop.wait(self.tick):
                try:
                    calls = SandboxRequest.objects.filter(pk__gt=self.start_request_id).count()
                    outstanding = sum(SandboxFault.objects.filter(remaining__gt=0).values_list("remaining", flat=True))
                    owed = int(self.ratio * calls) - sum(self.injected.values())
                    # Keep a small stock so the next calls meet faults too, without bursts.
                    stock = max(2, int(self.ratio * 10))
                    to_add = max(0, min(owed + stock - outstanding, 3 * stock))
                    for _ in range(to_add):
                        kind, method, path = self.rng.choices(kinds, weights)[0]
                        inject(kind, times=1, path=path, method=method or None, stall_seconds=1.5)
                        self.injected[kind] = self.injected.get(kind, 0) + 1
                except Exception as exc:  # our own backend termination, most likely
                    self.log(f"fault injector: {type(exc).__name__}: {str(exc)[:120]}")
                    connection.close()
        finally:
            connection.close()

    @staticmethod
    def clear() -> int:
        from stripe_sandbox.models import SandboxFault

        return _db_retry(lambda: SandboxFault.objects.filter(remaining__gt=0).update(remaining=0))

    def stats(self) -> dict:
        """Stripe calls since chaos began, and how many a fault struck, by kind (sandbox's own log)."""
        from django.db.models import Count

        from stripe_sandbox.models import SandboxRequest

        rows = _db_retry(
            lambda: list(
                SandboxRequest.objects.filter(pk__gt=self.start_request_id).values("fault").annotate(n=Count("id"))
            )
        )
        total = sum(row["n"] for row in rows)
        by_kind = {row["fault"]: row["n"] for row in rows if row["fault"]}
        faulted = sum(by_kind.values())
        return {
            "stripe_calls": total,
            "faulted_calls": faulted,
            "faulted_percent": round(100 * faulted / total, 1) if total else 0.0,
            "faulted_by_kind": dict(sorted(by_kind.items())),
            "units_injected": sum(self.injected.values()),
        }


class Supervisor:
    """The restart policy: whatever is not running is started again (every `interval` s)."""

    def __init__(self, services: list, log, interval: float = 1.0):
        self.services = services
        self.log = log
        self.interval = interval
        self.lock = threading.RLock()  # held by whoever kills/restarts a service on purpose
        self.self_deaths: list[dict] = []
        self.restarts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for service in self.services:
                with self.lock:
                    if self._stop.is_set() or service.alive():
                        continue
                    code = service.process.returncode if service.process else None
                    if not service.killed_by_us:
                        tail = service.log_tail(15)
                        self.self_deaths.append(
                            {"service": service.name, "returncode": code, "at": time.time(), "log_tail": tail}
                        )
                        self.log(f"{service.name} died on its own (exit {code}); restarting")
                    try:
                        service.start(ready_timeout=90)
                        self.restarts[service.name] = self.restarts.get(service.name, 0) + 1
                    except Exception as exc:
                        self.log(f"restart of {service.name} failed: {exc}")


@dataclass
class ChaosEvent:
    at: float  # seconds since chaos began
    kind: str
    detail: str


class Chaos:
    """Process and infrastructure faults over `seconds`; every action is logged as a ChaosEvent."""

    def __init__(
        self,
        *,
        workers: list,
        redis,
        database,
        supervisor: Supervisor,
        rng: random.Random,
        seconds: float,
        redis_kills: int,
        db_kills: int,
        log,
    ):
        self.workers = workers
        self.redis = redis
        self.database = database
        self.supervisor = supervisor
        self.rng = rng
        self.seconds = seconds
        self.log = log
        self.events: list[ChaosEvent] = []
        # Planned moments (fractions of the window), spread so that each outage is met by load.
        self.plan = sorted(
            [(self.seconds * f, "redis") for f in (0.3, 0.7)[:redis_kills]]
            + [(self.seconds * f, "database") for f in (0.5, 0.85)[:db_kills]]
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=60)

    def _event(self, kind: str, detail: str) -> None:
        event = ChaosEvent(round(time.monotonic() - self.started, 1), kind, detail)
        self.events.append(event)
        self.log(f"chaos t+{event.at:>6.1f}s {kind}: {detail}")

    def _run(self) -> None:
        next_kill = self.rng.uniform(5, 10)
        plan = list(self.plan)
        while not self._stop.wait(0.2):
            elapsed = time.monotonic() - self.started
            if elapsed >= self.seconds:
                return
            if plan and elapsed >= plan[0][0]:
                _, what = plan.pop(0)
                self._redis_kill() if what == "redis" else self._db_kill()
            if elapsed >= next_kill:
                self._worker_kill()
                next_kill = elapsed + self.rng.uniform(5, 10)

    def _worker_kill(self) -> None:
        node = self.rng.choice(self.workers)
        with self.supervisor.lock:
            if not node.alive():
                return
            if self.rng.random() < 0.7:
                victim = node.kill_child(self.rng)
                if victim:
                    self._event("kill -9 worker child", f"{node.name} child pid {victim}")
                return
            node.kill_group()
            self._event("kill -9 worker node", f"{node.name} (pid {node.pid} and its children)")
        # The supervisor restarts it within about a second, as a restart policy would.

    def _redis_kill(self) -> None:
        with self.supervisor.lock:
            self.redis.kill_group()
            self._event("kill -9 redis", f"pid {self.redis.pid}; restarted on the same port in 3 s")
            time.sleep(3)
            self.redis.start()

    def _db_kill(self) -> None:
        try:
            count = self.database.terminate_backends()
            self._event("terminate database backends", f"{count} backends of {self.database.name}")
        except Exception as exc:
            self._event("terminate database backends", f"failed: {exc}")
