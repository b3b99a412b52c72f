"""Soak test: run the real exporter for a long time and watch for leaks, stalls and wrong data.

Two exporter processes run side by side, each polling every second:

- ``simulated``: ``--simulate hgx-b200`` with the scenario switched through ``POST /-/scenario``
  every ``--scenario-every`` seconds, cycling through every scenario the profile supports (each
  is visited once before the clock starts, so growth figures judge revisits: see ``prime``);
- ``triton`` (when the triton source is registered): hardware mode, its triton source reading a
  fake Triton metrics endpoint (a recorded Triton 2.51 body whose counters and histograms grow
  with uptime) that is killed and restarted every ``--restart-every`` seconds, down for
  ``--downtime`` seconds, so the exporter sees connection refusals and counter resets. A second
  endpoint of the same source flaps every ``--flap-every`` seconds (answering, then dripping its
  headers past the endpoint timeout, then answering, then dropping connections unanswered); its
  models are renamed ``*-flap`` so its counters can be judged on their own: they must never drop.

Every ``--flood-every`` seconds a socket flood hits both exporters for ``--flood-hold`` seconds:
``--flood-sockets`` connections from five loopback addresses, each sending half a request and a
byte every 2 s (slowloris); the scrapes during the flood must still be answered. Samples taken
during a flood (and one second after) are left out of the growth figures.

A client scrapes each exporter once a second (rotating plain, gzip and OpenMetrics), and every
``--sample-every`` seconds the soak records RSS, threads and open fds of each process from
/proc. At the end it compares the warmed-up start of the run with its end and checks:
every scrape answered 200, no counter went backwards (every ``_total`` series of the simulated
exporter; the flapping endpoint's and the exporter's own in the triton one), RSS grew less than the allowed amount, threads and fds did not
grow, scrape latency p99 stayed under the limit, every scenario switch showed up in
``blackwell_exporter_simulation_scenario``, and every upstream restart was seen
(``blackwell_serving_up`` 0 while down, 1 after) with the source recovering.

    python -m bench.soak --duration 1800 --output bench/results/soak-30min   # the committed run
    python -m bench.soak --duration 60                                      # what CI runs
    python -m bench.soak --duration 60 --flood-every 15 --flap-every 3      # a quick look at both

Exit status 0 when every check passes. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import multiprocessing
import multiprocessing.process
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRITON_FIXTURE = ROOT / "tests" / "fixtures" / "triton" / "cpp_backend_metrics.txt"

# Growth allowed between the warmed-up start and the end of a run.
MAX_RSS_GROWTH_MIB = 8.0
MAX_THREAD_GROWTH = 4
MAX_FD_GROWTH = 4
MAX_SCRAPE_P99_SECONDS = 0.1


# -- the fake upstream ---------------------------------------------------------------------------

def scaled_exposition(text: str, uptime: float) -> str:
    """The fixture with counter and histogram samples multiplied by (1 + uptime): they grow while
    the process lives and start over when it restarts, as Triton's do."""
    growing: set[str] = set()
    out = []
    factor = 1.0 + uptime
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            if kind in ("counter", "histogram"):
                growing.add(name)
        elif line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name in growing or base in growing:
                head, _, value = line.rpartition(" ")
                line = f"{head} {float(value) * factor:.0f}"
        out.append(line)
    return "\n".join(out) + "\n"


def serve_fake_triton(port: int) -> None:
    """Entry point of the upstream subprocess: serve the growing fixture on /metrics until killed."""
    started = time.monotonic()
    body_text = TRITON_FIXTURE.read_text()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            if self.path != "/metrics":
                self.send_error(404)
                return
            body = scaled_exposition(body_text, time.monotonic() - started).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever()


