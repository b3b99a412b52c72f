"""Each runtime's own metric names, mapped onto the ``blackwell_serving_*`` families.

One :class:`RuntimeMap` per runtime (vLLM, SGLang, NVIDIA Dynamo's frontend and workers, NIM for
LLMs), checked against the upstream source of the version named in docs/runtimes.md. A rule lists
the upstream names of one catalog series newest generation first; the first name present in an
exposition fills the series and the older ones are ignored, so a build that prints both
generations (vLLM with ``--show-hidden-metrics-for-version``) is not counted twice. A family the
exposition lacks is simply absent. Histograms keep the runtime's own buckets.

Labels the catalog does not keep (vLLM's ``engine`` and ``finished_reason``, SGLang's ``tp_rank``,
Dynamo's ``endpoint`` and ``error_type``) are summed away; 0-1 gauges (KV usage, hit rates) are
averaged over them instead, and a value outside 0..1 is left out and reported, because it would be a
percentage the map does not expect. A counter adds each upstream series it sums as a part of the
endpoint's :class:`~exporter.sources.serving_endpoints.RetiredTotals` (histograms already do), so a
series that stops being printed, or a restart that starts every count at 0 with fewer label sets,
never takes the exported counter down: what the new process counts is added to what the old one had.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from exporter import catalog
from exporter.catalog import MetricType
from exporter.promtext import Exposition, Sample
from exporter.sources.serving_endpoints import FamilyBuilder, histograms_by_model, series_part

UNDEFINED = ("", "undefined")


@dataclass(frozen=True)
class Rule:
    """One catalog series from the first of ``upstream`` present in the exposition.

    ``value`` fills the catalog's one extra label (``state``, ``reason``) where it has one. Only
    samples whose labels have one of the ``where`` values and none of the ``unless`` values count.
    ``from_label`` takes the number from that label of an info-style sample instead of its value.
    """

    catalog: str
    upstream: tuple[str, ...]
    value: str = ""
    where: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unless: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ratio: bool = False
    from_label: str = ""

    def accepts(self, sample: Sample) -> bool:
        return (all(sample.labels.get(k, "") in v for k, v in self.where.items())
                and not any(sample.labels.get(k, "") in v for k, v in self.unless.items()))


@dataclass(frozen=True)
class RuntimeMap:
    """What one runtime exposes and where the exporter finds it.

    ``flavour`` says, from the exposition, what runs behind the endpoint. ``version_path`` is a
    JSON endpoint holding the runtime's version under ``version_key``; ``known_versions`` are the
    version prefixes the map was checked against (another version is read all the same, and
    logged once).
    """

    runtime: str
    model_label: str
    histograms: Mapping[str, tuple[str, ...]]
    rules: tuple[Rule, ...]
    flavour: Callable[[Exposition], str]
    health_path: str
    version_path: str | None = None
    version_key: str = "version"
    known_versions: tuple[str, ...] = ()


def _label_of(name: str, label: str) -> Callable[[Exposition], str]:
    def flavour(metrics: Exposition) -> str:
        for sample in metrics.named(name):
            if sample.labels.get(label, "") not in UNDEFINED:
                return sample.labels[label]
        return "unknown"
    return flavour


def _states(*pairs: tuple[str, str, tuple[str, ...]]) -> tuple[Rule, ...]:
    return tuple(Rule(name, upstream, value) for name, value, upstream in pairs)


_BATCH = "blackwell_serving_batch_requests"
_SUCCESS = "blackwell_serving_request_success_total"
_FAILURE = "blackwell_serving_request_failure_total"

VLLM = RuntimeMap(
    runtime="vllm", model_label="model_name",
    histograms={
        "blackwell_serving_ttft_seconds": ("vllm:time_to_first_token_seconds",),
        # 0.11 renamed time_per_output_token_seconds; both are printed until 0.12.
        "blackwell_serving_inter_token_latency_seconds": ("vllm:inter_token_latency_seconds",
                                                          "vllm:time_per_output_token_seconds"),
        "blackwell_serving_e2e_latency_seconds": ("vllm:e2e_request_latency_seconds",),
        "blackwell_serving_queue_time_seconds": ("vllm:request_queue_time_seconds",),
        "blackwell_serving_prompt_length_tokens": ("vllm:request_prompt_tokens",),
    },
    rules=(
        Rule(_SUCCESS, ("vllm:request_success_total",), unless={"finished_reason": ("abort",)}),
        Rule(_FAILURE, ("vllm:request_success_total",), "CANCELED", where={"finished_reason": ("abort",)}),
        Rule("blackwell_serving_prompt_tokens_total", ("vllm:prompt_tokens_total",)),
        Rule("blackwell_serving_generation_tokens_total", ("vllm:generation_tokens_total",)),
        *_states((_BATCH, "active", ("vllm:num_requests_running",)),
                 (_BATCH, "waiting", ("vllm:num_requests_waiting",))),
        Rule("blackwell_serving_pending_requests", ("vllm:num_requests_waiting",)),
        Rule("blackwell_serving_kv_cache_usage_ratio", ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
             ratio=True),
        Rule("blackwell_serving_kv_cache_blocks", ("vllm:cache_config_info",), "max", from_label="num_gpu_blocks"),
        Rule("blackwell_serving_preemptions_total", ("vllm:num_preemptions_total",)),
        Rule("blackwell_serving_prefix_cache_queried_tokens_total",
             ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total")),
        Rule("blackwell_serving_prefix_cache_hit_tokens_total",
             ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total")),
    ),
    flavour=lambda metrics: "v1-engine" if any(s.labels.get("engine") is not None
                                               for s in metrics.named("vllm:num_requests_running")) else "unknown",
    health_path="/health", version_path="/version", known_versions=("0.8.", "0.9.", "0.10.", "0.11."),
)

SGLANG = RuntimeMap(
    runtime="sglang", model_label="model_name",
    histograms={
        "blackwell_serving_ttft_seconds": ("sglang:time_to_first_token_seconds",),
        "blackwell_serving_inter_token_latency_seconds": ("sglang:inter_token_latency_seconds",),
        "blackwell_serving_e2e_latency_seconds": ("sglang:e2e_request_latency_seconds",),
        "blackwell_serving_queue_time_seconds": ("sglang:queue_time_seconds",),
        "blackwell_serving_prompt_length_tokens": ("sglang:prompt_tokens_histogram",),
    },
    rules=(
        # num_requests_total counts finished requests; an aborted one may finish and count too.
        Rule(_SUCCESS, ("sglang:num_requests_total",)),
        Rule(_FAILURE, ("sglang:num_aborted_requests_total",), "CANCELED"),
        Rule("blackwell_serving_prompt_tokens_total", ("sglang:prompt_tokens_total",)),
        Rule("blackwell_serving_generation_tokens_total", ("sglang:generation_tokens_total",)),
        *_states((_BATCH, "active", ("sglang:num_running_reqs",)),
                 (_BATCH, "waiting", ("sglang:num_queue_reqs",)),
                 (_BATCH, "paused", ("sglang:num_paused_reqs",))),
        Rule("blackwell_serving_pending_requests", ("sglang:num_queue_reqs",)),
        Rule("blackwell_serving_kv_cache_usage_ratio", ("sglang:token_usage",), ratio=True),
        Rule("blackwell_serving_kv_cache_hit_ratio", ("sglang:cache_hit_rate",), ratio=True),
        # The per-request retraction histogram's _sum is the running total of retractions.
        Rule("blackwell_serving_preemptions_total", ("sglang:num_retractions_sum",)),
        Rule("blackwell_serving_prefix_cache_hit_tokens_total", ("sglang:cached_tokens_total",)),
    ),
    flavour=_label_of("sglang:num_running_reqs", "engine_type"),
    health_path="/health", version_path="/get_server_info", known_versions=("0.5.",),
)

NIM = RuntimeMap(
    runtime="nim", model_label="model_name",
    histograms={
        "blackwell_serving_ttft_seconds": ("time_to_first_token_seconds",),
        "blackwell_serving_inter_token_latency_seconds": ("inter_token_latency_seconds",
                                                          "time_per_output_token_seconds"),
        "blackwell_serving_e2e_latency_seconds": ("e2e_request_latency_seconds",),
        "blackwell_serving_queue_time_seconds": ("request_queue_time_seconds",),
        "blackwell_serving_prompt_length_tokens": ("request_prompt_tokens",),
    },
    rules=(
        Rule(_SUCCESS, ("request_success_total", "request_finish_total"), unless={"finished_reason": ("abort",)}),
        Rule(_FAILURE, ("request_success_total", "request_finish_total"), "CANCELED",
             where={"finished_reason": ("abort",)}),
        Rule("blackwell_serving_prompt_tokens_total", ("prompt_tokens_total",)),
        Rule("blackwell_serving_generation_tokens_total", ("generation_tokens_total",)),
        *_states((_BATCH, "active", ("num_requests_running",)),
                 (_BATCH, "waiting", ("num_requests_waiting",)),
                 (_BATCH, "max", ("num_request_max",))),
        Rule("blackwell_serving_pending_requests", ("num_requests_waiting",)),
        Rule("blackwell_serving_kv_cache_usage_ratio", ("kv_cache_usage_perc", "gpu_cache_usage_perc"), ratio=True),
        Rule("blackwell_serving_preemptions_total", ("num_preemptions_total",)),
    ),
    flavour=lambda metrics: "llm",
    health_path="/v1/health/ready", version_path="/v1/version", version_key="release", known_versions=("1.",),
)

_REJECTED = ("validation", "not_found", "overload", "not_implemented")
_BACKEND = ("internal", "unavailable", "response_timeout")
# DYN_METRICS_PREFIX=nv_llm_http_service gives the frontend's families NIM's older prefix (ai-dynamo/dynamo
# PR #2432; lib/llm/src/http/service/metrics.rs at commit 0014908a); every family takes the same prefix.
_DYNAMO_PREFIXES = ("dynamo_frontend_", "nv_llm_http_service_")


def _frontend(*names: str) -> tuple[str, ...]:
    """Each of ``names`` (newest first) under both frontend prefixes."""
    return tuple(prefix + name for name in names for prefix in _DYNAMO_PREFIXES)


_REQUESTS = _frontend("requests_total")

DYNAMO_FRONTEND = RuntimeMap(
    runtime="dynamo", model_label="model",
    histograms={
        "blackwell_serving_ttft_seconds": _frontend("time_to_first_token_seconds"),
        "blackwell_serving_inter_token_latency_seconds": _frontend("inter_token_latency_seconds"),
        "blackwell_serving_e2e_latency_seconds": _frontend("request_duration_seconds"),
        "blackwell_serving_prompt_length_tokens": _frontend("input_sequence_tokens"),
    },
    rules=(
        Rule(_SUCCESS, _REQUESTS, where={"status": ("success",)}),
        Rule(_FAILURE, _REQUESTS, "CANCELED", where={"status": ("error",), "error_type": ("cancelled",)}),
        Rule(_FAILURE, _REQUESTS, "REJECTED", where={"status": ("error",), "error_type": _REJECTED}),
        Rule(_FAILURE, _REQUESTS, "BACKEND", where={"status": ("error",), "error_type": _BACKEND}),
        Rule(_FAILURE, _REQUESTS, "OTHER",
             where={"status": ("error",)}, unless={"error_type": ("cancelled", *_REJECTED, *_BACKEND)}),
        # The frontend has no prompt-token counter: the input-length histogram's _sum is one.
        Rule("blackwell_serving_prompt_tokens_total", _frontend("input_sequence_tokens_sum")),
        Rule("blackwell_serving_generation_tokens_total", _frontend("output_tokens_total")),
        Rule(_BATCH, _frontend("active_requests", "inflight_requests"), "active"),
        Rule("blackwell_serving_pending_requests", _frontend("queued_requests")),
        Rule("blackwell_serving_model_ready", _frontend("model_ready")),
    ),
    flavour=lambda metrics: "frontend",
    health_path="/health",
)

_KVSTATS = (
    Rule("blackwell_serving_kv_cache_usage_ratio", ("dynamo_component_kvstats_gpu_cache_usage_percent",), ratio=True),
    Rule("blackwell_serving_kv_cache_hit_ratio", ("dynamo_component_kvstats_gpu_prefix_cache_hit_rate",), ratio=True),
    Rule("blackwell_serving_kv_cache_blocks", ("dynamo_component_kvstats_total_blocks",), "max"),
    Rule("blackwell_serving_kv_cache_blocks", ("dynamo_component_kvstats_active_blocks",), "used"),
)
# A worker's latencies and tokens are the frontend's to report (a prefill worker's TTFT is not the
# client's): from the engine metrics a worker passes through only its state is taken.
WORKER_STATE = {"blackwell_serving_batch_requests", "blackwell_serving_kv_cache_blocks", "blackwell_serving_pending_requests",
                 "blackwell_serving_kv_cache_usage_ratio", "blackwell_serving_kv_cache_hit_ratio",
                 "blackwell_serving_preemptions_total", "blackwell_serving_prefix_cache_queried_tokens_total",
                 "blackwell_serving_prefix_cache_hit_tokens_total"}
_ENGINES = (("vllm:", VLLM), ("sglang:", SGLANG))
ROLES = ("prefill", "decode", "aggregated")


def worker_engine(metrics: Exposition) -> tuple[str, RuntimeMap | None]:
    """The engine behind a Dynamo worker, from the prefix of the families it passes through."""
    names = metrics.names()
    for prefix, engine in _ENGINES:
        if any(name.startswith(prefix) for name in names):
            return engine.runtime, engine
    if any(name.startswith("trtllm_") for name in names):
        return "trtllm", None
    return "unknown", None


def dynamo_worker(metrics: Exposition) -> RuntimeMap:
    """A Dynamo worker's map: the engine's state rules first (they are the original), then kvstats."""
    _, engine = worker_engine(metrics)
    rules = tuple(r for r in engine.rules if r.catalog in WORKER_STATE) if engine else ()
    return RuntimeMap(runtime="dynamo", model_label="model_name", histograms={}, rules=rules + _KVSTATS,
                      flavour=lambda m: worker_engine(m)[0], health_path="/health")


def worker_role(metrics: Exposition) -> str:
    """prefill or decode from Dynamo's ``worker_type`` label, else from a component named so."""
    for label in ("worker_type", "dynamo_component"):
        for sample in metrics.samples:
            if sample.labels.get(label) in ROLES:
                return sample.labels[label]
    return "aggregated"


