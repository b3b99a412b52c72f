"""Triton Inference Server (TensorRT-LLM backend, Python backend or LLM-API model) under catalog names.

Per endpoint, each poll reads:

- the metrics endpoint (``/metrics`` on port 8002): request counters and cumulative durations,
  pending requests, the first-response histogram when Triton has it, and the ``nv_trt_llm_*`` /
  ``nv_llm_*`` families a TensorRT-LLM model registers;
- the HTTP API (port 8000, unless ``api: false``): ``/v2/health/live``, ``/v2/health/ready``,
  ``/v2`` (server version), ``/v2/models/stats`` (which models exist, and cumulative success and
  queue time with counts: exported as ``_sum``/``_count``-only latency histograms),
  ``/v2/models/<m>/versions/<v>/ready`` per model, and each model's config once (its backend,
  which tells the flavour apart).

The statistics API is read with the same bounded GET as everything else (it is plain JSON), so
the size cap, deadline and TLS settings hold for it too; ``tritonclient`` is not needed at run
time.

Flavour (``blackwell_serving_runtime_info``): a model on the ``tensorrtllm`` backend means the
C++ TensorRT-LLM backend; ``nv_trt_llm_*`` families without one mean the TensorRT-LLM Python
backend; a Python-backend model without any of those families is taken to be the LLM-API
(PyTorch) model, which registers none; anything else is ``unknown``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from pydantic import Field

from exporter.promtext import Exposition
from exporter.snapshot import Family, HistogramValue
from exporter.sources.base import PollError, SourceConfig
from exporter.sources.http_upstream import Endpoint, json_object
from exporter.sources.serving_endpoints import (
    FamilyBuilder,
    Reading,
    RetiredTotals,
    ServingConfig,
    ServingSource,
    histograms_by_model,
)

RUNTIME = "triton"

_COUNTS = {
    "nv_inference_request_success": "blackwell_serving_request_success_total",
    "nv_inference_count": "blackwell_serving_inference_count_total",
    "nv_inference_exec_count": "blackwell_serving_execution_count_total",
}
_DURATIONS_US = {
    "nv_inference_request_duration_us": "blackwell_serving_request_duration_seconds_total",
    "nv_inference_queue_duration_us": "blackwell_serving_queue_duration_seconds_total",
}
_PHASES_US = {
    "nv_inference_compute_input_duration_us": "input",
    "nv_inference_compute_infer_duration_us": "infer",
    "nv_inference_compute_output_duration_us": "output",
}
# nv_trt_llm family -> (category label, {upstream value: our state})
_BATCH = {
    "nv_trt_llm_request_metrics": ("request_type", {s: s for s in ("active", "max", "scheduled", "context",
                                                                   "waiting")}),
    "nv_trt_llm_inflight_batcher_metrics": ("inflight_batcher_specific_metric",
                                            {"generation_requests": "generation", "paused_requests": "paused"}),
}
_KV_BLOCKS = {"max": "max", "used": "used", "free": "free"}


class TritonEndpoint(Endpoint):
    url: str = Field("http://127.0.0.1:8002/metrics", description="Triton's metrics endpoint")
    api: bool = Field(True, description="also read health, readiness, statistics and model config from the HTTP API")
    api_url: str | None = Field(None, description="Triton's HTTP API base URL; default: the metrics URL's "
                                                  "scheme and host on port 8000")

    def api_base(self) -> str:
        if self.api_url:
            return self.api_url.rstrip("/")
        parts = urlsplit(self.url)
        host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
        return f"{parts.scheme}://{host}:8000"


class TritonConfig(ServingConfig):
    endpoints: list[TritonEndpoint] = Field(  # type: ignore[assignment]
        default_factory=lambda: [TritonEndpoint()],
        description="Triton servers to read; each may set url, api_url, timeout, interval, tls_verify, ca_file, "
                    "max_bytes")


@dataclass
class TritonApi:
    """What the HTTP API said during one read."""

    live: bool = False
    ready: bool = False
    version: str = ""
    stats: list[dict[str, Any]] = field(default_factory=list)
    model_ready: dict[tuple[str, str], bool] = field(default_factory=dict)
    backends: dict[str, str] = field(default_factory=dict)  # model name -> backend


def flavour(metrics: Exposition | None, backends: dict[str, str]) -> str:
    if "tensorrtllm" in backends.values():
        return "trtllm-cpp-backend"
    if metrics is None:
        return "unknown"  # which families exist is what tells the rest apart
    if any(n.startswith("nv_trt_llm_") for n in metrics.names()):
        return "python-backend" if "python" in backends.values() else "unknown"
    if "python" in backends.values():
        return "llmapi"
    return "unknown"


def triton_families(url: str, metrics: Exposition | None, api: TritonApi | None,
                    retired: RetiredTotals | None = None) -> list[Family]:
    """Catalog families for one endpoint. ``metrics`` is None when the metrics endpoint failed;
    ``retired`` (kept per endpoint by the source) keeps counters summed over versions rising."""
    out = FamilyBuilder(url)
    out.add("blackwell_serving_up", (RUNTIME,), int(metrics is not None))
    if api is not None:
        out.add("blackwell_serving_live", (RUNTIME,), int(api.live))
        out.add("blackwell_serving_ready", (RUNTIME,), int(api.ready))
        out.add("blackwell_serving_runtime_info",
                (RUNTIME, flavour(metrics, api.backends), api.version or "unknown"), 1)
        for (model, version), ready in sorted(api.model_ready.items()):
            out.add("blackwell_serving_model_ready", (model, version), int(ready))
        _stats_latency(out, api.stats)
    elif metrics is not None:
        out.add("blackwell_serving_runtime_info", (RUNTIME, flavour(metrics, {}), "unknown"), 1)
    if metrics is not None:
        _request_metrics(out, metrics)
        _trtllm_metrics(out, metrics)
    return out.families(retired)


def _mv(labels: dict[str, str]) -> tuple[str, str]:
    return labels.get("model", ""), labels.get("version", "")


def _request_metrics(out: FamilyBuilder, metrics: Exposition) -> None:
    for upstream, ours in _COUNTS.items():
        for s in metrics.named(upstream):
            out.add(ours, _mv(s.labels), s.value)
    for s in metrics.named("nv_inference_request_failure"):
        out.add("blackwell_serving_request_failure_total", (*_mv(s.labels), s.labels.get("reason", "unspecified")),
                s.value)
    for upstream, ours in _DURATIONS_US.items():
        for s in metrics.named(upstream):
            out.add(ours, _mv(s.labels), s.value / 1e6)
    for upstream, phase in _PHASES_US.items():
        for s in metrics.named(upstream):
            out.add("blackwell_serving_compute_duration_seconds_total", (*_mv(s.labels), phase), s.value / 1e6)
    for s in metrics.named("nv_inference_pending_request_count"):
        out.add("blackwell_serving_pending_requests", _mv(s.labels), s.value)
    ttft = histograms_by_model(metrics, "nv_inference_first_response_histogram_ms", divisor=1000)
    for model, parts in ttft.items():
        for part, hist in parts.items():
            out.add("blackwell_serving_ttft_seconds", (model,), hist, part=part)


def _trtllm_metrics(out: FamilyBuilder, metrics: Exposition) -> None:
    for upstream, (category, states) in _BATCH.items():
        for s in metrics.named(upstream):
            state = states.get(s.labels.get(category, ""))
            if state is not None:
                out.add("blackwell_serving_batch_requests", (s.labels.get("model", ""), state), s.value)
    for s in metrics.named("nv_trt_llm_kv_cache_block_metrics"):
        kind, model = s.labels.get("kv_cache_block_type", ""), s.labels.get("model", "")
        if kind in _KV_BLOCKS:
            out.add("blackwell_serving_kv_cache_blocks", (model, _KV_BLOCKS[kind]), s.value)
        elif kind == "tokens_per":
            out.add("blackwell_serving_kv_cache_tokens_per_block", (model,), s.value, merge=max)
        elif kind == "reused":
            out.add("blackwell_serving_kv_cache_reused_blocks", (model,), s.value)
    for s in metrics.named("nv_trt_llm_runtime_memory_metrics"):
        memory_type = s.labels.get("memory_type")
        if memory_type:
            out.add("blackwell_serving_runtime_memory_bytes", (s.labels.get("model", ""), memory_type), s.value)
    for s in metrics.named("nv_trt_llm_general_metrics"):
        if s.labels.get("general_type") == "iteration_counter":
            out.add("blackwell_serving_iterations_total", (s.labels.get("model", ""),), s.value,
                    part=s.labels.get("version", ""))
    for family, counter in (("nv_llm_input_token_len", "blackwell_serving_prompt_tokens_total"),
                            ("nv_llm_output_token_len", "blackwell_serving_generation_tokens_total")):
        for hist in metrics.histograms(family):
            # The histogram's _sum is the running total of tokens: a counter, so tokens/s is a rate().
            out.add(counter, (hist.labels.get("model", ""),), hist.sum, part=hist.labels.get("version", ""))
    for model, parts in histograms_by_model(metrics, "nv_llm_input_token_len").items():
        for part, hist in parts.items():
            out.add("blackwell_serving_prompt_length_tokens", (model,), hist, part=part)


def _stats_latency(out: FamilyBuilder, stats: list[dict[str, Any]]) -> None:
    """Success and queue time from the statistics API: sums and counts only (no buckets exist),
    added up over a model's versions, each version a part so unloading one loses nothing."""
    names = {"success": "blackwell_serving_e2e_latency_seconds", "queue": "blackwell_serving_queue_time_seconds"}
    for kind, name in names.items():
        for entry in sorted(stats, key=lambda e: (e["name"], e["version"])):
            inference = entry["inference_stats"][kind]
            out.add(name, (entry["name"],), HistogramValue.sum_count_only(inference["ns"] / 1e9, inference["count"]),
                    part=entry["version"])