class Upstream:
    """The fake Triton as a real process, so a restart really drops connections and state."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.soak", "--fake-triton", str(self.port)], cwd=ROOT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("fake Triton did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class FlappingUpstream:
    """A fake Triton in this process that cycles up, drip, up, drop every ``flap_every`` seconds.

    "drip" sends the status line and then a header byte every 0.2 s for 10 s (an upstream that
    hangs inside its headers); "drop" closes each connection without an answer. Its counters keep
    growing through every flap: the exporter may show them absent, never lower.
    """

    MODES = ("up", "drip", "up", "drop")

    def __init__(self, flap_every: float) -> None:
        self.started = time.monotonic()
        self.flap_every = flap_every
        text = re.sub(r'model="([^"]+)"', r'model="\1-flap"', TRITON_FIXTURE.read_text())
        flapper = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - stdlib naming
                mode = flapper.mode()
                self.close_connection = True
                if mode == "drop":
                    return
                if mode == "drip":
                    try:
                        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                        for _ in range(50):
                            self.wfile.write(b"X")
                            self.wfile.flush()
                            time.sleep(0.2)
                    except OSError:
                        pass
                    return
                body = scaled_exposition(text, time.monotonic() - flapper.started).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def mode(self) -> str:
        return self.MODES[int((time.monotonic() - self.started) / self.flap_every) % len(self.MODES)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Flood:
    """Slowloris against every exporter: half requests held open from several loopback addresses.

    Each flood runs in a process of its own, so that opening and feeding its sockets never holds
    the GIL of this process, whose scrape timings the latency check judges."""

    def __init__(self, ports: list[int], sockets: int, hold: float) -> None:
        self.ports, self.sockets, self.hold = ports, sockets, hold
        self.active_until = 0.0
        self.created = time.monotonic()
        self._floods: list[dict] = []
        self._running: tuple[multiprocessing.process.BaseProcess, Connection] | None = None

    def start(self) -> None:
        if self._running is not None and self._running[0].is_alive():
            return
        self._collect()
        mine, theirs = multiprocessing.Pipe(duplex=False)
        process = multiprocessing.get_context("spawn").Process(
            target=flood, args=(self.ports, self.sockets, self.hold, theirs), daemon=True)
        self.active_until = time.monotonic() + self.hold + 0.5  # the child's start included
        process.start()
        theirs.close()
        self._running = (process, mine)

    def flooding(self) -> bool:
        return time.monotonic() < self.active_until + 1.0

    @property
    def floods(self) -> list[dict]:
        """The floods that have finished, each with when it began (seconds after this object was made)."""
        self._collect()
        return self._floods

    def _collect(self) -> None:
        if self._running is not None and self._running[1].poll():
            report = self._running[1].recv()
            report["at"] = round(report.pop("began") - self.created, 1)
            self._floods.append(report)
            self._running = None


def flood(ports: list[int], sockets: int, hold: float, report: Connection) -> None:
    """One flood (a child process's entry point): open, feed and close the half requests; send what happened."""
    began = time.monotonic()
    opened, failed = [], 0
    for i in range(sockets):
        try:
            sock = socket.create_connection(("127.0.0.1", ports[i % len(ports)]), timeout=2,
                                            source_address=(f"127.0.0.{2 + i % 5}", 0))
        except OSError:
            failed += 1
            continue
        opened.append(sock)
        try:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        except OSError:
            pass  # already shut by the exporter to make room
    while time.monotonic() < began + hold:
        time.sleep(2.0)
        for sock in opened:
            try:
                sock.send(b"a")
            except OSError:
                pass
    shut = 0
    for sock in opened:
        try:
            sock.setblocking(False)
            shut += sock.recv(1) == b""
        except (BlockingIOError, OSError):
            pass
        sock.close()
    report.send({"began": began, "sockets": len(opened), "connect_failed": failed, "closed_by_exporters": shut})


class CounterWatch:
    """Remembers every judged counter sample and records each one that went down."""

    SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*_total(?:\{[^}]*\})?) (\S+)$", re.M)

    def __init__(self, judged: re.Pattern[str]) -> None:
        self.judged = judged
        self.last: dict[str, float] = {}
        self.decreases: list[str] = []

    def observe(self, body: str) -> None:
        for series, text in self.SAMPLE.findall(body):
            if not self.judged.search(series):
                continue
            number = float(text)
            before = self.last.get(series)
            if before is not None and number < before and len(self.decreases) < 20:
                self.decreases.append(f"{series}: {before:g} -> {number:g}")
            self.last[series] = number


# -- measuring a process -------------------------------------------------------------------------

@dataclass
class Sample:
    t: float
    rss_mib: float
    threads: int
    fds: int
    flooding: bool = False


