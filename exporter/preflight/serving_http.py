"""Facts from the serving runtime's own HTTP endpoints: readiness and requests served so far.

Triton: ``/v2/health/ready`` (200 ready) and the statistics API ``/v2/models/stats`` (successful
inferences per model since load). trtllm-serve: ``/health`` (200, 503 after a fatal engine
error) and ``/prometheus/metrics`` (request counters, with or without the ``trtllm_`` prefix).
"""

from __future__ import annotations

from exporter import promtext
from exporter.preflight.facts import ServingFacts
from exporter.preflight.httpget import MAX_BYTES, get
from exporter.promtext import PromParseError
from exporter.sources.base import PollError
from exporter.sources.triton import parse_stats


def triton(url: str, timeout: float) -> ServingFacts:
    base = url.rstrip("/")
    health = get(f"{base}/v2/health/ready", timeout)
    served, detail = None, ""
    stats = get(f"{base}/v2/models/stats", timeout)
    if stats.status == 200:
        try:
            models = parse_stats(stats.body)
            served = float(sum(m["inference_stats"]["success"]["count"] for m in models))
            detail = f"successful requests over {len(models)} model(s) from /v2/models/stats"
        except PollError as exc:
            detail = str(exc)
    else:
        detail = f"/v2/models/stats: {stats.describe()}"
    return ServingFacts("triton", base, None if health.status is None else health.status == 200,
                        f"/v2/health/ready: {health.describe()}", served, detail)


# Counters trtllm-serve's /prometheus/metrics may carry, in order of preference (older builds lack the prefix).
_TRTLLM_REQUEST_SAMPLES = ("trtllm_request_success_total", "request_success_total",
                           "trtllm_e2e_request_latency_seconds_count", "e2e_request_latency_seconds_count")


def trtllm_serve(url: str, timeout: float) -> ServingFacts:
    base = url.rstrip("/")
    health = get(f"{base}/health", timeout)
    served, detail = None, ""
    metrics = get(f"{base}/prometheus/metrics", timeout)
    if metrics.status == 200:
        totals: dict[str, float] = {}
        try:
            for sample in promtext.parse(metrics.body, max_bytes=MAX_BYTES).samples:
                if sample.name in _TRTLLM_REQUEST_SAMPLES:
                    totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        except PromParseError as exc:
            detail = f"/prometheus/metrics is not Prometheus text: {exc}"
        found = next((name for name in _TRTLLM_REQUEST_SAMPLES if name in totals), None)
        if found is not None:
            served, detail = totals[found], f"sum of {found} from /prometheus/metrics"
        elif not detail:
            detail = "/prometheus/metrics has no request counter (start trtllm-serve with return_perf_metrics: true)"
    else:
        detail = f"/prometheus/metrics: {metrics.describe()}"
    return ServingFacts("trtllm-serve", base, None if health.status is None else health.status == 200,
                        f"/health: {health.describe()}", served, detail)
