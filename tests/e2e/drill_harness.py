"""The drill harness: a webhook receiver for Alertmanager, a runner that plays each scenario once,
and the "yesterday" the throughput comparison needs.

A drill switches one exporter's scenario, waits until the receiver has every alert the scenario
names, switches back to healthy and waits until everything that fired has resolved.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from exporter.mixin import recording
from exporter.mixin.config import MixinConfig
from exporter.sources.simulated.model import BoxModel
from exporter.sources.simulated.profiles import PROFILES
from exporter.sources.simulated.scenarios import DEFAULT_SCENARIO, SCENARIOS, Scenario
from exporter.stack import Stack, find_binary

HEALTHY = "healthy"
# A drill's scenario runs until every alert it names has fired, at most this long...
FIRE_TIMEOUT_SECONDS = 120.0
# ...and after the switch back to healthy, every alert it fired must resolve within this.
RESOLVE_TIMEOUT_SECONDS = 90.0


# Scenarios that leave the TTFT error budget burning for minutes after they end (the slow burn-rate
# windows drain slowly: 6h is still 3m36s at the drill time scale). They run on the second box,
# so the HGX queue never waits for them to drain.
SLOW_TO_DRAIN = {"ttft-regression", "long-prompt-ttft", "cold-start"}
# The two boxes' queues run side by side, so the battery lasts as long as the longer one: these
# scenarios, which need nothing of an HGX box, go to the tray as well, which evens the queues out
# (about 165 s each, by the drill summary's timings; all on the HGX box it was 290 s against 65 s).
TRAY_TOO = {"te-promotion-storm", "backend-errors"}


def drill_profile(scenario: Scenario) -> str:
    """The box a scenario is drilled on: the GB200 tray where it needs Grace C2C, drains slowly or evens the
    queues out, else HGX B200; a rack scenario on the NVL72 rack (tests/e2e/test_rack_drills.py)."""
    if scenario.rack:
        return "nvl72-tray"
    on_tray = scenario.needs_c2c or scenario.name in SLOW_TO_DRAIN | TRAY_TOO
    return "gb200-tray" if on_tray else "hgx-b200"


# Scenarios the single-box battery plays; the rack scenarios have their own drills on 18 trays.
BOX_SCENARIOS = {name: s for name, s in SCENARIOS.items() if not s.rack}
DRILL_PROFILES = sorted({drill_profile(s) for s in BOX_SCENARIOS.values()})


Key = tuple[tuple[str, str], ...]  # an alert's identity: its label set, sorted


@dataclass(frozen=True)
class Notification:
    """One alert out of one Alertmanager webhook call, stamped with when it arrived."""

    received: float  # time.monotonic()
    status: str  # firing | resolved
    labels: dict[str, str]
    annotations: dict[str, str]

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def key(self) -> Key:
        """Which alert this is: Alertmanager's identity of an alert is its whole label set."""
        return tuple(sorted(self.labels.items()))


class WebhookReceiver(ThreadingHTTPServer):
    """Alertmanager's webhook_configs target: keeps every alert it is sent, in arrival order."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _WebhookHandler)
        self.notifications: list[Notification] = []
        self.changed = threading.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/alerts"

    def record(self, payload: dict[str, Any]) -> None:
        now = time.monotonic()
        with self.changed:
            for alert in payload.get("alerts", []):
                self.notifications.append(Notification(now, alert["status"], alert["labels"], alert["annotations"]))
            self.changed.notify_all()

    def wait_until(self, done: Callable[[list[Notification]], bool], timeout: float) -> list[Notification]:
        """Block until ``done(notifications so far)`` holds or ``timeout`` passes; return a copy either way."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not done(self.notifications):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.changed.wait(left)
            return list(self.notifications)