def sample(pid: int, t: float, flooding: bool = False) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024  # type: ignore[union-attr]
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    return Sample(round(t, 1), round(rss, 2), threads, len(os.listdir(f"/proc/{pid}/fd")), flooding)


@dataclass
class Watched:
    """One exporter process and everything observed about it."""

    name: str
    port: int
    proc: subprocess.Popen
    samples: list[Sample] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    bodies: int = 0
    last_body: str = ""
    counters: CounterWatch = field(default_factory=lambda: CounterWatch(re.compile("")))

    def scrape(self, variant: int) -> None:
        headers = [{}, {"Accept-Encoding": "gzip"}, {"Accept": "application/openmetrics-text; version=1.0.0"}][variant % 3]
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/metrics", headers=headers)
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                raw = response.read()
                status = response.status
        except (OSError, urllib.error.HTTPError) as exc:
            self.failures.append(f"{time.strftime('%H:%M:%S')} {exc}")
            return
        self.latencies.append(time.perf_counter() - started)
        if status != 200:
            self.failures.append(f"status {status}")
            return
        self.bodies += 1
        self.last_body = (gzip.decompress(raw) if headers.get("Accept-Encoding") else raw).decode()
        self.counters.observe(self.last_body)


def value(body: str, series: str) -> float | None:
    match = re.search(rf"^{re.escape(series)} (\S+)$", body, re.M)
    return float(match.group(1)) if match else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


# -- the run -------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_exporter(name: str, config: str, extra: list[str], workdir: Path) -> Watched:
    port = free_port()
    path = workdir / f"{name}.yml"
    path.write_text(config)
    log = (workdir / f"{name}.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "run", "--config", str(path), "--listen",
                             f"127.0.0.1:{port}", *extra], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    watched = Watched(name, port, proc)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200:
                return watched
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{name} exporter did not become ready; see {workdir / (name + '.log')}")


def prime(watched: Watched, scenarios: list[str]) -> float:
    """Visit every scenario once, each until it shows in /metrics, and return the seconds taken.

    A scenario's first visit adds series that stay (counters keep what they counted, so an XID
    or a retired link is never forgotten), and with it memory that stays. Priming before the
    measured run means its growth figures judge revisits, where a leak shows, instead of first
    visits, which end once every scenario has been seen (the committed 30-minute run grows for
    its first ~900 s, one scenario per 20 s, then stays flat). Floods raise memory the same way
    (the threads an exporter starts for them get malloc arenas that outlive them): a warm-up
    that takes in the first flood leaves that out."""
    began = time.monotonic()
    for name in [*scenarios, scenarios[0]]:
        switch(watched.port, name)
        deadline = time.monotonic() + 10
        while f'scenario="{name}"' not in watched.last_body and time.monotonic() < deadline:
            time.sleep(0.1)
            watched.scrape(0)
        watched.scrape(1)  # one render of the scenario's series in every encoding
        watched.scrape(2)
    return round(time.monotonic() - began, 1)


