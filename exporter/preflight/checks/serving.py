"""Serving checks: the runtime says ready, and it has served enough requests to be warmed up."""

from __future__ import annotations

from exporter.preflight.facts import ServingFacts
from exporter.preflight.result import CheckResult, failed, passed, skipped
from exporter.preflight.settings import PreflightConfig

_NONE = "no serving endpoint configured (set triton_url or trtllm_serve_url)"


def serving_health(servers: list[ServingFacts], cfg: PreflightConfig) -> CheckResult:
    name = "serving_health"
    if not servers:
        return skipped(name, _NONE)
    evidence = "; ".join(f"{s.runtime} {s.endpoint}: {s.detail}" for s in servers)
    if all(s.ready for s in servers):
        return passed(name, evidence)
    return failed(name, evidence,
                  "Read the server log: an engine that failed to load keeps it not ready "
                  "(Triton: /v2/models/<model>/ready names the model; trtllm-serve: /health 503 after a fatal error).")


def serving_warmup(servers: list[ServingFacts], cfg: PreflightConfig) -> CheckResult:
    """More than ``warmup_min_requests`` served since start: caches and autotuned kernels are warm."""
    name = "serving_warmup"
    if not servers:
        return skipped(name, _NONE)
    need = cfg.warmup_min_requests
    counted = [s for s in servers if s.requests_served is not None]
    if not counted:
        return skipped(name, "; ".join(f"{s.runtime}: {s.requests_detail}" for s in servers))
    served = sum(s.requests_served or 0.0 for s in counted)
    evidence = f"{served:g} requests served since start ({'; '.join(s.requests_detail for s in counted)})"
    if served > need:
        return passed(name, f"{evidence} > {need}")
    return failed(name, f"{evidence}, need more than {need}",
                  f"Send at least {need + 1} representative requests (real prompt lengths, full batch sizes) "
                  "before taking traffic: the first ones pay engine and kernel warm-up.")
