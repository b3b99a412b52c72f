"""Every alert the mixin ships, grouped as they are written to ``alerts/``.

Thresholds come from :class:`MixinConfig`; the durations here are production ones and
:func:`exporter.mixin.rules.rule_groups` scales them for drills. Each alert name has one
runbook, ``runbooks/<name>.md``, rendered from ``templates/runbooks/<name>.md.j2``.
"""

from __future__ import annotations

from exporter.foundation import STALE_INTERVALS
from exporter.mixin import recording as rec
from exporter.mixin.config import MixinConfig
from exporter.mixin.model import Alert, Group
from exporter.mixin.slo import slo_alerts

FLEET = "blackwell-fleet-overview"
NODE = "blackwell-node-gpus"
SERVING = "blackwell-serving-slos"
PRECISION = "blackwell-precision-memory"
EXPORTER = "blackwell-exporter-health"

_WHERE_GPU = "GPU {{ $labels.gpu }} on {{ $labels.instance }}"
_WHERE_MODEL = "{{ $labels.model }} on {{ $labels.instance }}"
# MX-FP4 expectations hold on Blackwell GPUs (Hopper has no FP4 path, so its FP8 GEMMs are the plan,
# not a fallback) unless the engine source says the engine was not built for FP4.
_EXPECTS_FP4 = ('and on (job, instance) group by (job, instance) (blackwell_gpu_info{architecture=~"(?i)blackwell"})\n'
                'unless on (job, instance) blackwell_engine_info{quant_algo!~"(?i).*(fp4|mixed).*"}')


def _n(value: float) -> str:
    return f"{value:.12g}"


def _pct(value: float) -> str:
    return f"{value * 100:g}%"


def _gpu_alerts(c: MixinConfig) -> list[Alert]:
    xids = "|".join(str(x) for x in c.critical_xids)
    return [
        Alert("BlackwellGPULost", "blackwell_gpu_up == 0", "critical",
              "A GPU stopped answering NVML (fell off the bus or needs a reset).",
              f"{_WHERE_GPU} (uuid {{{{ $labels.uuid }}}}) is lost; its tensor-parallel group cannot serve.",
              NODE, "1m"),
        Alert("BlackwellXIDCritical",
              # The second half catches a code's first event: a new series has no earlier sample to increase from.
              f'increase(blackwell_gpu_xid_errors_total{{xid=~"{xids}"}}[10m]) > 0\n'
              f'or (blackwell_gpu_xid_errors_total{{xid=~"{xids}"}} unless blackwell_gpu_xid_errors_total offset 10m)',
              "critical", "A GPU reported a critical XID error.",
              f"{_WHERE_GPU} reported XID {{{{ $labels.xid }}}} ({{{{ $value }}}} in the last 10 minutes or since "
              "the exporter started).", NODE),
        Alert("BlackwellECCUncorrectable",
              'increase(blackwell_gpu_ecc_errors_total{error_type="uncorrected", counter="volatile"}[10m]) > 0',
              "critical", "A GPU counted uncorrectable ECC errors.",
              f"{_WHERE_GPU} counted {{{{ $value }}}} uncorrectable ECC errors in 10 minutes; data it computed "
              "may be wrong.", NODE),
        Alert("BlackwellRowRemapFailure", "blackwell_gpu_remapped_rows_failure == 1", "critical",
              "A GPU failed to remap a faulty HBM row and needs service.",
              f"{_WHERE_GPU} failed an HBM row remap; drain it and open a hardware ticket.", NODE),
        Alert("BlackwellThermalThrottling",
              'sum by (job, instance, gpu) (rate(blackwell_gpu_clock_event_seconds_total{reason=~"sw_thermal|hw_thermal|hw_slowdown"}[5m]))\n'
              f"> {_n(c.throttle_time_ratio)}", "warning",
              "A GPU's clocks are held down by thermal slowdown.",
              f"{_WHERE_GPU} spent {{{{ $value | humanizePercentage }}}} of the last 5 minutes thermally throttled "
              f"(threshold {_pct(c.throttle_time_ratio)}).", NODE, "10m"),
        Alert("BlackwellPowerThrottling",
              'sum by (job, instance, gpu) (rate(blackwell_gpu_clock_event_seconds_total{reason=~"sw_power_cap|hw_power_brake"}[5m]))\n'
              f"> {_n(c.throttle_time_ratio)}", "warning",
              "A GPU's clocks are held down by its power cap.",
              f"{_WHERE_GPU} spent {{{{ $value | humanizePercentage }}}} of the last 5 minutes power capped "
              f"(threshold {_pct(c.throttle_time_ratio)}).", NODE, "10m"),
        # max, not sum: on Hopper the legacy and the data-link counters are the same hardware
        # counters read through two NVML paths, so a sum would count every error twice.
        Alert("BlackwellNVLinkErrors", f"max by (job, instance, gpu, link) ({rec.NVLINK_ERRORS}) > 0", "warning",
              "NVLink errors are counting on a link.",
              f"{_WHERE_GPU}, NVLink {{{{ $labels.link }}}}: {{{{ $value | humanize }}}} errors, replays or "
              "recoveries in the last 5 minutes on its busiest error counter.", NODE, "1m"),
        Alert("BlackwellGPUStraggler",
              f"{rec.PEER_DEVIATION} < -{_n(c.straggler_utilization_gap)}\n"
              f"and on (job, instance, gpu) {rec.PEER_UTIL} > {_n(c.straggler_min_peer_utilization)}",
              "warning", "A GPU is far less busy than its tensor-parallel peers.",
              f"{_WHERE_GPU} utilization is {{{{ $value | humanizePercentage }}}} (absolute) away from its peers' mean; "
              "the whole group waits for it.", NODE, "10m"),
        Alert("BlackwellGPUUnderutilizedWhileQueued",
              f"{rec.INSTANCE_POWER} < {_n(c.underutilized_power_watts)}\n"
              "and on (job, instance)\n"
              "sum by (job, instance) (avg_over_time(blackwell_serving_pending_requests[5m]))"
              f" > {_n(c.underutilized_min_queued_requests)}",
              "warning", "Requests are queued while the GPUs draw little power.",
              f"GPUs on {{{{ $labels.instance }}}} average {{{{ $value | humanize }}}}W (under "
              f"{_n(c.underutilized_power_watts)}W) while requests wait: the batcher is starved.", FLEET, "15m"),
    ]


