"""``blackwell-exporter demo`` as a new user runs it: URLs printed, a typed scenario becomes a page, Ctrl-C ends it."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from exporter.stack import http_get

pytestmark = pytest.mark.e2e


class Console:
    """The demo's terminal: stdin we type into, stdout lines we wait for."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, bufsize=1)
        self.lines: queue.Queue[str] = queue.Queue()
        self.transcript: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def type(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def expect(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.transcript.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r} within {timeout:g}s; the demo printed:\n"
                             + "\n".join(self.transcript))


def test_demo_shows_an_injected_fault_paging_and_clearing() -> None:
    console = Console([sys.executable, "-m", "exporter", "demo", "--profile", "hgx-b200"])
    try:
        exporter = console.expect(r"exporter\s+(http://127\.0\.0\.1:\d+)/metrics", 60)[1]
        prometheus = console.expect(r"Prometheus\s+(http://127\.0\.0\.1:\d+)/alerts", 5)[1]
        alertmanager = console.expect(r"Alertmanager\s+(http://127\.0\.0\.1:\d+)/", 5)[1]
        console.expect(r"curl -X POST -H 'Content-Type: application/json' -d '\{\"scenario\": \"NAME\"\}' " + re.escape(exporter) + r"/-/scenario\)", 5)
        for url in (f"{exporter}/metrics", f"{prometheus}/-/ready", f"{alertmanager}/-/ready"):
            assert http_get(url)[0] == 200, url

        console.type("no-such-fault")
        console.expect(r"not switched: unknown scenario 'no-such-fault'", 10)
        console.type("gpu-lost")
        console.expect(r"scenario is now gpu-lost; expect: BlackwellGPULost", 10)
        console.expect(r"^FIRING\s+BlackwellGPULost \[critical\] .*gpu=2", 60)
        console.expect(r"runbook: \S+/BlackwellGPULost\.md", 5)
        console.type("healthy")
        console.expect(r"^RESOLVED BlackwellGPULost", 60)

        console.process.send_signal(signal.SIGINT)
        assert console.process.wait(30) == 0
    finally:
        if console.process.poll() is None:
            console.process.kill()
            console.process.wait()
    for url in (exporter, prometheus, alertmanager):
        with pytest.raises(OSError):
            http_get(f"{url}/-/ready", timeout=1.0)  # every child process went with it
