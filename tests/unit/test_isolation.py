"""Source isolation: a hung, slow, crashing or garbage-returning source is marked down with a
reason, is restarted with exponential backoff, and never blocks another source or a scrape."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from itertools import pairwise
from typing import ClassVar

import pytest

from exporter.backoff import MAX_BACKOFF_SECONDS, backoff_delay
from exporter.scheduler import STALE_INTERVALS, Scheduler, SourceRunner
from exporter.server import ExporterHTTPServer
from exporter.snapshot import Family, SnapshotStore
from exporter.sources.base import PartialPollError, PollError, ReprobeRequired, Source, SourceConfig
from tests.support import FakeClock, catalog_source, scheduled

MEMORY = "blackwell_gpu_memory_used_bytes"


@pytest.fixture(autouse=True)
def _fakes_may_fill_memory():
    """The fakes below are test-only catalog sources, not stand-ins for nvml or dcgm."""
    with catalog_source(Scripted.name, MEMORY), catalog_source(Other.name, MEMORY):
        yield


def memory_family(value: float = 1.0) -> Family:
    return Family(MEMORY).add(("0",), value)


class Scripted(Source):
    """A source whose probe/poll do whatever the test says, counting every call."""

    name: ClassVar[str] = "scripted"
    config_model: ClassVar[type[SourceConfig]] = SourceConfig

    def __init__(self, poll: Callable[[], object], interval: float = 1.0, timeout: float = 0.3,
                 probe: Callable[[], None] = lambda: None) -> None:
        super().__init__(SourceConfig(enabled=True, interval=interval, timeout=timeout))
        self.script, self._probe = poll, probe  # what the next polls do; a test may replace it
        self.polls = self.probes = self.closes = 0

    def probe(self) -> None:
        self.probes += 1
        self._probe()

    def poll(self) -> list[Family]:
        self.polls += 1
        return self.script()  # type: ignore[return-value]

    def close(self) -> None:
        self.closes += 1


class Other(Scripted):
    name: ClassVar[str] = "other"


def runner_for(source: Source, store: SnapshotStore | None = None, clock: FakeClock | None = None) -> SourceRunner:
    return scheduled(source, clock or FakeClock(), store)[0]


def raiser(exc: BaseException) -> Callable[[], object]:
    def poll() -> object:
        raise exc
    return poll


def test_hung_poll_is_abandoned_at_its_deadline_and_not_restarted_while_it_runs() -> None:
    release = threading.Event()
    source = Scripted(lambda: (release.wait(), [memory_family()])[1], timeout=0.2)
    clock = FakeClock()
    runner = runner_for(source, clock=clock)

    started = time.monotonic()
    runner.run_once()
    assert time.monotonic() - started < 1.0
    assert (runner.up, runner.errors["timeout"]) == (False, 1)
    assert "did not finish within 0.2s" in runner.last_error

    for _ in range(5):  # the hung poll still runs: no second poll thread, no backoff growth
        clock.now += 1.0
        runner.run_once()
    assert source.polls == 1
    assert runner.errors["busy"] == 5
    assert runner.consecutive_failures == 1

    release.set()
    time.sleep(0.1)
    clock.now += 1.0
    runner.run_once()
    assert runner.up and source.polls == 2
    assert (source.closes, source.probes) == (2, 2), "a timed-out source is restarted: close + probe"
    assert runner.errors["timeout"] == 1


def test_slow_poll_within_its_deadline_is_up_and_records_its_duration() -> None:
    source = Scripted(lambda: (time.sleep(0.15), [memory_family()])[1], timeout=0.5)
    runner = runner_for(source)
    runner.run_once()
    assert runner.up and runner.last_duration is not None
    assert runner.last_duration >= 0  # fake clock: the duration is measured on the runner's clock
    assert not runner.errors


@pytest.mark.parametrize("exc", [
    RuntimeError("boom"), ZeroDivisionError(), MemoryError(), RecursionError(),
    SystemExit(3), KeyboardInterrupt(), GeneratorExit(),
], ids=lambda e: type(e).__name__)
def test_any_exception_from_poll_marks_the_source_down_and_restarts_it(exc: BaseException) -> None:
    source = Scripted(raiser(exc))
    clock = FakeClock()
    runner = runner_for(source, clock=clock)
    runner.run_once()
    assert not runner.up
    assert runner.errors == {"error": 1}
    assert runner.last_error.startswith(type(exc).__name__)
    clock.now += 1.0
    runner.run_once()
    assert (source.probes, source.closes, source.polls) == (2, 2, 2)


@pytest.mark.parametrize("result, message", [
    (None, "got NoneType"),
    ("blackwell_gpu_up 1\n", "got str"),
    ([1, 2.5], "holding float, int"),
    ((f for f in [memory_family()]), "got generator"),
    ([memory_family(), {"name": "x"}], "holding dict"),
    ([Family("blackwell_exporter_source_up").add(("x",), 1)], "may not fill blackwell_exporter_source_up"),
])
def test_garbage_from_poll_is_an_error_and_leaves_other_sources_alone(result: object, message: str) -> None:
    store = SnapshotStore()
    good = runner_for(Other(lambda: [memory_family(7)]), store)
    good.run_once()
    bad = runner_for(Scripted(lambda: result), store)
    bad.run_once()
    assert not bad.up and bad.errors == {"error": 1}
    assert message in bad.last_error
    body = store.current().text.decode()
    assert 'blackwell_gpu_memory_used_bytes{gpu="0"} 7' in body
    assert store.snapshot("scripted") is None


def test_poll_error_keeps_its_reason_and_does_not_restart_but_reprobe_required_does() -> None:
    errors = iter([PollError("HTTP 503", reason="http"), ReprobeRequired("engine replaced")])
    source = Scripted(lambda: (_ for _ in ()).throw(next(errors)))
    clock = FakeClock()
    runner = runner_for(source, clock=clock)
    runner.run_once()
    assert runner.errors == {"http": 1}
    clock.now += 10
    runner.run_once()
    assert source.probes == 1, "an upstream error the source understands is retried without a restart"
    assert runner.errors == {"http": 1, "reprobe": 1}
    source.script = lambda: [memory_family()]
    clock.now += 10
    runner.run_once()
    assert source.probes == 2 and runner.up


def test_partial_result_publishes_its_families_at_once_while_the_source_counts_as_down() -> None:
    results: list[object] = [PartialPollError("endpoint b: connection refused", [memory_family(3)], reason="http"),
                             [memory_family(9)]]

    def poll() -> object:
        result = results.pop()
        if isinstance(result, BaseException):
            raise result
        return result

    store = SnapshotStore()
    clock = FakeClock()
    runner = runner_for(Scripted(poll, interval=2.0), store, clock)
    runner.run_once()
    assert 'blackwell_gpu_memory_used_bytes{gpu="0"} 9' in store.current().text.decode()
    clock.now += 2
    runner.run_once()
    assert not runner.up and runner.errors == {"http": 1}
    assert 'blackwell_gpu_memory_used_bytes{gpu="0"} 3' in store.current().text.decode(), "replaces the old data"
    for _ in range(5):  # a source that only ever returns partial results keeps publishing them
        results.append(PartialPollError("still down", [memory_family(4)], reason="http"))
        clock.now += 2
        runner.run_once()
    assert 'blackwell_gpu_memory_used_bytes{gpu="0"} 4' in store.current().text.decode()
    assert runner.state() == "stale", "the source itself has not fully succeeded for over 3 intervals"


def test_a_source_that_stays_partially_down_publishes_every_interval_without_backing_off() -> None:
    """serving_up 0 must stay visible for as long as an alert's `for:` needs, not flap with a backoff."""
    polls = 0

    def poll() -> object:
        nonlocal polls
        polls += 1
        raise PartialPollError("endpoint down", [memory_family(polls)], reason="unreachable")

    store = SnapshotStore()
    clock = FakeClock()
    runner = runner_for(Scripted(poll, interval=10.0), store, clock)
    for tick in range(60):
        runner.run_once()
        assert f'blackwell_gpu_memory_used_bytes{{gpu="0"}} {tick + 1}' in store.current().text.decode(), tick
        clock.now += 10
    assert polls == 60 and runner.errors == {"unreachable": 60}


