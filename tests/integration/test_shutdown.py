"""Graceful shutdown: the real daemon, in a subprocess, exits within 5 s of SIGTERM or SIGINT,
even with a poll hung inside a source, a source whose close() hangs, and clients holding
connections open."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# A source that hangs in poll() for an hour with a 30 s timeout, and hangs again in close():
# registered before exporter.config builds its models, as a real source module would be.
HANGING_DAEMON = textwrap.dedent("""
    import sys, time
    from typing import ClassVar
    from pydantic import Field
    from exporter.sources import registry
    from exporter.sources.base import Source, SourceConfig

    class HangConfig(SourceConfig):
        interval: float = Field(60.0, gt=0)
        timeout: float = Field(30.0, gt=0)

    class Hang(Source):
        name: ClassVar[str] = "hang"
        config_model: ClassVar[type[SourceConfig]] = HangConfig

        def poll(self):
            print("poll started", flush=True)
            time.sleep(3600)
            return []

        def close(self):
            if getattr(self, "polled", False):
                time.sleep(3600)
            self.polled = True

    registry.SOURCES["hang"] = Hang
    from exporter.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})


def wait_for(url: str, proc: subprocess.Popen, expect: int = 200, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            if urllib.request.urlopen(url, timeout=2).status == expect:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {expect} within {limit}s")


def stop_and_time(proc: subprocess.Popen, signum: int) -> tuple[float, str]:
    started = time.monotonic()
    proc.send_signal(signum)
    try:
        output = proc.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("daemon still running 10 s after the signal") from None
    return time.monotonic() - started, output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_simulated_daemon_stops_cleanly_within_5s(signum: int) -> None:
    port = free_port()
    proc = start([sys.executable, "-m", "exporter", "run", "--simulate", "hgx-b200", "--listen", f"127.0.0.1:{port}"])
    wait_for(f"http://127.0.0.1:{port}/readyz", proc)
    elapsed, output = stop_and_time(proc, signum)
    assert proc.returncode == 0, output
    assert elapsed < 5.0, f"took {elapsed:.2f}s"
    assert f"received {signal.Signals(signum).name}, shutting down" in output and "stopped" in output
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_hung_poll_hung_close_and_open_connections_do_not_hold_up_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "exporter.yml"
    config.write_text("sources:\n  hang:\n    enabled: true\n")
    proc = start([sys.executable, "-c", HANGING_DAEMON, "run", "--config", str(config), "--simulate", "hgx-b200",
                  "--listen", f"127.0.0.1:{port}"])
    wait_for(f"http://127.0.0.1:{port}/healthz", proc)
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)  # keep-alive client, says nothing
    dripping = socket.create_connection(("127.0.0.1", port), timeout=5)
    dripping.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    time.sleep(1.0)  # the hang source's first poll is now stuck with 29 s left on its timeout
    try:
        elapsed, output = stop_and_time(proc, signal.SIGTERM)
    finally:
        idle.close()
        dripping.close()
    assert "poll started" in output
    assert elapsed < 5.0, f"took {elapsed:.2f}s:\n{output}"
    assert proc.returncode == 0, output
    assert "sources still closing after 2s" in output, "the hung close() was abandoned at its deadline"
    print(f"SIGTERM to exit with a hung poll and a hung close: {elapsed:.2f}s")