def _serving_alerts(c: MixinConfig) -> list[Alert]:
    return [
        Alert("BlackwellServingNotReady", "blackwell_serving_ready == 0", "critical",
              "The serving runtime answers but is not ready.",
              "{{ $labels.runtime }} at {{ $labels.endpoint }} on {{ $labels.instance }} reports not ready.",
              SERVING, "5m"),
        Alert("BlackwellServingDown", "blackwell_serving_up == 0", "critical",
              "The serving runtime's metrics endpoint does not answer.",
              "{{ $labels.runtime }} at {{ $labels.endpoint }} on {{ $labels.instance }} did not answer the "
              "exporter's last poll.", SERVING, "5m"),
        Alert("BlackwellTTFTSLOViolation", f"{rec.ttft_quantile('p95')} > {_n(c.ttft_slo_seconds)}", "warning",
              "TTFT p95 is over the objective.",
              f"{_WHERE_MODEL}: TTFT p95 is {{{{ $value | humanizeDuration }}}}, objective "
              f"{_n(c.ttft_slo_seconds)}s.", SERVING, "10m"),
        Alert("BlackwellTTFTLongPromptSpikes",
              f"{rec.ttft_quantile('p99')} > {_n(c.ttft_long_prompt_p99_seconds)}\n"
              f"and on (job, instance, model)\n"
              f"{rec.ttft_quantile('p99')} / {rec.ttft_quantile('p50')} > {_n(c.ttft_tail_ratio)}",
              "warning", "TTFT p99 spikes while the median stays fast: long prompts stall.",
              f"{_WHERE_MODEL}: TTFT p99 is {{{{ $value | humanizeDuration }}}}, more than "
              f"{_n(c.ttft_tail_ratio)}x the median.", SERVING, "10m"),
        Alert("BlackwellColdStartTTFT", f"{rec.ttft_quantile('p50')} > {_n(c.cold_start_ttft_seconds)}", "warning",
              "Median TTFT is over the cold-start limit, as after a deploy with cold caches.",
              f"{_WHERE_MODEL}: median TTFT is {{{{ $value | humanizeDuration }}}} (limit "
              f"{_n(c.cold_start_ttft_seconds)}s).", SERVING, "2m"),
        Alert("BlackwellKVCacheNearFull", f"{rec.KV_OCCUPANCY} > {_n(c.kv_cache_occupancy_max)}", "warning",
              "The KV cache is nearly full.",
              f"{_WHERE_MODEL}: {{{{ $value | humanizePercentage }}}} of KV-cache blocks are in use "
              f"(threshold {_pct(c.kv_cache_occupancy_max)}).", SERVING, "10m"),
        Alert("BlackwellThroughputDrop",
              f"{rec.TOKENS_VS_YESTERDAY} < {_n(1 - c.throughput_drop_ratio)}\n"
              f"and on (job, instance) {rec.INSTANCE_TOKENS_RATE} offset 1d > {_n(c.throughput_min_tokens_per_second)}",
              "warning", "Output tokens/s fell well under the same hour yesterday.",
              "{{ $labels.instance }} generates {{ $value | humanizePercentage }} of yesterday's output tokens/s "
              f"at this hour (warns under {_pct(1 - c.throughput_drop_ratio)}).", FLEET, "15m"),
    ]


