"""Runs each source on its own interval, with a deadline, backoff, and its own failure state.

One APScheduler job per source calls :meth:`SourceRunner.run_once`. The poll itself runs in a
fresh daemon thread the job waits on for at most ``timeout`` seconds: Python cannot kill a
thread, so a hung poll is abandoned (the source is marked down with reason ``timeout``), its
late result is discarded, and no new poll of that source starts until the hung one returns
(each run meanwhile counts reason ``busy``). Other sources and scrapes never wait.

After a failure the next attempt waits ``interval * 2**(failures-1)`` seconds, capped at
``MAX_BACKOFF_SECONDS``; attempts ride the job's interval grid, so a delay is rounded up to the
next run. A timeout or an unexpected exception (a bug, a crash, even ``SystemExit``) restarts
the source: the next attempt calls ``close()`` and ``probe()`` before ``poll()``. A
:class:`PollError` is an upstream failure the source understands, so only ``ReprobeRequired``
restarts it.

A source's last good snapshot keeps being served until it is older than ``STALE_INTERVALS``
intervals, then it is dropped, so a brief hiccup does not punch holes in rate() while a dead
source does not serve stale numbers forever. A :class:`PartialPollError` is a failure that still
carries families (``serving_up 0`` for an endpoint that is down): they replace the snapshot at
once, while the source counts as down.
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
from exporter.backoff import backoff_delay
from exporter.foundation import STALE_INTERVALS
from exporter.snapshot import Family, Snapshot, SnapshotStore
from exporter.sources.base import PartialPollError, PollError, ReprobeRequired, Source

log = logging.getLogger(__name__)

SHUTDOWN_CLOSE_SECONDS = 2.0


@dataclass
class _Outcome:
    probed: bool = False
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
        self._wake = threading.Event()  # set when the in-flight poll ends, or on shutdown
        self._stopping = False
        self._inflight: threading.Thread | None = None
        self._next_attempt = 0.0
        self._started = 0.0
        self._snapshot: Snapshot | None = None
        self._snapshot_mono = 0.0
        self.up = False
        self.completed_once = False
        self.consecutive_failures = 0
        self.last_success: float | None = None  # wall time
        self.last_success_mono: float | None = None
        self.last_duration: float | None = None
        self.last_error = ""
        self.errors: Counter[str] = Counter()

    # -- state read by the server and self-metrics -----------------------------------------
    def age(self) -> float:
        """Seconds since the last successful poll (0 before the first one)."""
        return 0.0 if self.last_success_mono is None else self._clock() - self.last_success_mono

    def stale(self) -> bool:
        return self.last_success_mono is not None and self.age() > STALE_INTERVALS * self.interval

    def state(self) -> str:
        if not self.completed_once and self.consecutive_failures == 0:
            return "starting"
        if self.up:
            return "up"
        return "stale" if self.stale() else "down"

    # -- one scheduled run -----------------------------------------------------------------
    def run_once(self) -> None:
        """One scheduler tick: poll if due, then publish. Never raises, never waits past ``timeout``."""
        try:
            if self._stopping:
                return
            now = self._clock()
            if self._inflight is not None and self._inflight.is_alive():
                self._busy(now - self._started)
            elif now >= self._next_attempt:
                self._attempt()
            self._publish()
        except Exception:  # noqa: BLE001 - the job must keep running; a bug here is logged, not fatal
            log.exception("scheduler run of source %s failed", self.name)

    def stop(self) -> None:
        """Stop polling and release a ``run_once`` that is waiting on a poll."""
        self._stopping = True
        self._wake.set()

    def close_after_poll(self) -> None:
        """Close the source once no poll of it runs (after ``stop``): a retired source must not be
        closed under a poll that is still inside its upstream library."""
        inflight = self._inflight
        if inflight is not None:
            inflight.join()
        try:
            self.source.close()
        except Exception:  # noqa: BLE001 - retiring regardless
            log.exception("closing retired source %s", self.name)

    def _attempt(self) -> None:
        outcome = _Outcome()
        self._wake.clear()
        if self._stopping:
            return
        self._started = self._clock()
        thread = threading.Thread(target=self._work, args=(outcome, not self._probed), name=f"poll-{self.name}",
                                  daemon=True)
        self._inflight = thread
        thread.start()
        # The poll thread sets _wake as its last act; asking thread.is_alive() instead would race
        # with its exit and record a finished poll as a timeout.
        finished = self._wake.wait(self.timeout)
        duration = self._clock() - self._started
        if self._stopping:
            return
        if not finished:
            self._probed = False
            self._fail("timeout", f"poll did not finish within {self.timeout:g}s")
            return
        self._inflight = None
        self.last_duration = duration
        self._probed = outcome.probed
        if outcome.error is not None:
            err = outcome.error
            if outcome.snapshot is not None:  # a PartialPollError: publish what the source still knows
                self._snapshot, self._snapshot_mono = outcome.snapshot, self._clock()
            if isinstance(err, PollError):
                reason = err.reason
            else:
                reason = "error" if outcome.probed else "probe"
            if not isinstance(err, PollError) or isinstance(err, ReprobeRequired):
                self._probed = False
            # A partial result is news worth publishing every interval (serving_up 0 must stay
            # visible for its alert's `for:`), so it does not back off.
            self._fail(reason, f"{type(err).__name__}: {err}", backoff=outcome.snapshot is None)
            return
        self.up = True
        self.completed_once = True
        self.consecutive_failures = 0
        self.last_error = ""
        self.last_success = self._wall()
        self.last_success_mono = self._snapshot_mono = self._clock()
        self._snapshot = outcome.snapshot

    def _work(self, outcome: _Outcome, reprobe: bool) -> None:
        """The poll thread. It only writes ``outcome``: an abandoned poll must not touch runner state."""
        try:
            if reprobe:
                self.source.close()
                self.source.probe()
            outcome.probed = True
            families = self.source.poll()
            if not isinstance(families, (list, tuple)) or not all(isinstance(f, Family) for f in families):
                raise TypeError(f"poll() must return a list of Family, got {_describe(families)}")
            outcome.snapshot = Snapshot.of(self.name, families)
        except PartialPollError as exc:
            outcome.error = exc
            try:
                outcome.snapshot = Snapshot.of(self.name, exc.families)
            except Exception as bad:  # noqa: BLE001 - garbage in a partial result is an error like any other
                outcome.error = bad
        except BaseException as exc:  # noqa: BLE001 - a source must never take the daemon down
            outcome.error = exc
        finally:
            self._wake.set()

    def _busy(self, running_for: float) -> None:
        """A hung poll is still running: count it, but do not grow the backoff while we wait."""
        self.up = False
        self.errors["busy"] += 1
        self.last_error = f"poll still running after {running_for:.1f}s (timeout {self.timeout:g}s)"

    def _fail(self, reason: str, message: str, backoff: bool = True) -> None:
        if self.up or self.last_error != message:
            log.warning("source %s failed (%s): %s", self.name, reason, message)
        self.up = False
        self.consecutive_failures += 1
        self.errors[reason] += 1
        self.last_error = message
        delay = backoff_delay(self.interval, self.consecutive_failures) if backoff else self.interval
        self._next_attempt = self._clock() + delay

    def _publish(self) -> None:
        too_old = self._clock() - self._snapshot_mono > STALE_INTERVALS * self.interval
        if self._snapshot is not None and not self.up and too_old:
            self._snapshot = None
        self._store.publish(self.name, self._snapshot, self._self_metrics)


class Scheduler:
    """Owns the runners, the APScheduler instance, and the self-metrics they publish."""

    def __init__(self, sources: list[Source], store: SnapshotStore, mode: str,
                 labels: Callable[[], list[Family]] = lambda: [], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``clock`` (monotonic seconds) drives deadlines, backoff and staleness; a test passes a
        fake one and calls each runner's ``run_once`` itself instead of ``start``."""
        self.store = store
        self.mode = mode
        self._extra = labels
        self._clock = clock
        self._started = False
        self.runners = {s.name: self._runner(s) for s in sources}
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=max(2, len(self.runners) + 1))},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        logging.getLogger("apscheduler").setLevel(logging.ERROR)

    def start(self) -> None:
        self.store.publish("exporter", None, self.self_snapshot)
        for runner in self.runners.values():
            self._add_job(runner)
        self._scheduler.start()
        self._started = True

    def replace_sources(self, sources: list[Source]) -> None:
        """Run ``sources`` from now on (a config reload): a source object already running keeps its
        runner; one that is new gets a runner (carrying its name's error counts, so counters never
        go backwards) and polls at once; one no longer listed stops, its snapshot is dropped, and it
        is closed on a daemon thread once its in-flight poll has returned.
        """
        old = self.runners
        runners: dict[str, SourceRunner] = {}
        for source in sources:
            runner = old.get(source.name)
            if runner is None or runner.source is not source:
                fresh = self._runner(source)
                if runner is not None:
                    fresh.errors.update(runner.errors)
                runner = fresh
            runners[source.name] = runner
        retired = [runner for name, runner in old.items() if runners.get(name) is not runner]
        for runner in retired:
            runner.stop()
            if self._started:
                self._scheduler.remove_job(runner.name)
        self.runners = runners  # one assignment: self-metrics read either the old or the new set
        for runner in retired:
            if runner.name not in runners:
                self.store.publish(runner.name, None, self.self_snapshot)
            threading.Thread(target=runner.close_after_poll, name=f"close-{runner.name}", daemon=True).start()
        for runner in runners.values():
            if self._started and runner not in old.values():
                self._add_job(runner)

    def _runner(self, source: Source) -> SourceRunner:
        return SourceRunner(source, self.store, self.self_snapshot, clock=self._clock)

    def _add_job(self, runner: SourceRunner) -> None:
        self._scheduler.add_job(runner.run_once, "interval", seconds=runner.interval, id=runner.name,
                                next_run_time=_now())

    def shutdown(self) -> None:
        """Stop every job and close the sources, giving ``close()`` calls at most 2 s in all.

        A hung poll cannot be interrupted, and a ``close()`` may hang on the same upstream, so
        closing runs in a daemon thread the process does not wait for past the deadline.
        """
        for runner in self.runners.values():
            runner.stop()
        self._scheduler.shutdown(wait=False)

        def close_all() -> None:
            for runner in self.runners.values():
                try:
                    runner.source.close()
                except Exception:  # noqa: BLE001 - shutting down regardless
                    log.exception("closing source %s", runner.name)

        closer = threading.Thread(target=close_all, name="close-sources", daemon=True)
        closer.start()
        closer.join(SHUTDOWN_CLOSE_SECONDS)
        if closer.is_alive():
            log.warning("sources still closing after %gs; exiting without them", SHUTDOWN_CLOSE_SECONDS)

    def ready(self) -> tuple[bool, list[str]]:
        """Ready once every source completed a poll and none is older than 3 intervals."""
        reasons = []
        for runner in self.runners.values():
            if not runner.completed_once:
                reasons.append(f"{runner.name}: no completed poll yet" +
                               (f" (last error: {runner.last_error})" if runner.last_error else ""))
            elif runner.stale():
                age = runner.age()
                reasons.append(f"{runner.name}: data is {age:.0f}s old (> {STALE_INTERVALS} x {runner.interval:g}s)"
                               + (f"; last error: {runner.last_error}" if runner.last_error else ""))
            reasons.extend(f"{runner.name}: {why}" for why in runner.source.not_ready())
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
            for reason, count in sorted(dict(runner.errors).items()):  # a copy: runners count concurrently
                errors.add((name, reason), count)
        build = Family("blackwell_exporter_build_info").add((__version__, self.mode, platform.python_version()), 1)
        return Snapshot.of("exporter", [build, up, duration, last, errors, interval, *self._extra()])


def _describe(value: object) -> str:
    if isinstance(value, (list, tuple)):
        kinds = sorted({type(v).__name__ for v in value if not isinstance(v, Family)})
        return f"a {type(value).__name__} holding {', '.join(kinds)}"
    return type(value).__name__


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
