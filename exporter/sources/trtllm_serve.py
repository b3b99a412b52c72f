"""trtllm-serve (TensorRT-LLM's OpenAI-compatible server) under the same catalog names as Triton.

Per endpoint, each poll reads ``/prometheus/metrics`` (needs ``return_perf_metrics: true``),
``/health`` (503 after a fatal engine error), ``/version`` once, and ``/v1/models`` once when no
model name is known. Both naming generations are read: the first printed ``request_success_total``
and four latency histograms with no prefix; current builds prefix everything with ``trtllm_`` and
add token counters and iteration gauges. The label ``model_name`` is often ``"undefined"`` (the
server sets it so); the model label then comes from the endpoint's ``model`` setting, else from
``/v1/models``.

With ``iteration_stats: true`` the source also reads ``/metrics``, the JSON list of
IterationStats (needs ``enable_iter_perf_stats: true``). **Reading it removes the entries from
the server's queue**: anything else reading ``/metrics`` (a second exporter, a benchmark script)
then sees gaps, and so does this source. It is off by default. The newest entry fills what the
Prometheus endpoint lacks (older builds have no batch, KV-cache or memory gauges) and the
iteration counter; when no iteration ran since the last read the list is empty and the previous
entry is served again.

Latency histograms pass through with trtllm-serve's own buckets. request_error_total's HTTP
status becomes the failure reason: 499 CANCELED, other 4xx REJECTED, 5xx BACKEND, else OTHER.

Every counter and histogram is a sum of upstream series (over finished_reason, HTTP codes of one
reason, engine_type): each upstream series is a part of the sum in the endpoint's
:class:`RetiredTotals`, so a series that stops being printed, or a server restart that starts every
count again at 0 (with only the reasons seen since), never takes an exported series down; what the
new process counts is added to what the old one had. A restart whose counts pass the old ones
before the next read goes unseen, as it would by Prometheus.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import Field

from exporter import catalog
from exporter.catalog import MetricType
from exporter.promtext import Exposition
from exporter.snapshot import Family
from exporter.sources.base import PollError, SourceConfig
from exporter.sources.http_upstream import Endpoint, Response, json_object
from exporter.sources.serving_endpoints import (
    FamilyBuilder,
    Reading,
    RetiredTotals,
    ServingConfig,
    ServingSource,
    histograms_by_model,
    series_part,
)

RUNTIME = "trtllm-serve"
PREFIX = "trtllm_"
UNDEFINED = ("", "undefined")

_HISTOGRAMS = {
    "time_to_first_token_seconds": "blackwell_serving_ttft_seconds",
    "time_per_output_token_seconds": "blackwell_serving_inter_token_latency_seconds",
    "e2e_request_latency_seconds": "blackwell_serving_e2e_latency_seconds",
    "request_queue_time_seconds": "blackwell_serving_queue_time_seconds",
}
# upstream name (prefix removed) -> (catalog name, extra label value or None)
_PER_MODEL = {
    "request_success_total": ("blackwell_serving_request_success_total", None),
    "prompt_tokens_total": ("blackwell_serving_prompt_tokens_total", None),
    "generation_tokens_total": ("blackwell_serving_generation_tokens_total", None),
    "kv_cache_hit_rate": ("blackwell_serving_kv_cache_hit_ratio", None),
    # A counter upstream: not Triton's reused-blocks gauge, which means something else.
    "kv_cache_reused_blocks_total": ("blackwell_serving_kv_cache_block_reuses_total", None),
    "kv_cache_tokens_per_block": ("blackwell_serving_kv_cache_tokens_per_block", None),
    "num_requests_running": ("blackwell_serving_batch_requests", "active"),
    "num_requests_waiting": ("blackwell_serving_batch_requests", "waiting"),
    "max_num_active_requests": ("blackwell_serving_batch_requests", "max"),
    "num_scheduled_requests": ("blackwell_serving_batch_requests", "scheduled"),
    "num_context_requests": ("blackwell_serving_batch_requests", "context"),
    "num_generation_requests": ("blackwell_serving_batch_requests", "generation"),
    "num_paused_requests": ("blackwell_serving_batch_requests", "paused"),
    "kv_cache_max_blocks": ("blackwell_serving_kv_cache_blocks", "max"),
    "kv_cache_free_blocks": ("blackwell_serving_kv_cache_blocks", "free"),
    "kv_cache_used_blocks": ("blackwell_serving_kv_cache_blocks", "used"),
    "gpu_memory_usage_bytes": ("blackwell_serving_runtime_memory_bytes", "gpu"),
    "cpu_memory_usage_bytes": ("blackwell_serving_runtime_memory_bytes", "cpu"),
    "pinned_memory_usage_bytes": ("blackwell_serving_runtime_memory_bytes", "pinned"),
}
# Catalog names with a version label; trtllm-serve has no model versions.
_VERSIONED = {"blackwell_serving_request_success_total", "blackwell_serving_request_failure_total"}


class TrtllmServeEndpoint(Endpoint):
    url: str = Field("http://127.0.0.1:8000/prometheus/metrics", description="trtllm-serve's Prometheus endpoint")
    model: str | None = Field(None, description="model label to use when the server labels its metrics "
                                                "model_name=\"undefined\"; default: the id from /v1/models")
    iteration_stats: bool = Field(False, description="also read /metrics (IterationStats JSON). Reading it REMOVES "
                                                     "the entries from the server's queue: leave off when anything "
                                                     "else reads /metrics")


class TrtllmServeConfig(ServingConfig):
    endpoints: list[TrtllmServeEndpoint] = Field(  # type: ignore[assignment]
        default_factory=lambda: [TrtllmServeEndpoint()],
        description="trtllm-serve servers to read; each may set url, model, iteration_stats, timeout, interval, "
                    "tls_verify, ca_file, max_bytes")


def failure_reason(http_code: str) -> str:
    if http_code == "499":
        return "CANCELED"
    if http_code.startswith("4"):
        return "REJECTED"
    if http_code.startswith("5"):
        return "BACKEND"
    return "OTHER"


def _short(name: str) -> str:
    return name[len(PREFIX):] if name.startswith(PREFIX) else name


def _is_counter(name: str) -> bool:
    return catalog.get(name).type is MetricType.COUNTER


def trtllm_serve_families(url: str, metrics: Exposition | None, health_status: int | None, version: str,
                          model: str, iteration: dict[str, Any] | None,
                          retired: RetiredTotals | None = None) -> list[Family]:
    """Catalog families for one endpoint.

    ``metrics`` is None when the Prometheus endpoint failed, ``health_status`` None when /health
    did not answer; ``model`` names series whose model_name label is undefined. ``retired`` (kept
    per endpoint by the source) keeps counters and histograms summed over upstream series rising.
    """
    out = FamilyBuilder(url)
    out.add("blackwell_serving_up", (RUNTIME,), int(metrics is not None))
    out.add("blackwell_serving_live", (RUNTIME,), int(health_status is not None))
    out.add("blackwell_serving_ready", (RUNTIME,), int(health_status == 200))

    def model_of(value: str) -> str:
        return model if value in UNDEFINED else value

    engine, seen = _add_exposition(out, metrics, model_of) if metrics is not None else ("unknown", set())
    models = {labels[0] for _, labels in seen} or {model}
    if iteration is not None:
        for name_model in sorted(models):
            for name, labels, value in _iteration_rows(iteration, name_model):
                if (name, labels) not in seen:
                    out.add(name, labels, value, part="iter" if _is_counter(name) else None)
    out.add("blackwell_serving_runtime_info", (RUNTIME, engine, version or "unknown"), 1)
    return out.families(retired)


def _add_exposition(out: FamilyBuilder, metrics: Exposition,
                    model_of: Callable[[str], str]) -> tuple[str, set[tuple[str, tuple[str, ...]]]]:
    """The Prometheus endpoint's series into ``out``; the engine type it names and the series it filled."""
    engine = "unknown"
    seen: set[tuple[str, tuple[str, ...]]] = set()
    # A build that prints both naming generations would otherwise count everything twice.
    prefixed = any(sample.name.startswith(PREFIX) for sample in metrics.samples)
    for sample in metrics.samples:
        if sample.name.startswith(PREFIX) != prefixed:
            continue
        short = _short(sample.name)
        if sample.labels.get("engine_type", "") not in UNDEFINED:
            engine = sample.labels["engine_type"]
        name_model = model_of(sample.labels.get("model_name", ""))
        if short in _PER_MODEL:
            name, extra = _PER_MODEL[short]
            labels = (name_model, "") if name in _VERSIONED else (name_model,)
            key = (name, labels + ((extra,) if extra else ()))
        elif short == "request_error_total":
            key = ("blackwell_serving_request_failure_total",
                   (name_model, "", failure_reason(sample.labels.get("http_code", ""))))
        else:
            continue
        # finished_reason (and any label we do not keep) is summed away; a counter keeps each
        # upstream series as a part, so one that goes away or restarts never takes the sum down.
        out.add(*key, sample.value, part=series_part(sample.labels) if _is_counter(key[0]) else None)
        seen.add(key)
        if short == "num_requests_waiting":  # also the queue, as every other serving source reports it
            pending = ("blackwell_serving_pending_requests", (name_model, ""))
            out.add(*pending, sample.value)
            seen.add(pending)
    for upstream, ours in _HISTOGRAMS.items():
        family = PREFIX + upstream if prefixed else upstream
        for name_model, parts in histograms_by_model(metrics, family, "model_name", rename=model_of).items():
            if (ours, (name_model,)) not in seen:
                for part, hist in parts.items():
                    out.add(ours, (name_model,), hist, part=part)
                seen.add((ours, (name_model,)))
    return engine, seen