def _precision_alerts(c: MixinConfig) -> list[Alert]:
    return [
        Alert("BlackwellMXFP4HitRateLow", f"{rec.FP4_HIT_RATE} < {_n(c.mxfp4_hit_rate_min)}\n{_EXPECTS_FP4}",
              "warning", "Too few GEMMs run on the MX-FP4 path.",
              "{{ $labels.instance }}: {{ $value | humanizePercentage }} of GEMM launches use MX-FP4 "
              f"(expected at least {_pct(c.mxfp4_hit_rate_min)}).", PRECISION, "15m"),
        Alert("BlackwellFP8FallbackHigh", f"{rec.FP8_SHARE} > {_n(c.fp8_fallback_share_max)}\n{_EXPECTS_FP4}",
              "warning", "Too many GEMMs fall back to FP8.",
              "{{ $labels.instance }}: {{ $value | humanizePercentage }} of GEMM launches fell back to FP8 "
              f"(threshold {_pct(c.fp8_fallback_share_max)}).", PRECISION, "15m"),
        Alert("BlackwellTEPromotionStorm", f"{rec.TE_INSTANCE_RATE} * 3600 > {_n(c.te_promotions_per_hour_max)}",
              "warning",
              "Transformer Engine promotes tensors to higher precision too often.",
              "{{ $labels.instance }}: {{ $value | humanize }} TE promotion events per hour over the last hour "
              f"(threshold {_n(c.te_promotions_per_hour_max)}).", PRECISION, "5m"),
        Alert("BlackwellTEPromotionLayerSpike",
              f"{rec.TE_LAYER_RATE} * 3600 > {_n(c.te_layer_spike_per_hour)}\n"
              f"and on (job, instance, layer)\n"
              f"{rec.TE_LAYER_RATE} / on (job, instance) group_left {rec.TE_INSTANCE_RATE} > {_n(c.te_layer_spike_share)}",
              "warning", "One layer holds most Transformer Engine promotion events.",
              "{{ $labels.instance }}: layer {{ $labels.layer }} had {{ $value | humanize }} TE promotion events per "
              "hour over the last hour, most of them all.", PRECISION, "5m"),
        Alert("BlackwellGraceC2CReadShareHigh",
              f"({rec.C2C_READ_SHARE} > {_n(c.c2c_read_share_max)} and deriv({rec.C2C_READ_SHARE}[30m]) > 0)\n"
              f"or {rec.C2C_READ_SHARE} > {_n(c.c2c_read_share_critical)}",
              "warning", "A growing share of GPU memory reads is served from Grace over NVLink-C2C.",
              f"{_WHERE_GPU}: {{{{ $value | humanizePercentage }}}} of memory reads come over C2C (warns over "
              f"{_pct(c.c2c_read_share_max)} and climbing, or over {_pct(c.c2c_read_share_critical)}).",
              PRECISION, "10m"),
    ]


def _exporter_alerts(c: MixinConfig) -> list[Alert]:
    return [
        Alert("BlackwellExporterDown", f'up{{job="{c.job}"}} == 0', "critical",
              "Prometheus cannot scrape the Blackwell exporter.",
              "{{ $labels.instance }} (job {{ $labels.job }}) has not answered scrapes for 5 minutes; every "
              "GPU and serving alert for it is blind.", EXPORTER, "5m"),
        Alert("BlackwellExporterSourceDown", "blackwell_exporter_source_up == 0", "warning",
              "An exporter source keeps failing its polls.",
              "Source {{ $labels.source }} on {{ $labels.instance }} has failed its polls for 5 minutes; its "
              "metrics are missing.", EXPORTER, "5m"),
        Alert("BlackwellExporterSourceStale",
              "time() - blackwell_exporter_source_last_success_timestamp_seconds\n"
              f"> {_n(STALE_INTERVALS)} * blackwell_exporter_source_interval_seconds\n"
              "and blackwell_exporter_source_last_success_timestamp_seconds > 0",
              "warning", "An exporter source has not completed a poll for several of its intervals.",
              "Source {{ $labels.source }} on {{ $labels.instance }} last succeeded {{ $value | humanizeDuration }} "
              "ago.", EXPORTER, "5m"),
    ]


def alert_groups(config: MixinConfig) -> list[Group]:
    return [
        Group("blackwell-gpu.alerts", list(_gpu_alerts(config))),
        Group("blackwell-serving.alerts", list(_serving_alerts(config))),
        Group("blackwell-precision.alerts", list(_precision_alerts(config))),
        Group("blackwell-slo.alerts", list(slo_alerts(config))),
        Group("blackwell-exporter.alerts", list(_exporter_alerts(config))),
    ]


def all_alerts(config: MixinConfig | None = None) -> list[Alert]:
    groups = alert_groups(config or MixinConfig())
    return [rule for group in groups for rule in group.rules if isinstance(rule, Alert)]


def alert_names() -> list[str]:
    """Every alert name, once, in file order."""
    return list(dict.fromkeys(alert.name for alert in all_alerts()))


def runbook_file(name: str) -> str:
    """The runbook's path relative to the repository root."""
    return f"runbooks/{name}.md"
