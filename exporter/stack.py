"""A local monitoring stack on loopback: simulated exporters, Prometheus and Alertmanager as subprocesses.

Used by ``blackwell-exporter demo`` and by the e2e fault drills. Every process gets a free
127.0.0.1 port, its own directory for config, data and log, and its own session (so a Ctrl-C
in the terminal reaches only the parent, which then stops the children in order).
Prometheus and Alertmanager are Debian's binaries (``apt-get install prometheus
prometheus-alertmanager``); nothing here needs a container engine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# How often Prometheus scrapes and evaluates rules. One second keeps a drill to seconds; the
# alert `for:` durations and windows are shrunk by the time scale.
TICK_SECONDS = 1.0
# How often the simulated source polls. Its poll must finish within the interval, and a 1 s
# deadline is missed on a loaded 2-core CI machine often enough to page BlackwellExporterSource*
# (3 s `for:` at the drill scale); 2 s leaves room, and every scaled window still spans a poll.
POLL_SECONDS = 2.0
# Rules as drills and the demo run them: 100x faster (5m -> 3s, 10m -> 6s, 1h -> 36s, 1d -> 14m24s).
# Production timing stays covered by the promtool unit tests of the unscaled rules.
DRILL_TIME_SCALE = 0.01
START_TIMEOUT_SECONDS = 30.0


class StackError(RuntimeError):
    """A component could not be found or did not come up; the message says which and why."""


def find_binary(*names: str) -> str:
    """The first of ``names`` on PATH (Debian calls Alertmanager ``prometheus-alertmanager``)."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise StackError(f"none of {', '.join(names)} is on PATH; install Debian's prometheus and "
                     "prometheus-alertmanager packages (./dev test does)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post(url: str, payload: dict[str, Any], timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Service:
    """One child process serving HTTP on 127.0.0.1:``port``; its output goes to ``log_path``."""

    name: str
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, path: str, timeout: float = START_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StackError(f"{self.name} exited with status {self.process.returncode}:\n{self.log_tail()}")
            try:
                if http_get(self.url + path, timeout=1.0)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise StackError(f"{self.name} not ready at {self.url}{path} after {timeout:g}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _spawn(name: str, argv: list[str], directory: Path, ready_path: str, port: int,
           env: dict[str, str] | None = None) -> Service:
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=directory, env={**os.environ, **(env or {})}, start_new_session=True)
    service = Service(name, port, process, log_path)
    try:
        service.wait_ready(ready_path)
    except BaseException:
        service.stop()
        raise
    return service


def start_exporter(directory: Path, profile: str, scenario: str = "healthy",
                   interval: float = POLL_SECONDS, port: int | None = None) -> Service:
    """The exporter in simulation mode (this Python, this package), polling every ``interval`` seconds.

    The poll timeout is the interval too (the most the config allows): a poll takes ~10 ms, so
    only a starved machine misses it, and then ``blackwell_exporter_source_up`` says so.
    """
    port = port or free_port()
    argv = [sys.executable, "-m", "exporter", "run", "--simulate", profile, "--scenario", scenario,
            "--listen", f"127.0.0.1:{port}"]
    env = {"BLACKWELL_EXPORTER_SOURCES__SIMULATED__INTERVAL": f"{interval:g}",
           "BLACKWELL_EXPORTER_SOURCES__SIMULATED__TIMEOUT": f"{interval:g}"}
    return _spawn(f"exporter-{profile}", argv, directory / f"exporter-{profile}", "/readyz", port, env)


def start_configured_exporter(directory: Path, name: str, config: dict[str, Any]) -> Service:
    """The exporter with its own config file (real sources, no simulation), on a free loopback port."""
    directory = directory / f"exporter-{name}"
    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "config.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    argv = [sys.executable, "-m", "exporter", "run", "--config", str(config_file), "--listen", f"127.0.0.1:{port}"]
    return _spawn(f"exporter-{name}", argv, directory, "/readyz", port)