def map_exposition(metrics: Exposition, runtime: RuntimeMap, model: str, out: FamilyBuilder) -> set[str]:
    """Add the catalog series ``runtime`` finds in ``metrics`` to ``out``; return the models seen.

    ``model`` names series without a model label (Dynamo's kvstats) or with an undefined one.
    """
    def model_of(value: str) -> str:
        return model if value in UNDEFINED else value

    models: set[str] = set()
    for name, upstream in runtime.histograms.items():
        family = next((f for f in upstream if any(metrics.named(f + "_count"))), None)
        if family is None:
            continue
        for series_model, parts in histograms_by_model(metrics, family, runtime.model_label, rename=model_of).items():
            for part, hist in parts.items():
                out.add(name, (series_model,), hist, part=part)
            models.add(series_model)
    filled: dict[tuple[str, tuple[str, ...]], float] = {}
    for rule in runtime.rules:
        chosen = next((u for u in rule.upstream if any(metrics.named(u))), None)
        if chosen is None:
            continue
        counter = catalog.get(rule.catalog).type is MetricType.COUNTER
        for labels, found in _by_series(metrics, rule, chosen, model_of, runtime.model_label).items():
            if (rule.catalog, labels) in filled:
                continue
            value = _combined(metrics, rule, chosen, labels, [number for _, number in found])
            if value is None:
                continue
            filled[(rule.catalog, labels)] = value
            models.add(labels[0])
            if counter:  # each upstream series a part: one that goes away or restarts never takes the sum down
                for sample, number in found:
                    out.add(rule.catalog, labels, number, part=series_part(sample.labels))
            else:
                out.add(rule.catalog, labels, value)
    _derive_used_blocks(filled, out)
    return models


