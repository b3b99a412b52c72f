"""``blackwell-exporter demo``: watch a simulated fault become a page, on this machine, in seconds.

Starts a simulated exporter, Debian's Prometheus with the mixin's rules (time-scaled as the
fault drills run them) and Alertmanager, all on loopback ports; prints their URLs; reads
scenario names from stdin (or takes them by curl) and prints every alert Alertmanager starts
or stops holding. Ctrl-C (or ``quit``) stops all three processes.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from exporter.sources.simulated.profiles import PROFILES
from exporter.sources.simulated.scenarios import SCENARIOS
from exporter.sources.simulated.source import check_scenario_fits
from exporter.stack import DRILL_TIME_SCALE, TICK_SECONDS, Stack, StackError, history_needed, write_rules

# Labels every alert has; the rest say where the fault is.
_ROUTINE_LABELS = {"alertname", "severity", "instance", "job"}


def describe(alert: dict[str, Any]) -> str:
    """``BlackwellGPULost [critical] gpu=2`` from an Alertmanager API v2 alert."""
    labels = alert["labels"]
    where = " ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in _ROUTINE_LABELS)
    return f"{labels.get('alertname', '?')} [{labels.get('severity', '?')}] {where}".rstrip()


def changes(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> list[str]:
    """Lines for alerts that appeared or went away between two Alertmanager listings (keyed by fingerprint)."""
    lines = []
    for fingerprint, alert in after.items():
        if fingerprint not in before:
            annotations = alert.get("annotations", {})
            lines.append(f"FIRING   {describe(alert)}")
            text = annotations.get("description") or annotations.get("summary")
            if text:
                lines.append(f"         {text}")
            if annotations.get("runbook_url"):
                lines.append(f"         runbook: {annotations['runbook_url']}")
    for fingerprint, alert in before.items():
        if fingerprint not in after:
            lines.append(f"RESOLVED {describe(alert)}")
    return lines


class AlertWatcher(threading.Thread):
    """Polls Alertmanager every tick and prints what changed, until stopped."""

    def __init__(self, stack: Stack, out: TextIO) -> None:
        super().__init__(name="alert-watcher", daemon=True)
        self.stack = stack
        self.out = out
        self.stopped = threading.Event()

    def run(self) -> None:
        held: dict[str, dict[str, Any]] = {}
        while not self.stopped.wait(TICK_SECONDS):
            try:
                now = {a["fingerprint"]: a for a in self.stack.active_alerts()}
            except (OSError, StackError) as exc:
                print(f"(alertmanager not answering: {exc})", file=self.out, flush=True)
                continue
            for line in changes(held, now):
                print(line, file=self.out, flush=True)
            held = now


def _banner(stack: Stack, profile: str, out: TextIO) -> None:
    exporter = stack.exporters[profile]
    assert stack.prometheus is not None and stack.alertmanager is not None
    usable = [s for s in SCENARIOS.values() if not s.needs_c2c or PROFILES[profile].c2c]
    print(f"""
blackwell-exporter demo: simulated {profile} ({PROFILES[profile].description})
  exporter      {exporter.url}/metrics
  Prometheus    {stack.prometheus.url}/alerts   (rules run {1 / DRILL_TIME_SCALE:g}x faster than production)
  Alertmanager  {stack.alertmanager.url}/#/alerts
  logs          {stack.directory}

Type a scenario name and Enter to inject it (or: curl -X POST -H 'Content-Type: application/json' -d '{{"scenario": "NAME"}}' {exporter.url}/-/scenario).
'healthy' clears the fault, 'list' shows the scenarios, 'quit' or Ctrl-C stops everything.
Scenarios: {', '.join(s.name for s in usable)}
""", file=out, flush=True)


def _list(profile: str, out: TextIO) -> None:
    for s in SCENARIOS.values():
        if s.needs_c2c and not PROFILES[profile].c2c:
            continue
        alerts = ", ".join(s.alerts) or "no alert"
        print(f"  {s.name:20} -> {alerts}\n  {'':20}    {s.description}", file=out)
    out.flush()


def _interact(stack: Stack, profile: str, stdin: TextIO, out: TextIO, history: dict[str, float]) -> None:
    """Read commands until ``quit``; at end of input keep running until interrupted."""
    started = time.monotonic()
    for raw in stdin:
        command = raw.strip()
        if not command:
            continue
        if command in ("quit", "exit"):
            return
        if command in ("list", "help", "?"):
            _list(profile, out)
            continue
        try:
            stack.set_scenario(profile, command)
        except ValueError as exc:
            print(f"not switched: {exc}", file=out, flush=True)
            continue
        expected = ", ".join(SCENARIOS[command].alerts) or "nothing"
        print(f"scenario is now {command}; expect: {expected}", file=out, flush=True)
        for alert in SCENARIOS[command].alerts:
            if history.get(alert, 0.0) > time.monotonic() - started:
                print(f"  ({alert} compares with {history[alert]:g}s ago (a scaled 'yesterday'); until the demo "
                      f"has run that long it may not fire)", file=out, flush=True)
    print("stdin closed; inject scenarios with curl, Ctrl-C stops the demo", file=out, flush=True)
    threading.Event().wait()


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(args: argparse.Namespace, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    profile, scenario = args.profile, args.scenario
    if profile not in PROFILES:
        print(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}", file=sys.stderr)
        return 2
    try:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
        check_scenario_fits(SCENARIOS[scenario], profile)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    # SIGTERM ends the demo the way Ctrl-C does, so the child processes are stopped either way.
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="blackwell-demo-") as tmp:
        directory = Path(tmp)
        try:
            rules = write_rules(directory / "rules.yaml", DRILL_TIME_SCALE)
            stack = Stack.start(directory, [profile], [rules], scenario=scenario)
        except StackError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        watcher = AlertWatcher(stack, out)
        with stack:
            try:
                _banner(stack, profile, out)
                watcher.start()
                _interact(stack, profile, stdin, out, history_needed(rules))
            except KeyboardInterrupt:
                print("\nstopping", file=out, flush=True)
            finally:
                watcher.stopped.set()
    return 0