def test_garbage_inside_a_partial_result_is_an_error_and_restarts_the_source() -> None:
    bad = PartialPollError("down", [Family("blackwell_exporter_source_up").add(("x",), 0)], reason="http")
    source = Scripted(raiser(bad))
    clock = FakeClock()
    runner = runner_for(source, clock=clock)
    runner.run_once()
    assert runner.errors == {"error": 1} and "may not fill" in runner.last_error
    clock.now += 1
    runner.run_once()
    assert source.probes == 2


def test_failing_probe_counts_reason_probe_and_skips_poll() -> None:
    source = Scripted(lambda: [memory_family()], probe=raiser(OSError("libnvidia-ml.so.1 not found")))
    runner = runner_for(source)
    runner.run_once()
    assert runner.errors == {"probe": 1} and source.polls == 0
    assert "libnvidia-ml.so.1" in runner.last_error


def test_restart_backoff_doubles_from_the_interval_up_to_the_cap() -> None:
    source = Scripted(raiser(RuntimeError("down")), interval=1.0)
    clock = FakeClock()
    runner = runner_for(source, clock=clock)
    start = clock.now
    attempts = []
    for tick in range(1200):  # the APScheduler job fires once per interval
        clock.now = start + tick
        before = source.probes
        runner.run_once()
        if source.probes != before:
            attempts.append(tick)
    gaps = [b - a for a, b in pairwise(attempts)]
    assert gaps[:9] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert set(gaps[9:]) == {MAX_BACKOFF_SECONDS}
    assert runner.consecutive_failures == len(attempts)


