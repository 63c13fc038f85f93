"""The delivery worker: routes what inline routing left behind, purges, expires.

Run it as ``esb worker`` on any number of nodes (PostgreSQL: each step claims rows with
``FOR UPDATE SKIP LOCKED`` and does its work in that transaction, so a killed worker's rows
are simply unlocked by its rolled-back transaction), or in-process inside ``esb serve``
(the embedded default: one SQLite writer at a time).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from esb.errors import EsbError
from esb.pipeline.exchange import Exchange

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerStep:
    """A further kind of work for the worker's pass: ``run(limit)`` returns how much it did."""

    name: str
    run: Callable[[int], int]
    urgent: bool = False  # also run as soon as the worker is woken (a notification arrived)


@dataclass(frozen=True)
class WorkReport:
    routed: int = 0
    purged: int = 0
    expired: int = 0
    spaces_expired: int = 0
    others: Mapping[str, int] = field(default_factory=dict)  # WorkerStep name -> count

    @property
    def total(self) -> int:
        return self.routed + self.purged + self.expired + self.spaces_expired + sum(self.others.values())

    def describe(self) -> str:
        parts = [
            f"{self.routed} routed",
            f"{self.purged} purged",
            f"{self.expired} expired",
            f"{self.spaces_expired} upload spaces expired",
            *(f"{count} {name}" for name, count in self.others.items()),
        ]
        return ", ".join(parts)


class DeliveryWorker:
    def __init__(
        self,
        exchange: Exchange,
        *,
        batch: int = 50,
        steps: Sequence[WorkerStep] = (),
        wake: threading.Event | None = None,
    ) -> None:
        self.exchange = exchange
        self.batch = batch
        self.steps = tuple(steps)
        self.wake = wake

    def run_urgent(self) -> int:
        """Only the urgent steps (callback pushes): what a wake-up between passes runs."""
        return sum(self._run_step(step) for step in self.steps if step.urgent)

    def run_once(self) -> WorkReport:
        """One pass over every kind of work; each kind fails on its own, the others still run."""
        routed = self._step("route", lambda: self.exchange.route(limit=self.batch))
        expired = self._step("expire", lambda: self.exchange.expire(limit=self.batch))
        purged = self._step("purge", lambda: self.exchange.purge(limit=self.batch))
        spaces = self._step("spaces", lambda: self.exchange.expire_spaces(limit=self.batch))
        others = {step.name: self._run_step(step) for step in self.steps}
        return WorkReport(routed, purged, expired, spaces, others)

    def run(self, stop: threading.Event, *, interval: float) -> None:
        """Loop until ``stop`` is set; a pass that found work is followed at once by another."""
        while not stop.is_set():
            report = self.run_once()
            if report.total:
                log.info("worker: %s", report.describe())
                continue
            self._idle(stop, interval)

    def _idle(self, stop: threading.Event, interval: float) -> None:
        """Wait ``interval``; each wake-up meanwhile runs the urgent steps at once."""
        if self.wake is None:
            stop.wait(interval)
            return
        deadline = time.monotonic() + interval
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.wake.wait(left):
                self.wake.clear()
                while self.run_urgent() and not stop.is_set():
                    pass

    def start_thread(self, *, interval: float) -> threading.Event:
        """Run in a daemon thread (``esb serve``'s in-process worker); set the event to stop it."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self.run,
            args=(stop,),
            kwargs={"interval": interval},
            daemon=True,
            name="esb-delivery-worker",
        )
        thread.start()
        return stop

    def _run_step(self, step: WorkerStep) -> int:
        return self._step(step.name, lambda: step.run(self.batch))

    @staticmethod
    def _step(name: str, work: Callable[[], int]) -> int:
        try:
            return work()
        except EsbError as exc:
            log.warning("worker %s step failed: %s", name, exc)
        except Exception:
            log.exception("worker %s step failed", name)
        return 0
