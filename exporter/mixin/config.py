"""Thresholds and objectives the generated rules use; set under ``mixin:`` in the config file.

Every number an alert or recording rule compares against lives here, so a fleet with other
hardware or another SLO changes one YAML key and regenerates, never edits a rule.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from exporter.catalog.runtime_buckets import TTFT_DEFAULT_BUCKETS
from exporter.foundation import StrictModel
from exporter.mixin.ttft_buckets import default_bounds, same_bound

_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"')
_MATCHER_SPLIT = re.compile(r',(?=(?:[^"]*"[^"]*")*[^"]*$)')  # commas outside quotes


class MixinConfig(StrictModel):
    # -- where alerts point -------------------------------------------------------------------
    runbook_base_url: str = Field(
        "https://github.com/blackwell-exporter/blackwell-exporter/blob/main/runbooks",
        description="where runbooks/<AlertName>.md are published; alerts link here",
    )
    dashboard_base_url: str = Field("http://grafana.local/d", description="Grafana base URL for dashboard_url")
    job: str = Field("blackwell-exporter", description="Prometheus job name the exporter is scraped under")
    selector: str | None = Field(
        None,
        description='label matchers (no braces) every rule and panel query carries; default job="<job>". '
        "Only job matchers: recording rules keep job, so their outputs can be selected the same way",
    )
    disabled_alerts: list[str] = Field(
        [], description="alert names the generated rules leave out (each must be an alert the mixin ships)"
    )

    # -- serving SLOs -------------------------------------------------------------------------
    ttft_slo_seconds: float = Field(
        0.5, gt=0,
        description="TTFT objective: p95 must stay under it, and requests under it are the good ones of the TTFT "
        "SLO. Each runtime is judged at a bucket bound it has (ttft_slo_bounds; docs/mixin.md: the TTFT objective "
        "on every runtime)",
    )
    ttft_slo_bounds: dict[str, float] = Field(
        {},
        description=f"runtime (blackwell_serving_runtime_info's runtime label: {', '.join(TTFT_DEFAULT_BUCKETS)}) "
        "-> the TTFT bucket bound its SLO counts good requests under, for buckets set away from "
        "the runtime's defaults; default: its largest default bound at or under ttft_slo_seconds",
    )
    ttft_slo_objective: float = Field(
        0.99, gt=0, lt=1, description="fraction of requests whose TTFT must be under ttft_slo_seconds"
    )
    availability_slo_objective: float = Field(
        0.999, gt=0, lt=1, description="fraction of requests that must not fail (client cancels excluded)"
    )
    ttft_long_prompt_p99_seconds: float = Field(
        1.0, gt=0, description="TTFT p99 over this while p50 is fine means long prompts stall"
    )
    ttft_tail_ratio: float = Field(
        20.0, gt=1, description="p99/p50 TTFT ratio above which the tail, not the median, is the problem"
    )
    cold_start_ttft_seconds: float = Field(10.0, gt=0, description="median TTFT that means a cold engine")
    kv_cache_occupancy_max: float = Field(0.92, gt=0, le=1, description="KV-cache used/max ratio that warns")
    throughput_drop_ratio: float = Field(
        0.30, gt=0, lt=1, description="warn when tokens/s falls this fraction under the same hour yesterday"
    )
    throughput_min_tokens_per_second: float = Field(
        1.0, ge=0, description="yesterday's tokens/s must exceed this for the comparison to count"
    )

    # -- GPUs and fabric ----------------------------------------------------------------------
    straggler_utilization_gap: float = Field(
        0.15, gt=0, lt=1, description="a GPU this far (absolute ratio) under its peers' mean utilization straggles"
    )
    straggler_min_peer_utilization: float = Field(
        0.5, ge=0, lt=1, description="only judge stragglers while the peers are this busy"
    )
    domain_straggler_utilization_gap: float = Field(
        0.06, gt=0, lt=1, description="a GPU this far (absolute ratio) under its NVLink domain's median utilization straggles"
    )
    domain_tray_nvlink_bandwidth_ratio_min: float = Field(
        0.7, gt=0, lt=1, description="a tray moving under this fraction of its domain's median tray NVLink traffic is behind"
    )
    domain_tray_nvlink_errors_factor: float = Field(
        10.0, gt=1, description="a tray counting this many times its domain's median tray NVLink errors is behind"
    )
    domain_tray_nvlink_errors_min: float = Field(
        10.0, gt=0, description="NVLink errors in 5 minutes a tray must count before it can be behind on errors"
    )
    domain_gpu_power_budget_watts: float = Field(
        86_400.0, gt=0,
        description="GPU board power one NVLink domain (an NVL72 rack) may draw: 72 GPUs x 1200 W, the GB200 "
        "B200's power limit. Set the facility's allocation for the rack's GPUs where it is lower",
    )
    domain_gpu_power_budget_ratio: float = Field(
        0.98, gt=0, le=1,
        description="a domain's GPUs drawing this share of its budget warn; a saturated healthy rack draws about "
        "95-97% of its GPUs' limits, so with the default budget only a rack at its ceiling warns",
    )
    domain_gpu_power_budget_for_seconds: float = Field(
        900.0, ge=1, description="seconds a domain's GPU power stays over the budget ratio before it warns"
    )
    underutilized_power_watts: float = Field(
        800.0, gt=0, description="mean GPU power under this while requests queue means a starved batcher"
    )
    underutilized_min_queued_requests: float = Field(5.0, ge=0, description="queued requests that count as queued")
    throttle_time_ratio: float = Field(
        0.10, gt=0, le=1, description="fraction of time clocks are held down (thermal or power) that warns"
    )
    nvlink_ignored_error_kinds: list[str] = Field(
        ["symbol"],
        description="NVLink5 error kinds the NVLink alert ignores: raw symbol errors are corrected by FEC "
        "and happen at a low rate on healthy links (their BER is on the dashboard)",
    )
    critical_xids: list[int] = Field(
        [48, 61, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120, 140],
        description="XID codes that page (double-bit ECC, row remap, NVLink, fell off the bus, GSP errors ...)",
    )

    # -- Blackwell precision and memory tiers ---------------------------------------------------
    mxfp4_hit_rate_min: float = Field(0.80, gt=0, le=1, description="MX-FP4 share of GEMM launches that warns")
    fp8_fallback_share_max: float = Field(0.01, gt=0, le=1, description="FP8 share of GEMM launches that warns")
    te_promotions_per_hour_max: float = Field(100.0, gt=0, description="TE promotion events per hour that warn")
    te_layer_spike_per_hour: float = Field(
        50.0, gt=0, description="promotions per hour on one layer that, with most events on it, is a layer spike"
    )
    te_layer_spike_share: float = Field(0.5, gt=0, le=1, description="share of all promotions one layer must hold")
    c2c_read_share_max: float = Field(
        0.10, gt=0, lt=1, description="Grace C2C share of GPU memory reads that warns while climbing"
    )
    c2c_read_share_critical: float = Field(
        0.25, gt=0, lt=1, description="C2C read share that warns whether or not it still climbs"
    )

    # -- cost and capacity --------------------------------------------------------------------
    gpu_hour_price: float = Field(6.0, ge=0, description="price of one GPU-hour (any currency) for cost per 1M tokens")
    peak_output_tokens_per_second: float = Field(
        32_000.0, gt=0, description="measured saturation output tokens/s of one box (HGX B200, TP=8: ~32k)"
    )

    @field_validator("selector")
    @classmethod
    def _job_matchers_only(cls, value: str | None) -> str | None:
        if value is None:
            return None
        matchers = [part.strip() for part in _MATCHER_SPLIT.split(value.strip()) if part.strip()]
        for matcher in matchers:
            found = _MATCHER.fullmatch(matcher)
            if not found:
                raise ValueError(f'{matcher!r} is not a label matcher like job="name" or job=~"a|b"')
            if found.group(1) != "job":
                raise ValueError(f"{matcher!r}: the selector may match only job (recording rules aggregate "
                                 "other labels away, so their outputs could not be selected by it)")
        return ", ".join(matchers)

    @model_validator(mode="after")
    def _bounds_judge_at_or_under_the_objective(self) -> MixinConfig:
        for runtime, bound in self.ttft_slo_bounds.items():
            if runtime not in TTFT_DEFAULT_BUCKETS:
                raise ValueError(f"ttft_slo_bounds: {runtime!r} is not a runtime the exporter reports "
                                 f"({', '.join(TTFT_DEFAULT_BUCKETS)})")
            if not 0 < bound <= self.ttft_slo_seconds and not same_bound(bound, self.ttft_slo_seconds):
                raise ValueError(f"ttft_slo_bounds.{runtime}: {bound:g} must be over 0 and not over ttft_slo_seconds "
                                 f"({self.ttft_slo_seconds:g}): a request slower than the objective would count as good")
        return self

    def ttft_bounds(self) -> dict[str, float]:
        """Runtime -> the TTFT bound its SLO is judged at: the defaults (:mod:`exporter.mixin.ttft_buckets`)
        with ``ttft_slo_bounds`` over them. A runtime missing here is judged at ``ttft_slo_seconds``."""
        return {**default_bounds(self.ttft_slo_seconds), **self.ttft_slo_bounds}

    @property
    def matchers(self) -> str:
        """The label matchers injected into every vector selector of every rule and panel."""
        return self.selector if self.selector is not None else f'job="{self.job}"'

    @field_validator("runbook_base_url", "dashboard_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")