def switch(port: int, scenario: str) -> bool:
    """POST the scenario to the simulated exporter; True when it was accepted."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/-/scenario", json.dumps({"scenario": scenario}).encode(),
                                     {"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status == 200


def triton_registered() -> bool:
    from exporter.sources.registry import SOURCES

    return "triton" in SOURCES


def only(source: str, settings: str) -> str:
    """A config enabling ``source`` with ``settings`` (indented YAML) and no other source, so the
    soak does not depend on what else this machine has (it has no NVIDIA driver, for one)."""
    from exporter.sources.registry import SOURCES

    others = "".join(f"  {name}:\n    enabled: false\n" for name in SOURCES if name not in (source, "simulated"))
    return f"sources:\n{others}  {source}:\n{settings}"


def run(duration: float, scenario_every: float, restart_every: float, downtime: float,
        sample_every: float = 5.0, warmup: float | None = None, flood_every: float = 60.0,
        flood_sockets: int = 200, flood_hold: float = 8.0, flap_every: float = 5.0) -> dict:
    from exporter.sources.simulated.scenarios import SCENARIOS
    from exporter.sources.simulated.source import scenario_fits

    warmup = warmup if warmup is not None else min(300.0, max(15.0, duration * 0.2))
    scenarios = [s.name for s in SCENARIOS.values() if scenario_fits(s, "hgx-b200")]
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    watched: list[Watched] = []
    upstream = None
    flapper: FlappingUpstream | None = None
    switches: list[dict] = []
    restarts: list[dict] = []
    flaps = {"seen_down": False, "seen_up": False}
    try:
        watched.append(start_exporter("simulated", only("simulated", "    interval: 1\n    timeout: 1\n"),
                                      ["--simulate", "hgx-b200"], workdir))
        if triton_registered():
            upstream = Upstream(free_port())
            upstream.start()
            flapper = FlappingUpstream(flap_every)
            watched.append(start_exporter(
                "triton", only("triton", "    enabled: true\n    interval: 1\n    timeout: 1\n"
                               f"    endpoints:\n      - url: http://127.0.0.1:{upstream.port}/metrics\n"
                               "        api: false\n"
                               f"      - url: http://127.0.0.1:{flapper.port}/metrics\n"
                               "        api: false\n"),
                [], workdir))
            watched[1].counters = CounterWatch(re.compile(r'-flap"|^blackwell_exporter_'))
        primed = prime(watched[0], scenarios)
        flood = Flood([w.port for w in watched], flood_sockets, flood_hold)
        flap_up = re.compile(rf'^blackwell_serving_up\{{[^}}]*:{flapper.port if flapper else 0}/metrics"[^}}]*\}} (\d)$',
                             re.M)
        started = time.monotonic()
        next_sample = next_switch = 0.0
        next_flood = flood_every
        next_restart = restart_every
        down_since: float | None = None
        saw_down = False
        tick = 0
        scenario_index = 0
        while (now := time.monotonic() - started) < duration:
            for w in watched:
                w.scrape(tick)
            if now >= next_sample:
                for w in watched:
                    w.samples.append(sample(w.proc.pid, now, flood.flooding()))
                next_sample += sample_every
            if now >= next_flood:
                flood.start()
                next_flood += flood_every
            if switches and not switches[-1]["seen"]:
                switches[-1]["seen"] = f'scenario="{switches[-1]["name"]}"' in watched[0].last_body
            if now >= next_switch:
                name = scenarios[scenario_index % len(scenarios)]
                scenario_index += 1
                switches.append({"at": round(now, 1), "name": name, "accepted": switch(watched[0].port, name),
                                 "seen": False})
                next_switch += scenario_every
            if upstream is not None:
                triton = watched[1]
                for state in flap_up.findall(triton.last_body):
                    flaps["seen_up" if state == "1" else "seen_down"] = True
                if down_since is None and now >= next_restart:
                    upstream.stop()
                    down_since, saw_down = now, False
                elif down_since is not None:
                    if re.search(r"^blackwell_serving_up\{.*\} 0$", triton.last_body, re.M):
                        saw_down = True
                    if now - down_since >= downtime:
                        upstream.start()
                        upstream.restarts += 1
                        restarts.append({"at": round(down_since, 1), "seen_down": saw_down, "recovered_after": None})
                        down_since = None
                        next_restart = now + restart_every
                if restarts and restarts[-1]["recovered_after"] is None and down_since is None:
                    if value(triton.last_body, 'blackwell_exporter_source_up{source="triton"}') == 1:
                        restarts[-1]["recovered_after"] = round(now - restarts[-1]["at"] - downtime, 1)
            for w in watched:
                if w.proc.poll() is not None:
                    raise RuntimeError(f"{w.name} exporter exited with {w.proc.returncode}")
            tick += 1
            time.sleep(max(0.0, started + tick * 1.0 - time.monotonic()))
        for w in watched:
            w.samples.append(sample(w.proc.pid, time.monotonic() - started))
    finally:
        stop_times = {}
        for w in watched:
            began = time.monotonic()
            w.proc.send_signal(signal.SIGTERM)
            try:
                w.proc.wait(10)
            except subprocess.TimeoutExpired:
                w.proc.kill()
            stop_times[w.name] = round(time.monotonic() - began, 2)
        if upstream is not None:
            upstream.stop()
        if flapper is not None:
            flapper.close()
    result = summarize(duration, warmup, watched, switches, restarts, stop_times, scenarios)
    result["primed_s"] = primed
    result["floods"] = flood.floods
    checks = result["checks"]
    checks["every flood was opened in full (no connect refused)"] = bool(flood.floods) and all(
        f["connect_failed"] == 0 for f in flood.floods)
    if flapper is not None:
        result["flapping_endpoint"] = flaps
        checks["the flapping endpoint was seen down and up"] = flaps["seen_down"] and flaps["seen_up"]
    result["passed"] = all(checks.values())
    return result


def summarize(duration: float, warmup: float, watched: list[Watched], switches: list, restarts: list,
              stop_times: dict, scenarios: list[str]) -> dict:
    result: dict = {"duration_s": duration, "warmup_s": warmup, "poll_interval_s": 1.0, "processes": {},
                    "scenario_switches": len(switches), "scenarios_cycled": sorted({s["name"] for s in switches}),
                    "upstream_restarts": restarts, "checks": {}}
    checks = result["checks"]
    for w in watched:
        settled = [s for s in w.samples if s.t >= warmup and not s.flooding] or w.samples
        window = max(1, len(settled) // 10)
        start, end = settled[:window], settled[-window:]
        rss_growth = statistics.median(s.rss_mib for s in end) - statistics.median(s.rss_mib for s in start)
        thread_growth = max(s.threads for s in end) - max(s.threads for s in start)
        fd_growth = max(s.fds for s in end) - max(s.fds for s in start)
        p50, p99 = percentile(w.latencies, 0.5), percentile(w.latencies, 0.99)
        hours = (settled[-1].t - settled[0].t) / 3600 if len(settled) > 1 else 0.0
        result["processes"][w.name] = {
            "scrapes_ok": w.bodies, "scrape_failures": w.failures[:20], "scrape_failure_count": len(w.failures),
            "scrape_p50_ms": round(p50 * 1000, 2), "scrape_p99_ms": round(p99 * 1000, 2),
            "scrape_max_ms": round(max(w.latencies, default=float("nan")) * 1000, 2),
            "rss_mib_first": w.samples[0].rss_mib, "rss_mib_after_warmup": statistics.median(s.rss_mib for s in start),
            "rss_mib_end": statistics.median(s.rss_mib for s in end), "rss_growth_mib": round(rss_growth, 2),
            "rss_growth_mib_per_hour": round(rss_growth / hours, 2) if hours else None,
            "threads_after_warmup": max(s.threads for s in start), "threads_end": max(s.threads for s in end),
            "threads_max": max(s.threads for s in w.samples),
            "fds_after_warmup": max(s.fds for s in start), "fds_end": max(s.fds for s in end),
            "fds_max": max(s.fds for s in w.samples),
            "sigterm_to_exit_s": stop_times.get(w.name),
            "counter_series_judged": len(w.counters.last), "counter_decreases": w.counters.decreases,
            "samples": [asdict(s) for s in w.samples],
        }
        checks[f"{w.name}: every scrape answered 200"] = not w.failures
        checks[f"{w.name}: no counter went backwards ({len(w.counters.last)} series)"] = not w.counters.decreases
        checks[f"{w.name}: RSS growth {rss_growth:.2f} MiB < {MAX_RSS_GROWTH_MIB} MiB"] = rss_growth < MAX_RSS_GROWTH_MIB
        checks[f"{w.name}: thread growth {thread_growth} <= {MAX_THREAD_GROWTH}"] = thread_growth <= MAX_THREAD_GROWTH
        checks[f"{w.name}: fd growth {fd_growth} <= {MAX_FD_GROWTH}"] = fd_growth <= MAX_FD_GROWTH
        checks[f"{w.name}: scrape p99 {p99 * 1000:.1f} ms < {MAX_SCRAPE_P99_SECONDS * 1000:.0f} ms"] = (
            p99 < MAX_SCRAPE_P99_SECONDS)
        checks[f"{w.name}: exited within 5 s of SIGTERM"] = (stop_times.get(w.name) or 99) < 5
    judged = [s for s in switches if s["at"] < duration - 3]  # the last one may not have been polled yet
    checks["every scenario switch was accepted and showed up in /metrics"] = bool(judged) and all(
        s["accepted"] and s["seen"] for s in judged)
    if "triton" in result["processes"]:
        checks["every upstream restart was seen (serving_up 0) and the source recovered"] = bool(restarts) and all(
            r["seen_down"] and r["recovered_after"] is not None for r in restarts)
    result["passed"] = all(checks.values())
    return result


def markdown(result: dict) -> str:
    lines = [f"# Soak: {result['duration_s'] / 60:g} minutes, 1-second polls", "",
             f"Before the clock started, every scenario was visited once ({result.get('primed_s', 0):g} s). "
             f"Warm-up excluded from growth figures: first {result['warmup_s']:g} s. "
             f"Scenario switches: {result['scenario_switches']} (cycling {len(result['scenarios_cycled'])} scenarios). "
             f"Upstream restarts: {len(result['upstream_restarts'])}.", "",
             "| process | scrapes ok | failures | p50 ms | p99 ms | max ms | RSS after warm-up MiB | RSS end MiB "
             "| growth MiB | MiB/hour | threads start/end/max | fds start/end/max | SIGTERM->exit s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, p in result["processes"].items():
        lines.append(f"| {name} | {p['scrapes_ok']} | {p['scrape_failure_count']} | {p['scrape_p50_ms']} | "
                     f"{p['scrape_p99_ms']} | {p['scrape_max_ms']} | {p['rss_mib_after_warmup']} | {p['rss_mib_end']} | "
                     f"{p['rss_growth_mib']} | {p['rss_growth_mib_per_hour']} | {p['threads_after_warmup']}/"
                     f"{p['threads_end']}/{p['threads_max']} | {p['fds_after_warmup']}/{p['fds_end']}/{p['fds_max']} | "
                     f"{p['sigterm_to_exit_s']} |")
    for flood in result.get("floods", []):
        lines.append(f"Socket flood at {flood['at']:g} s: {flood['sockets']} half-open requests, "
                     f"{flood['closed_by_exporters']} shut by the exporters to make room, "
                     f"{flood['connect_failed']} connects failed.")
    if "flapping_endpoint" in result:
        lines.append(f"Flapping endpoint: seen down {result['flapping_endpoint']['seen_down']}, "
                     f"seen up {result['flapping_endpoint']['seen_up']}.")
    for name, p in result["processes"].items():
        for decrease in p["counter_decreases"]:
            lines.append(f"Counter decrease in {name}: {decrease}")
    lines += ["", "## Checks", ""]
    lines += [f"- {'PASS' if ok else 'FAIL'}: {name}" for name, ok in result["checks"].items()]
    if result["upstream_restarts"]:
        recovered = [r["recovered_after"] for r in result["upstream_restarts"] if r["recovered_after"] is not None]
        lines += ["", f"Upstream restarts: {len(result['upstream_restarts'])}; source back up "
                      f"{min(recovered, default=0):g}-{max(recovered, default=0):g} s after the upstream returned."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (1800 for the committed run)")
    parser.add_argument("--scenario-every", type=float, default=20.0)
    parser.add_argument("--restart-every", type=float, default=45.0)
    parser.add_argument("--downtime", type=float, default=3.0)
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--flood-every", type=float, default=60.0, help="seconds between socket floods")
    parser.add_argument("--flood-sockets", type=int, default=200, help="half-open requests per flood")
    parser.add_argument("--flood-hold", type=float, default=8.0, help="seconds each flood is held")
    parser.add_argument("--flap-every", type=float, default=5.0, help="seconds per state of the flapping endpoint")
    parser.add_argument("--output", type=Path, help="write OUTPUT.json and OUTPUT.md")
    parser.add_argument("--fake-triton", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fake_triton:
        serve_fake_triton(args.fake_triton)
        return 0
    result = run(args.duration, args.scenario_every, args.restart_every, args.downtime, args.sample_every,
                 flood_every=args.flood_every, flood_sockets=args.flood_sockets, flood_hold=args.flood_hold,
                 flap_every=args.flap_every)
    report = markdown(result)
    print(report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
        args.output.with_suffix(".md").write_text(report)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