def _iteration_rows(stats: dict[str, Any], model: str) -> list[tuple[str, tuple[str, ...], float]]:
    rows: list[tuple[str, tuple[str, ...], float]] = []

    def put(name: str, labels: tuple[str, ...], value: Any) -> None:
        # JSON may hold NaN, Infinity or integers too large for a float: such a field is left out.
        if isinstance(value, (int, float)) and not isinstance(value, bool) and -2**63 <= value <= 2**64 \
                and math.isfinite(value):
            rows.append((name, labels, float(value)))

    put("blackwell_serving_iterations_total", (model,), stats.get("iter"))
    put("blackwell_serving_batch_requests", (model, "active"), stats.get("numActiveRequests"))
    put("blackwell_serving_batch_requests", (model, "waiting"), stats.get("numQueuedRequests"))
    put("blackwell_serving_batch_requests", (model, "max"), stats.get("maxNumActiveRequests"))
    for field, memory_type in (("gpuMemUsage", "gpu"), ("cpuMemUsage", "cpu"), ("pinnedMemUsage", "pinned")):
        put("blackwell_serving_runtime_memory_bytes", (model, memory_type), stats.get(field))
    kv = stats.get("kvCacheStats")
    if isinstance(kv, dict):
        for field, state in (("maxNumBlocks", "max"), ("usedNumBlocks", "used"), ("freeNumBlocks", "free")):
            put("blackwell_serving_kv_cache_blocks", (model, state), kv.get(field))
        put("blackwell_serving_kv_cache_tokens_per_block", (model,), kv.get("tokensPerBlock"))
        put("blackwell_serving_kv_cache_reused_blocks", (model,), kv.get("reusedBlocks"))
        put("blackwell_serving_kv_cache_hit_ratio", (model,), kv.get("cacheHitRate"))
    batching = stats.get("inflightBatchingStats")
    if isinstance(batching, dict):
        for field, state in (("numScheduledRequests", "scheduled"), ("numContextRequests", "context"),
                             ("numGenRequests", "generation"), ("numPausedRequests", "paused")):
            put("blackwell_serving_batch_requests", (model, state), batching.get(field))
    return rows


