"""Prometheus checks, through its HTTP API: it scrapes this exporter (target up), it scrapes the
serving runtime's metrics (Triton nv_* or trtllm-serve trtllm_* series present), and the rules
generated from the mixin are loaded.

"This exporter" is the target whose instance label is ``exporter_instance`` when that is set;
otherwise any active target whose scrape URL points at this host (its names and addresses, or
loopback) on ``exporter_port``.
"""

from __future__ import annotations

import socket
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from exporter.preflight.httpget import get
from exporter.preflight.result import CheckResult, failed, passed, skipped, warned
from exporter.preflight.settings import PreflightConfig

_SERVING_SERIES = {"triton": "nv_", "trtllm-serve": "trtllm_"}


class PrometheusError(Exception):
    pass


def _api(cfg: PreflightConfig, path: str, **params: str) -> Any:
    assert cfg.prometheus_url is not None
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    answer = get(f"{cfg.prometheus_url.rstrip('/')}/api/v1/{path}{query}", cfg.http_timeout)
    if answer.status != 200:
        raise PrometheusError(f"{path}: {answer.describe()}")
    try:
        body = answer.json()
    except ValueError as exc:
        raise PrometheusError(f"{path}: not JSON: {exc}") from None
    if body.get("status") != "success":
        raise PrometheusError(f"{path}: {body.get('error', body.get('status'))}")
    return body["data"]


def local_names() -> set[str]:
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            names.add(str(info[4][0]))
    except OSError:
        pass
    return {n.lower() for n in names if n}


def _is_this_exporter(target: dict[str, Any], cfg: PreflightConfig, here: set[str]) -> bool:
    if cfg.exporter_instance is not None:
        return target.get("labels", {}).get("instance") == cfg.exporter_instance
    url = urllib.parse.urlsplit(target.get("scrapeUrl", ""))
    return url.port == cfg.exporter_port and (url.hostname or "").lower() in here


def prometheus_scrapes_exporter(cfg: PreflightConfig, job: str) -> CheckResult:
    """``job`` is the mixin's job name: the exporter-down alert selects up{job=...}."""
    name = "prometheus_scrapes_exporter"
    if cfg.prometheus_url is None:
        return skipped(name, "no prometheus_url configured")
    try:
        targets = _api(cfg, "targets", state="active")["activeTargets"]
    except PrometheusError as exc:
        return failed(name, f"{cfg.prometheus_url}: {exc}", "Check prometheus_url and that Prometheus is running.")
    here = local_names()
    ours = [t for t in targets if _is_this_exporter(t, cfg, here)]
    wanted = cfg.exporter_instance or f"port {cfg.exporter_port} on this host"
    if not ours:
        return failed(name, f"none of {len(targets)} active targets is this exporter ({wanted})",
                      "Add this exporter to a scrape job (see deploy/ for an example), or set exporter_instance.")
    up = [t for t in ours if t.get("health") == "up"]
    listed = ", ".join(f"{t['labels'].get('job')}/{t['labels'].get('instance')} {t.get('health')}" for t in ours)
    if not up:
        errors = "; ".join(t.get("lastError", "") for t in ours if t.get("lastError"))
        return failed(name, f"target(s) {listed}: {errors or 'not up'}",
                      "Prometheus cannot scrape the exporter: check the listen address, firewall, TLS and basic auth.")
    if not any(t["labels"].get("job") == job for t in up):
        return warned(name, f"target(s) {listed}, but the generated rules expect job {job!r}",
                      f"Scrape the exporter under job_name {job!r}, or set mixin.job and regenerate the rules; "
                      "otherwise the exporter-down alert never fires for this target.")
    return passed(name, f"target(s) {listed}")


def prometheus_scrapes_serving(cfg: PreflightConfig) -> CheckResult:
    name = "prometheus_scrapes_serving"
    if cfg.prometheus_url is None:
        return skipped(name, "no prometheus_url configured")
    found: list[str] = []
    try:
        for runtime, prefix in _SERVING_SERIES.items():
            series = _api(cfg, "query", query=f'count by (job, instance) ({{__name__=~"{prefix}.+"}})')["result"]
            found += [f"{runtime} {s['metric'].get('job')}/{s['metric'].get('instance')} "
                      f"({int(float(s['value'][1]))} series)" for s in series]
    except PrometheusError as exc:
        return failed(name, f"{cfg.prometheus_url}: {exc}", "Check prometheus_url and that Prometheus is running.")
    if not found:
        return failed(name, "no nv_* (Triton) or trtllm_* (trtllm-serve) series in Prometheus",
                      "Add a scrape job for Triton's metrics port (8002, /metrics) or trtllm-serve's /prometheus/metrics.")
    return passed(name, "; ".join(found))


def expected_rules(rules_dir: Path) -> set[str]:
    """Alert and recording rule names in the generated rule files."""
    names: set[str] = set()
    for path in sorted(rules_dir.glob("*.y*ml")):
        data = yaml.safe_load(path.read_text()) or {}
        for group in data.get("groups", []):
            for rule in group.get("rules", []):
                names.add(rule.get("alert") or rule.get("record"))
    names.discard(None)  # type: ignore[arg-type]
    return names


def prometheus_rules_loaded(cfg: PreflightConfig) -> CheckResult:
    name = "prometheus_rules_loaded"
    if cfg.prometheus_url is None:
        return skipped(name, "no prometheus_url configured")
    if not cfg.rules_dir.is_dir():
        return skipped(name, f"rules_dir {cfg.rules_dir} not found: nothing to compare with")
    try:
        want = expected_rules(cfg.rules_dir)
    except (OSError, yaml.YAMLError) as exc:
        return failed(name, f"cannot read {cfg.rules_dir}: {exc}", "Regenerate with blackwell-exporter generate.")
    if not want:
        return skipped(name, f"no rules in {cfg.rules_dir}")
    try:
        groups = _api(cfg, "rules")["groups"]
    except PrometheusError as exc:
        return failed(name, f"{cfg.prometheus_url}: {exc}", "Check prometheus_url and that Prometheus is running.")
    loaded = {rule.get("name") for group in groups for rule in group.get("rules", [])}
    missing = sorted(want - loaded)
    if missing:
        shown = ", ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
        return failed(name, f"{len(want) - len(missing)} of {len(want)} rules from {cfg.rules_dir} loaded; "
                      f"missing: {shown}",
                      f"Add {cfg.rules_dir}/*.yaml to rule_files in prometheus.yml and reload Prometheus.")
    return passed(name, f"all {len(want)} rules from {cfg.rules_dir} loaded")