def prometheus_config(targets: list[str], alertmanager: str, rule_files: list[Path],
                      interval: float = TICK_SECONDS, job: str | None = None) -> dict[str, Any]:
    """Scrape each exporter (``host:port``) under the mixin's job name, send alerts to ``alertmanager``."""
    from exporter.mixin.config import MixinConfig

    return {
        "global": {"scrape_interval": f"{interval:g}s", "scrape_timeout": f"{interval:g}s",
                   "evaluation_interval": f"{interval:g}s"},
        "rule_files": [str(path) for path in rule_files],
        "alerting": {"alertmanagers": [{"api_version": "v2", "static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [{"job_name": job or MixinConfig().job, "static_configs": [{"targets": targets}]}],
    }


def start_prometheus(directory: Path, config: dict[str, Any], port: int | None = None) -> Service:
    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    port = port or free_port()
    argv = [find_binary("prometheus"), f"--config.file={config_file}", f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle",
            # Resolved and re-fired alerts reach Alertmanager within a tick instead of a minute.
            f"--rules.alert.resend-delay={TICK_SECONDS:g}s", "--log.level=warn"]
    return _spawn("prometheus", argv, directory, "/-/ready", port)


def alertmanager_config(webhook_url: str | None, interval: float = TICK_SECONDS) -> dict[str, Any]:
    """Route every alert on its own (group_by ``...``) at once; ``webhook_url`` gets firing and resolved."""
    receiver: dict[str, Any] = {"name": "drill"}
    if webhook_url:
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
    return {
        "route": {"receiver": "drill", "group_by": ["..."], "group_wait": f"{interval:g}s",
                  "group_interval": f"{interval:g}s", "repeat_interval": "1h"},
        "receivers": [receiver],
    }


def start_alertmanager(directory: Path, config: dict[str, Any]) -> Service:
    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    argv = [find_binary("alertmanager", "prometheus-alertmanager"), f"--config.file={config_file}",
            f"--storage.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=", "--log.level=warn"]
    return _spawn("alertmanager", argv, directory, "/-/ready", port)


def write_rules(path: Path, time_scale: float) -> Path:
    """The mixin's alert and recording rules with every ``for:`` and range window shrunk by ``time_scale``."""
    from exporter.mixin.config import MixinConfig
    from exporter.mixin.rules import rule_groups

    path.write_text(yaml.safe_dump({"groups": rule_groups(MixinConfig(), time_scale)}, sort_keys=False))
    return path


def history_needed(rules_file: Path) -> dict[str, float]:
    """Alert -> how far back (seconds) its rule looks with ``offset``: a fresh stack has no such past."""
    from exporter.mixin.promql import seconds

    needed: dict[str, float] = {}
    for group in yaml.safe_load(rules_file.read_text())["groups"]:
        for rule in group["rules"]:
            offsets = [seconds(d) for d in re.findall(r"\boffset\s+(\w+)", rule.get("expr", ""))]
            if "alert" in rule and offsets:
                needed[rule["alert"]] = max(needed.get(rule["alert"], 0.0), *offsets)
    return needed


@dataclass
class Stack:
    """One exporter per simulation profile, one Alertmanager, then one Prometheus scraping them all.

    Prometheus starts last, when every target and the Alertmanager already answer, so its first
    rule evaluations see real data instead of a moment of ``up == 0``.
    """

    directory: Path
    exporters: dict[str, Service] = field(default_factory=dict)
    prometheus: Service | None = None
    alertmanager: Service | None = None
    prometheus_config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, directory: Path, profiles: list[str], rule_files: list[Path],
              webhook_url: str | None = None, scenario: str = "healthy",
              configured: dict[str, dict[str, Any]] | None = None) -> Stack:
        """``configured``: more exporters, name -> config file contents, scraped beside the simulated ones."""
        stack = cls(directory)
        try:
            for profile in profiles:
                stack.exporters[profile] = start_exporter(directory, profile, scenario)
            for name, config in (configured or {}).items():
                stack.exporters[name] = start_configured_exporter(directory, name, config)
            stack.start_monitoring(rule_files, webhook_url)
        except BaseException:
            stack.stop()
            raise
        return stack

    def start_monitoring(self, rule_files: list[Path], webhook_url: str | None) -> None:
        """Alertmanager, then Prometheus scraping every exporter started so far with ``rule_files``."""
        self.alertmanager = start_alertmanager(self.directory / "alertmanager", alertmanager_config(webhook_url))
        targets = [self.instance(name) for name in self.exporters]
        self.prometheus_config = prometheus_config(targets, f"127.0.0.1:{self.alertmanager.port}", rule_files)
        self.prometheus = start_prometheus(self.directory / "prometheus", self.prometheus_config)

    def instance(self, name: str) -> str:
        """The ``instance`` label Prometheus gives the exporter simulating profile ``name`` (or configured as it)."""
        return f"127.0.0.1:{self.exporters[name].port}"

    def restart_exporter(self, profile: str) -> None:
        """Start a stopped exporter again on its old port, so Prometheus finds it under the same instance."""
        old = self.exporters[profile]
        old.stop()
        self.exporters[profile] = start_exporter(self.directory, profile, port=old.port)

    @property
    def prometheus_data(self) -> Path:
        """Prometheus's TSDB directory (blocks written here are read at the next start)."""
        return self.directory / "prometheus" / "data"

    def restart_prometheus(self) -> None:
        """Stop and start Prometheus on its port and data, so it reads blocks added to its TSDB meanwhile."""
        assert self.prometheus is not None
        port = self.prometheus.port
        self.prometheus.stop()
        self.prometheus = start_prometheus(self.directory / "prometheus", self.prometheus_config, port)

    def services(self) -> list[Service]:
        return [*self.exporters.values(), *(s for s in (self.alertmanager, self.prometheus) if s is not None)]

    def stop(self) -> None:
        """Prometheus first, so it does not page about exporters that are going away."""
        for service in reversed(self.services()):
            service.stop()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_scenario(self, profile: str, name: str) -> None:
        status, body = http_post(f"{self.exporters[profile].url}/-/scenario", {"scenario": name})
        if status != 200:
            raise ValueError(body.decode(errors="replace").strip())

    def active_alerts(self) -> list[dict[str, Any]]:
        """What Alertmanager holds now (API v2): firing alerts, each with labels, annotations and startsAt."""
        assert self.alertmanager is not None
        status, body = http_get(f"{self.alertmanager.url}/api/v2/alerts?active=true")
        if status != 200:
            raise StackError(f"Alertmanager answered {status}: {body[:200]!r}")
        return json.loads(body)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant PromQL query against the stack's Prometheus; the result vector."""
        assert self.prometheus is not None
        status, body = http_get(f"{self.prometheus.url}/api/v1/query?query={urllib.parse.quote(expr)}")
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise StackError(f"query {expr!r} failed: {answer.get('error', status)}")
        return answer["data"]["result"]