def parse_stats(body: bytes) -> list[dict[str, Any]]:
    """The statistics API's JSON, checked field by field; PollError(reason malformed) when it is not."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise PollError(f"statistics: not JSON ({exc})", "malformed") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_stats"), list):
        raise PollError("statistics: no model_stats list", "malformed")
    entries = []
    for i, entry in enumerate(data["model_stats"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise PollError(f"statistics: model_stats[{i}] has no name", "malformed")
        inference = entry.get("inference_stats")
        if not isinstance(inference, dict):
            raise PollError(f"statistics: {entry['name']} has no inference_stats", "malformed")
        checked: dict[str, dict[str, float]] = {}
        for kind in ("success", "fail", "queue"):
            item = inference.get(kind)
            if not isinstance(item, dict):
                raise PollError(f"statistics: {entry['name']} has no inference_stats.{kind}", "malformed")
            checked[kind] = {"count": _int(item.get("count"), entry["name"], kind),
                             "ns": _int(item.get("ns"), entry["name"], kind)}
        entries.append({"name": entry["name"], "version": str(entry.get("version", "")),
                        "inference_stats": checked})
    return entries


def _int(value: Any, model: str, kind: str) -> int:
    # gRPC's JSON form writes 64-bit integers as strings; HTTP writes numbers.
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise PollError(f"statistics: {model} inference_stats.{kind} is not a count and a duration", "malformed")
    try:
        number = int(value)
    except ValueError:
        raise PollError(f"statistics: {model} inference_stats.{kind} has {value!r}", "malformed") from None
    if not 0 <= number < 2**64:
        raise PollError(f"statistics: {model} inference_stats.{kind} is outside 0..2^64", "malformed")
    return number


class TritonSource(ServingSource[TritonEndpoint]):
    name: ClassVar[str] = "triton"
    stand_in: ClassVar[str | None] = "simulated"
    config_model: ClassVar[type[SourceConfig]] = TritonConfig

    def __init__(self, config: TritonConfig, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config, clock)
        # Per endpoint URL: server version and model backends, read once while the server stays up.
        self._versions: dict[str, str] = {}
        self._backends: dict[str, dict[str, str]] = {}

    def close(self) -> None:
        super().close()
        self._versions.clear()
        self._backends.clear()

    def unanswered(self, endpoint: TritonEndpoint) -> list[Family]:
        return triton_families(endpoint.url, None, TritonApi() if endpoint.api else None)

    def read(self, endpoint: TritonEndpoint, timeout: float) -> Reading:
        deadline = self._clock() + timeout
        metrics, error = self.read_exposition(endpoint, deadline)
        api = None
        if endpoint.api:
            try:
                api = self._read_api(endpoint, deadline)
            except PollError as exc:
                error = error or exc
                api = TritonApi()
        if error is not None:
            # A server that failed may come back as another build with other models: ask again.
            self._versions.pop(endpoint.url, None)
            self._backends.pop(endpoint.url, None)
        return Reading(triton_families(endpoint.url, metrics, api, self.retired_totals(endpoint.url)), error)

    def _read_api(self, endpoint: TritonEndpoint, deadline: float) -> TritonApi:
        base = endpoint.api_base()
        api = TritonApi()
        api.live = self.fetch(endpoint, f"{base}/v2/health/live", deadline, allow_status=True).status == 200
        api.ready = self.fetch(endpoint, f"{base}/v2/health/ready", deadline, allow_status=True).status == 200
        if endpoint.url not in self._versions:
            self._versions[endpoint.url] = _server_version(self.fetch(endpoint, f"{base}/v2", deadline).body)
        api.version = self._versions[endpoint.url]
        api.stats = parse_stats(self.fetch(endpoint, f"{base}/v2/models/stats", deadline).body)
        backends = self._backends.setdefault(endpoint.url, {})
        for entry in api.stats:
            model, version = entry["name"], entry["version"]
            path = f"{base}/v2/models/{quote(model, safe='')}" + (f"/versions/{quote(version, safe='')}"
                                                                   if version else "")
            api.model_ready[(model, version)] = self.fetch(endpoint, f"{path}/ready", deadline,
                                                          allow_status=True).status == 200
            if model not in backends:
                config = self.fetch(endpoint, f"{path}/config", deadline, allow_status=True)
                if config.status == 200:
                    backends[model] = _backend(config.body)
        api.backends = dict(backends)
        return api


def _server_version(body: bytes) -> str:
    data = json_object(body)
    if data is None:
        raise PollError("server metadata (/v2) is not a JSON object", "malformed")
    version = data.get("version")
    return version if isinstance(version, str) and version else "unknown"


def _backend(body: bytes) -> str:
    """The model config's backend (or platform, for ensembles); empty when the config is unreadable."""
    data = json_object(body) or {}
    backend = data.get("backend") or data.get("platform") or ""
    return backend if isinstance(backend, str) else ""
