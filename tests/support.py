"""Helpers the tests share: free ports, a fake clock, a scheduler run tick by tick, a test-only
catalog source for fakes, the real exporter started as a subprocess, and a count of the examples a
hypothesis test ran."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from exporter import catalog
from exporter.scheduler import Scheduler, SourceRunner
from exporter.snapshot import SnapshotStore
from exporter.sources.base import Source
from exporter.sources.registry import SOURCES

REPO = Path(__file__).resolve().parent.parent


class FakeClock:
    """Monotonic seconds that move only when a test says so (``clock.now += 5`` or ``advance``)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def scheduled(source: Source, clock: Callable[[], float] | None = None,
              store: SnapshotStore | None = None) -> tuple[SourceRunner, SnapshotStore]:
    """``source`` under a real :class:`Scheduler` on ``clock``, without its background jobs: each
    ``runner.run_once()`` is one scheduler tick (poll if due, then publish with the self-metrics)."""
    store = store if store is not None else SnapshotStore()
    scheduler = Scheduler([source], store, "hardware", clock=clock or time.monotonic)
    return scheduler.runners[source.name], store


@contextmanager
def catalog_source(name: str, *metrics: str) -> Iterator[None]:
    """While the block runs, the test-only source ``name`` (a fake's ``name``) may fill the catalog
    ``metrics`` as if their rows listed it; afterwards the catalog is as it was. A fake so never
    poses as a real source: a registered source's name is refused."""
    if name in SOURCES:
        raise ValueError(f"{name!r} is a real source; give the fake a name of its own")
    originals = {metric: catalog.get(metric) for metric in metrics}
    try:
        for metric, row in originals.items():
            catalog.CATALOG[metric] = dataclasses.replace(row, sources=(*row.sources, name))
        yield
    finally:
        catalog.CATALOG.update(originals)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextmanager
def running_exporter(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start `blackwell-exporter run ARGS` on a free loopback port; yield (base URL, process)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "run", "--listen", f"127.0.0.1:{port}", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"exporter exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            return http_get(base + "/healthz", timeout=0.5)[0] == 200
        except OSError:
            return False

    try:
        wait_until(listening, what="exporter /healthz")
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def values_of_one_endpoint(families) -> dict:
    """{(metric name, label values): value} over a serving source's families. A model's series carry
    the endpoint they came from; for tests that read one endpoint at a time that label is left out."""
    def without_endpoint(family, labels):
        if "model" not in family.metric.labels:
            return labels
        return tuple(v for n, v in zip(family.metric.labels, labels, strict=True) if n != "endpoint")
    return {(f.metric.name, without_endpoint(f, labels)): value for f in families for labels, value in f.samples}


def assert_nothing_went_down(before: dict, after: dict) -> None:
    """Every counter value of ``before`` (key -> value) is still there in ``after``, and not lower."""
    decreased = {key: (before[key], after.get(key)) for key in before if after.get(key, -1) < before[key]}
    assert not decreased, f"series that went backwards or vanished: {decreased}"


def counted(name: str, run: Callable[[Callable[[], None]], None]) -> int:
    """Run a hypothesis test that calls ``tick()`` once per example; print and return the count."""
    seen = [0]

    def tick() -> None:
        seen[0] += 1

    run(tick)
    print(f"{name}: {seen[0]} examples")
    assert seen[0] >= 50, f"hypothesis ran only {seen[0]} examples"
    return seen[0]