def test_backoff_resets_after_a_success() -> None:
    outcomes = iter([RuntimeError("a"), RuntimeError("b"), None, RuntimeError("c")])

    def poll() -> list[Family]:
        err = next(outcomes)
        if err:
            raise err
        return [memory_family()]

    clock = FakeClock()
    runner = runner_for(Scripted(poll), clock=clock)
    runner.run_once()           # fail 1 -> wait 1
    clock.now += 1
    runner.run_once()           # fail 2 -> wait 2
    clock.now += 2
    runner.run_once()           # success
    assert runner.up and runner.consecutive_failures == 0
    clock.now += 1
    runner.run_once()           # fail again: back to a 1 s wait
    assert runner._next_attempt == clock.now + 1


def test_last_good_snapshot_is_served_until_stale_then_dropped() -> None:
    results: list[object] = [[memory_family(5)]]

    def poll() -> object:
        if results:
            return results.pop()
        raise RuntimeError("upstream gone")

    store = SnapshotStore()
    clock = FakeClock()
    runner = runner_for(Scripted(poll, interval=2.0), store, clock)
    runner.run_once()
    assert store.snapshot("scripted") is not None
    clock.now += 2
    runner.run_once()
    assert not runner.up and store.snapshot("scripted") is not None, "a brief failure keeps the last good data"
    assert runner.state() == "down"
    clock.now += STALE_INTERVALS * 2
    runner.run_once()
    assert store.snapshot("scripted") is None and runner.state() == "stale"
    assert "blackwell_gpu_memory_used_bytes" not in store.current().text.decode()


def test_run_once_waiting_on_a_hung_poll_returns_at_shutdown() -> None:
    source = Scripted(lambda: time.sleep(60), interval=60, timeout=30)
    runner = runner_for(source)
    job = threading.Thread(target=runner.run_once)
    job.start()
    time.sleep(0.2)
    started = time.monotonic()
    runner.stop()
    job.join(2)
    assert not job.is_alive() and time.monotonic() - started < 0.5


def test_scheduler_shutdown_does_not_wait_for_a_hanging_close() -> None:
    class HangsOnClose(Scripted):
        def close(self) -> None:
            time.sleep(60)

    scheduler = Scheduler([HangsOnClose(lambda: [memory_family()])], SnapshotStore(), "hardware")
    scheduler.start()
    started = time.monotonic()
    scheduler.shutdown()
    assert time.monotonic() - started < 3.0


def test_hung_source_does_not_delay_scrapes_or_remove_another_sources_metrics() -> None:
    """Real scheduler, real server: one source hangs for good, scrapes stay fast and complete."""
    hang = threading.Event()
    hung = Scripted(lambda: (hang.wait(), [])[1], interval=0.5, timeout=0.2)
    healthy = Other(lambda: [memory_family(42)], interval=0.5, timeout=0.2)
    store = SnapshotStore()
    scheduler = Scheduler([hung, healthy], store, "hardware")
    server = ExporterHTTPServer(("127.0.0.1", 0), scheduler)
    scheduler.start()
    server.serve_in_thread()
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    try:
        deadline = time.monotonic() + 5
        latencies = []
        body = ""
        while time.monotonic() < deadline:
            started = time.monotonic()
            body = urllib.request.urlopen(url, timeout=2).read().decode()
            latencies.append(time.monotonic() - started)
            if 'source_errors_total{source="scripted",reason="busy"}' in body and "} 42" in body:
                break
            time.sleep(0.05)
        assert 'blackwell_exporter_source_up{source="scripted"} 0' in body
        assert 'blackwell_exporter_source_up{source="other"} 1' in body
        assert 'blackwell_exporter_source_errors_total{source="scripted",reason="timeout"} 1' in body
        assert 'source_errors_total{source="scripted",reason="busy"}' in body
        assert 'blackwell_gpu_memory_used_bytes{gpu="0"} 42' in body
        assert max(latencies) < 0.15, f"slowest scrape {max(latencies):.3f}s while a source hangs"
        ready, reasons = scheduler.ready()
        assert not ready and any(r.startswith("scripted: no completed poll yet") for r in reasons)
    finally:
        hang.set()
        server.shutdown()
        server.server_close()
        scheduler.shutdown()


def test_backoff_stays_finite_after_any_number_of_failures() -> None:
    assert backoff_delay(1.0, 1) == 1.0 and backoff_delay(1.0, 3) == 4.0
    assert backoff_delay(10.0, 5000) == MAX_BACKOFF_SECONDS
    assert backoff_delay(600.0, 10**6) == 600.0, "never shorter than the interval"
