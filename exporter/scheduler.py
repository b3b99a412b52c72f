"""Runs each source on its own interval, with a deadline, backoff, and its own failure state.

One APScheduler job per source calls :meth:`SourceRunner.run_once`. The poll itself runs in a
fresh daemon thread the job waits on for at most ``timeout`` seconds: Python cannot kill a
thread, so a hung poll is abandoned (the source is marked down with reason ``timeout``) and no
new poll of that source starts until the hung one returns. Other sources and scrapes never wait.

After a failure the next attempt waits ``interval * 2**(failures-1)`` seconds, capped at
``MAX_BACKOFF_SECONDS``. A source's last good snapshot keeps being served until it is older than
``STALE_INTERVALS`` intervals, then it is dropped, so a brief hiccup does not punch holes in
rate() while a dead source does not serve stale numbers forever.
"""

from __future__ import annotations

import datetime
import logging
import platform
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from exporter import __version__
from exporter.snapshot import Family, Snapshot, SnapshotStore
from exporter.sources.base import PollError, ReprobeRequired, Source

log = logging.getLogger(__name__)

STALE_INTERVALS = 3
MAX_BACKOFF_SECONDS = 300.0


@dataclass
class _Outcome:
    families: list[Family] | None = None
    snapshot: Snapshot | None = None
    error: BaseException | None = None


class SourceRunner:
    """One source's poll loop state. ``run_once`` is safe to call from any single thread."""

    def __init__(self, source: Source, store: SnapshotStore, on_publish: Callable[[], Snapshot],
                 wall_clock: Callable[[], float] = time.time, clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.name = source.name
        self.interval = float(source.config.interval)
        self.timeout = float(source.config.timeout)
        self._store = store
        self._self_metrics = on_publish
        self._wall = wall_clock
        self._clock = clock
        self._probed = False
        self._inflight: threading.Thread | None = None
        self._next_attempt = 0.0
        self._started = 0.0
        self._snapshot: Snapshot | None = None
        self.up = False
        self.completed_once = False
        self.consecutive_failures = 0
        self.last_success: float | None = None  # wall time
        self.last_success_mono: float | None = None
        self.last_duration: float | None = None
        self.last_error = ""
        self.errors: Counter[str] = Counter()

    # -- state read by the server and self-metrics -----------------------------------------
    def stale(self) -> bool:
        if self.last_success_mono is None:
            return False
        return self._clock() - self.last_success_mono > STALE_INTERVALS * self.interval

    def state(self) -> str:
        if not self.completed_once and self.consecutive_failures == 0:
            return "starting"
        if self.up:
            return "up"
        return "stale" if self.stale() else "down"

    # -- one scheduled run -----------------------------------------------------------------
    def run_once(self) -> None:
        now = self._clock()
        if self._inflight is not None and self._inflight.is_alive():
            self._fail("timeout", f"previous poll still running after {now - self._started:.1f}s")
        elif now >= self._next_attempt:
            self._attempt()
        self._publish()

    def _attempt(self) -> None:
        outcome = _Outcome()
        self._started = self._clock()
        thread = threading.Thread(target=self._work, args=(outcome,), name=f"poll-{self.name}", daemon=True)
        self._inflight = thread
        thread.start()
        thread.join(self.timeout)
        duration = self._clock() - self._started
        if thread.is_alive():
            self._fail("timeout", f"poll did not finish within {self.timeout:g}s")
            return
        self._inflight = None
        self.last_duration = duration
        if outcome.error is not None:
            err = outcome.error
            reason = err.reason if isinstance(err, PollError) else ("probe" if not self._probed else "error")
            if isinstance(err, ReprobeRequired):
                self._probed = False
            self._fail(reason, f"{type(err).__name__}: {err}")
            return
        self.up = True
        self.completed_once = True
        self.consecutive_failures = 0
        self.last_error = ""
        self.last_success = self._wall()
        self.last_success_mono = self._clock()
        self._snapshot = outcome.snapshot

    def _work(self, outcome: _Outcome) -> None:
        try:
            if not self._probed:
                self.source.close()
                self.source.probe()
                self._probed = True
            families = self.source.poll()
            outcome.snapshot = Snapshot.of(self.name, families)
        except BaseException as exc:  # noqa: BLE001 - a source must never take the daemon down
            outcome.error = exc

    def _fail(self, reason: str, message: str) -> None:
        if self.up or self.last_error != message:
            log.warning("source %s failed (%s): %s", self.name, reason, message)
        self.up = False
        self.consecutive_failures += 1
        self.errors[reason] += 1
        self.last_error = message
        backoff = min(self.interval * 2 ** (self.consecutive_failures - 1), max(MAX_BACKOFF_SECONDS, self.interval))
        self._next_attempt = self._clock() + backoff

    def _publish(self) -> None:
        if self._snapshot is not None and not self.up and self.stale():
            self._snapshot = None
        self._store.publish(self.name, self._snapshot, self._self_metrics)


class Scheduler:
    """Owns the runners, the APScheduler instance, and the self-metrics they publish."""

    def __init__(self, sources: list[Source], store: SnapshotStore, mode: str,
                 labels: Callable[[], list[Family]] = lambda: []) -> None:
        self.store = store
        self.mode = mode
        self._extra = labels
        self.runners = {s.name: SourceRunner(s, store, self.self_snapshot) for s in sources}
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=max(2, len(self.runners) + 1))},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        logging.getLogger("apscheduler").setLevel(logging.ERROR)

    def start(self) -> None:
        self.store.publish("exporter", None, self.self_snapshot)
        for runner in self.runners.values():
            self._scheduler.add_job(runner.run_once, "interval", seconds=runner.interval, id=runner.name,
                                    next_run_time=_now())
        self._scheduler.start()

    def shutdown(self) -> None:
        self._scheduler.shutdown(wait=False)
        for runner in self.runners.values():
            try:
                runner.source.close()
            except Exception:  # noqa: BLE001 - shutting down regardless
                log.exception("closing source %s", runner.name)

    def ready(self) -> tuple[bool, list[str]]:
        """Ready once every source completed a poll and none is older than 3 intervals."""
        reasons = []
        for runner in self.runners.values():
            if not runner.completed_once:
                reasons.append(f"{runner.name}: no completed poll yet" +
                               (f" (last error: {runner.last_error})" if runner.last_error else ""))
            elif runner.stale():
                age = time.monotonic() - (runner.last_success_mono or 0.0)
                reasons.append(f"{runner.name}: data is {age:.0f}s old (> {STALE_INTERVALS} x {runner.interval:g}s)"
                               + (f"; last error: {runner.last_error}" if runner.last_error else ""))
        return not reasons, reasons

    def self_snapshot(self) -> Snapshot:
        up = Family("blackwell_exporter_source_up")
        duration = Family("blackwell_exporter_source_poll_duration_seconds")
        last = Family("blackwell_exporter_source_last_success_timestamp_seconds")
        errors = Family("blackwell_exporter_source_errors_total")
        interval = Family("blackwell_exporter_source_interval_seconds")
        for name, runner in sorted(self.runners.items()):
            up.add((name,), int(runner.up))
            if runner.last_duration is not None:
                duration.add((name,), round(runner.last_duration, 6))
            last.add((name,), round(runner.last_success or 0.0, 3))
            interval.add((name,), runner.interval)
            for reason in sorted(runner.errors):
                errors.add((name, reason), runner.errors[reason])
        build = Family("blackwell_exporter_build_info").add((__version__, self.mode, platform.python_version()), 1)
        return Snapshot.of("exporter", [build, up, duration, last, errors, interval, *self._extra()])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