def _derive_used_blocks(filled: dict[tuple[str, tuple[str, ...]], float], out: FamilyBuilder) -> None:
    """used = usage x max where a runtime reports its block count and usage ratio but not used blocks.

    vLLM computes kv_cache_usage_perc as 1 - free / total blocks, so this inverts it exactly (up to
    rounding); it lets the KV occupancy rule work for a runtime that has no used-blocks gauge.
    """
    blocks = "blackwell_serving_kv_cache_blocks"
    for (name, labels), ratio in filled.items():
        if name != "blackwell_serving_kv_cache_usage_ratio":
            continue
        total = filled.get((blocks, (labels[0], "max")))
        if total is not None and (blocks, (labels[0], "used")) not in filled:
            out.add(blocks, (labels[0], "used"), float(round(ratio * total)))


def _by_series(metrics: Exposition, rule: Rule, upstream: str, model_of: Callable[[str], str],
               model_label: str) -> dict[tuple[str, ...], list[tuple[Sample, float]]]:
    """The samples of ``upstream`` the rule accepts, with their numbers, per catalog label set."""
    names = [n for n in catalog.get(rule.catalog).labels if n != "endpoint"]  # the builder adds it
    found: dict[tuple[str, ...], list[tuple[Sample, float]]] = {}
    for sample in metrics.named(upstream):
        number = _label_number(sample, rule.from_label) if rule.from_label else sample.value
        if not rule.accepts(sample) or number is None:
            continue
        series_model = model_of(sample.labels.get(model_label, sample.labels.get("model", "")))
        labels = tuple(series_model if n == "model" else "" if n == "version" else rule.value for n in names)
        found.setdefault(labels, []).append((sample, number))
    return found


def _combined(metrics: Exposition, rule: Rule, upstream: str, labels: tuple[str, ...],
              numbers: list[float]) -> float | None:
    """The samples of one catalog series summed, or averaged for a 0-1 ratio; None (and the problem
    recorded) for a ratio outside 0..1."""
    value = sum(numbers) / len(numbers) if rule.ratio else sum(numbers)
    if rule.ratio and not 0.0 <= value <= 1.0:
        metrics.problems.append(f"{upstream}: {value:g} for model {labels[0]!r} is outside 0..1; left out")
        return None
    return value


def _label_number(sample: Sample, label: str) -> float | None:
    """The number a label holds (vLLM's num_gpu_blocks="16384"); None when it holds none ("None")."""
    try:
        number = float(sample.labels.get(label, ""))
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None