class _WebhookHandler(BaseHTTPRequestHandler):
    server: WebhookReceiver

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.record(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


@dataclass
class DrillResult:
    """What the chain delivered for one scenario on one box."""

    scenario: str
    profile: str
    instance: str
    firing: dict[str, list[Notification]] = field(default_factory=dict)  # alertname -> firing notifications
    resolved: dict[str, list[Notification]] = field(default_factory=dict)
    seconds_to_fire: dict[str, float] = field(default_factory=dict)  # from the switch to the first page
    seconds_to_resolve: dict[str, float] = field(default_factory=dict)  # from the switch back to the last resolve
    still_firing: set[Key] = field(default_factory=set)  # label sets never resolved
    inherited: int = 0  # alerts an earlier drill on this box left pending or firing, ignored here
    error: str = ""  # the harness itself failed (a component died); the drill proves nothing


class Drills:
    """Plays every wanted scenario once, one queue per box, the queues side by side.

    Drills on one box run one after another; the boxes are independent (every alert carries
    ``instance``), so their queues run at the same time. The first :meth:`result` call starts
    the battery; each call waits for its own scenario only.
    """

    def __init__(self, stack: Stack, webhook: WebhookReceiver, wanted: list[str]) -> None:
        self.stack = stack
        self.webhook = webhook
        self.results: dict[str, DrillResult] = {}
        self.done = {name: threading.Event() for name in wanted}
        self._threads: list[threading.Thread] = []
        self._start = threading.Lock()

    def result(self, name: str) -> DrillResult:
        with self._start:
            if not self._threads:
                self._launch()
        self.done[name].wait()
        return self.results[name]

    def wait_all(self) -> None:
        """Until every queue is through (bounded: a drill gives up after its fire and resolve timeouts)."""
        for thread in self._threads:
            thread.join(len(self.done) * (FIRE_TIMEOUT_SECONDS + RESOLVE_TIMEOUT_SECONDS))

    def _launch(self) -> None:
        queues: dict[str, list[Scenario]] = {}
        for name in self.done:
            queues.setdefault(drill_profile(SCENARIOS[name]), []).append(SCENARIOS[name])
        for profile, scenarios in queues.items():
            thread = threading.Thread(target=self._queue, args=(scenarios,), name=f"drills-{profile}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _queue(self, scenarios: list[Scenario]) -> None:
        for scenario in scenarios:
            try:
                self.results[scenario.name] = self._drill(scenario)
            except Exception as exc:  # a dead component fails this drill's tests, not the session
                profile = drill_profile(scenario)
                self.results[scenario.name] = DrillResult(scenario.name, profile, self.stack.instance(profile),
                                                          error=f"{type(exc).__name__}: {exc}")
            finally:
                self.done[scenario.name].set()

    def _held(self, instance: str) -> set[Key]:
        """Alerts Prometheus holds (pending or firing) for ``instance`` now, keyed as Alertmanager keys them."""
        return {tuple(sorted((k, v) for k, v in series["metric"].items() if k not in ("__name__", "alertstate")))
                for series in self.stack.query(f'ALERTS{{instance="{instance}"}}')}

    def _drill(self, scenario: Scenario) -> DrillResult:
        profile = drill_profile(scenario)
        instance = self.stack.instance(profile)
        result = DrillResult(scenario.name, profile, instance)
        start = len(self.webhook.wait_until(lambda _: True, 0))
        # What an earlier drill left burning (the slow burn-rate windows drain for minutes) is not
        # this drill's doing: its pages neither prove this drill's alerts nor have to clear for it.
        # An alert this drill expects stays its own even when it was pending at the switch (the
        # rate windows of the last scenario can hold its condition for a moment): it fires only if
        # the condition then holds for its whole `for`, under this drill's fault.
        inherited = {key for key in self._held(instance) if dict(key).get("alertname") not in scenario.alerts}
        result.inherited = len(inherited)

        def mine(ns: list[Notification]) -> list[Notification]:
            return [n for n in ns[start:] if n.labels.get("instance") == instance and n.key not in inherited]

        switched = time.monotonic()
        self.stack.set_scenario(profile, scenario.name)
        try:
            self.webhook.wait_until(
                lambda ns: set(scenario.alerts) <= {n.alertname for n in mine(ns) if n.status == "firing"},
                FIRE_TIMEOUT_SECONDS)
        finally:
            self.stack.set_scenario(profile, HEALTHY)
        healed = time.monotonic()

        def resolved(ns: list[Notification]) -> set[Key]:
            return {n.key for n in mine(ns) if n.status == "resolved" and n.received >= healed}

        def firing(ns: list[Notification]) -> set[Key]:
            return {n.key for n in mine(ns) if n.status == "firing"}

        # Alerts still pending at the switch may fire a tick later; they must resolve too.
        seen = self.webhook.wait_until(lambda ns: firing(ns) <= resolved(ns), RESOLVE_TIMEOUT_SECONDS)
        for note in mine(seen):
            if note.status == "firing":
                result.firing.setdefault(note.alertname, []).append(note)
                result.seconds_to_fire.setdefault(note.alertname, note.received - switched)
            elif note.received >= healed:
                result.resolved.setdefault(note.alertname, []).append(note)
                result.seconds_to_resolve[note.alertname] = note.received - healed
        result.still_firing = firing(seen) - resolved(seen)
        return result


# Alerts drilled by breaking a process instead of switching a scenario.
PROCESS_DRILLS = {
    "BlackwellExporterDown": "the exporter process stopped",
    "BlackwellServingDown": "Triton's metrics endpoint gone",
    "BlackwellExporterSourceDown": "Triton's metrics endpoint gone",
    "BlackwellExporterSourceStale": "Triton's metrics endpoint gone",
}
TRITON_EXPORTER = "triton-replay"  # the stack's name for the exporter that reads TritonReplay
TRITON_BODY = Path(__file__).resolve().parents[1] / "fixtures" / "triton" / "python_backend_metrics.txt"


class TritonReplay:
    """Triton's metrics endpoint, replaying what a real tritonserver 2.51 answered (tests/fixtures/triton).

    :meth:`stop` takes it away (the port then refuses connections, as when Triton dies) and
    :meth:`start` brings it back on the same port.
    """

    def __init__(self) -> None:
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self) -> None:
        body = TRITON_BODY.read_bytes()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib naming
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="triton-replay", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def exporter_config(self) -> dict[str, Any]:
        """An exporter that reads only this endpoint (metrics only, no HTTP API), every second."""
        return {"sources": {"nvml": {"enabled": False}, "triton": {
            "enabled": True, "interval": 1, "timeout": 1, "endpoints": [{"url": self.url, "api": False}]}}}


def settle(stack: Stack, timeout: float = 60.0) -> None:
    """Wait until the stack is in its healthy steady state: every exporter scraped, every source up,
    nothing firing.

    Start-up is not steady: processes start, Prometheus restarts twice for the backfill, and on a
    busy 2-core machine that burst can make a poll miss its deadline and page
    BlackwellExporterSource* for a few seconds. Drills and the baseline begin after it.
    """
    firing = 'ALERTS{alertstate="firing"}'
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (len(stack.query("up == 1")) == len(stack.exporters)
                and len(stack.query("blackwell_exporter_source_up == 1")) == len(stack.exporters)
                and not stack.query(firing)):
            # An alert pending from the first evaluations after a restart (a rule group evaluated
            # before the recording rule it reads) would count as inherited by the first drill: let it
            # clear, best effort.
            calm = min(deadline, time.monotonic() + 15.0)
            while stack.query("ALERTS") and time.monotonic() < calm:
                time.sleep(1.0)
            return
        time.sleep(1.0)
    raise AssertionError(f"the stack did not settle in {timeout:g}s: up={stack.query('up')}, "
                         f"firing={stack.query(firing)}")


# -- yesterday ---------------------------------------------------------------------------------

def backfill_yesterday(stack: Stack, profile: str, rules_file: Path, span: float) -> None:
    """Give ``profile``'s box a healthy past, so "tokens/s against yesterday" has a yesterday.

    A fresh stack has no history, and the scaled offset (14m24s) is longer than the whole suite.
    So the box's past is played by the same simulation model, healthy, with the exporter's seed,
    one sample a second for the ``span`` seconds before now; promtool writes it as TSDB blocks.
    The rule the comparison reads (tokens/s per instance) is then evaluated over that past by
    Prometheus itself (``promtool tsdb create-blocks-from rules``), from the mixin's own rule text
    with its one intermediate recording rule inlined (promtool cannot backfill a rule that reads
    another backfilled rule). Prometheus restarts twice to read the new blocks.
    """
    instance = stack.instance(profile)
    box = PROFILES[profile]
    model = BoxModel(box, SCENARIOS[DEFAULT_SCENARIO], seed=0, start=0.0)
    now = int(time.time())
    begin = now - int(span)
    labels = f'job="{MixinConfig().job}",instance="{instance}",model="{box.model}"'
    lines = []
    for step in range(int(span)):
        model.advance(float(step))
        lines.append(f"blackwell_serving_generation_tokens_total{{{labels}}} {int(model.output_tokens)} {begin + step}")
    work = stack.directory / "yesterday"
    work.mkdir(exist_ok=True)
    (work / "tokens.om").write_text("\n".join(lines) + "\n# EOF\n")
    promtool = find_binary("promtool")
    subprocess.run([promtool, "tsdb", "create-blocks-from", "-q", "openmetrics", str(work / "tokens.om"),
                    str(stack.prometheus_data)], check=True, capture_output=True)
    stack.restart_prometheus()

    recorded = {r["record"]: r["expr"] for g in yaml.safe_load(rules_file.read_text())["groups"]
                for r in g["rules"] if "record" in r}
    # The intermediate rule's name carries the mixin's selector; the inlined expression carries it too.
    expr = re.sub(re.escape(recording.TOKENS_RATE) + r"(\{[^{}]*\})?", lambda _: f"({recorded[recording.TOKENS_RATE]})",
                  recorded[recording.INSTANCE_TOKENS_RATE])
    (work / "rules.yaml").write_text(yaml.safe_dump({"groups": [
        {"name": "yesterday", "rules": [{"record": recording.INSTANCE_TOKENS_RATE, "expr": expr}]}]}))
    assert stack.prometheus is not None
    subprocess.run([promtool, "tsdb", "create-blocks-from", "-q", "rules", f"--start={begin}",
                    f"--end={now - 1}", f"--url={stack.prometheus.url}", f"--output-dir={stack.prometheus_data}",
                    "--eval-interval=1s", str(work / "rules.yaml")], check=True, capture_output=True)
    stack.restart_prometheus()