def parse_iteration_stats(body: bytes) -> list[dict[str, Any]]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise PollError(f"iteration stats: not JSON ({exc})", "malformed") from None
    if not isinstance(data, list) or not all(isinstance(entry, dict) for entry in data):
        raise PollError("iteration stats: expected a JSON list of objects", "malformed")
    return data


class TrtllmServeSource(ServingSource[TrtllmServeEndpoint]):
    name: ClassVar[str] = "trtllm_serve"
    stand_in: ClassVar[str | None] = "simulated"
    config_model: ClassVar[type[SourceConfig]] = TrtllmServeConfig

    def __init__(self, config: TrtllmServeConfig, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config, clock)
        # Per endpoint URL, kept while the server stays up.
        self._versions: dict[str, str] = {}
        self._models: dict[str, str] = {}
        self._last_iteration: dict[str, dict[str, Any]] = {}

    def close(self) -> None:
        super().close()
        self._versions.clear()
        self._models.clear()
        self._last_iteration.clear()

    def read(self, endpoint: TrtllmServeEndpoint, timeout: float) -> Reading:
        deadline = self._clock() + timeout
        base = endpoint.base()
        metrics, error = self.read_exposition(endpoint, deadline)
        health: int | None = None
        try:
            health = self.fetch(endpoint, f"{base}/health", deadline, allow_status=True).status
            # Cached once known; an empty answer (not up yet, an error page) is asked again next poll.
            if not self._versions.get(endpoint.url):
                self._versions[endpoint.url] = _json_field(
                    self.fetch(endpoint, f"{base}/version", deadline, allow_status=True), "version")
            if endpoint.model is None and not self._models.get(endpoint.url):
                self._models[endpoint.url] = _first_model(self.fetch(endpoint, f"{base}/v1/models", deadline,
                                                                    allow_status=True))
            if endpoint.iteration_stats:
                entries = parse_iteration_stats(self.fetch(endpoint, f"{base}/metrics", deadline).body)
                if entries:
                    self._last_iteration[endpoint.url] = entries[-1]
        except PollError as exc:
            error = error or exc
        if error is not None:
            self.close_endpoint(endpoint.url)
        model = endpoint.model or self._models.get(endpoint.url) or "unknown"
        families = trtllm_serve_families(endpoint.url, metrics, health, self._versions.get(endpoint.url, ""),
                                         model, self._last_iteration.get(endpoint.url),
                                         self.retired_totals(endpoint.url))
        return Reading(families, error)

    def unanswered(self, endpoint: TrtllmServeEndpoint) -> list[Family]:
        return trtllm_serve_families(endpoint.url, None, None, "", endpoint.model or "unknown", None)

    def close_endpoint(self, url: str) -> None:
        """Forget what was cached about one server: after a failure it may come back as another build."""
        self._versions.pop(url, None)
        self._models.pop(url, None)
        self._last_iteration.pop(url, None)



def _json_field(response: Response, key: str) -> str:
    data = json_object(response.body) if response.status == 200 else None
    value = data.get(key) if data is not None else None
    return value if isinstance(value, str) else ""


def _first_model(response: Response) -> str:
    """The first model id from the OpenAI-style /v1/models answer; "" when there is none."""
    data = json_object(response.body) if response.status == 200 else None
    models = data.get("data") if data is not None else None
    if isinstance(models, list) and models and isinstance(models[0], dict) and isinstance(models[0].get("id"), str):
        return models[0]["id"]
    return ""
