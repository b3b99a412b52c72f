"""Every alert the mixin ships, grouped as they are written to ``alerts/``.

Thresholds come from :class:`MixinConfig`; the durations here are production ones and
:func:`exporter.mixin.rules.rule_groups` scales them for drills. Each alert name has one
runbook, ``runbooks/<name>.md``, rendered from ``templates/runbooks/<name>.md.j2``.
"""

from __future__ import annotations

from exporter.foundation import STALE_INTERVALS
from exporter.mixin import recording as rec
from exporter.mixin.config import MixinConfig
from exporter.mixin.domain import domain_alerts
from exporter.mixin.model import Alert, Group
from exporter.mixin.promql import number
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


def _percent(value: float) -> str:
    return f"{value * 100:g}%"


def _gpu_alerts(config: MixinConfig) -> list[Alert]:
    xids = "|".join(str(x) for x in config.critical_xids)
    return [
        Alert(name="BlackwellGPULost", expr="blackwell_gpu_up == 0", severity="critical",
              summary="A GPU stopped answering NVML (fell off the bus or needs a reset).",
              description=f"{_WHERE_GPU} (uuid {{{{ $labels.uuid }}}}) is lost; its tensor-parallel group cannot serve.",
              dashboard=NODE, for_="1m"),
        # Either branch gives one series per GPU; for: 15m asks that calls keep failing, not one Timeout.
        Alert(name="BlackwellNVMLReadErrors",
              expr="max by (job, instance, gpu, uuid) (blackwell_gpu_nvml_partial_read) == 1\n"
              "or sum by (job, instance, gpu, uuid) (increase(blackwell_gpu_nvml_read_errors_total[5m])) > 0",
              severity="warning", summary="NVML calls on a GPU keep failing; some of its series are missing.",
              description=f"{_WHERE_GPU} (uuid {{{{ $labels.uuid }}}}) still answers NVML, but some calls have failed "
              "(Timeout, NoData or a bindings error) for 15 minutes; their series are left out of the polls.",
              dashboard=NODE, for_="15m"),
        Alert(name="BlackwellXIDCritical",
              # The second half catches a code's first event: a new series has no earlier sample to increase from.
              expr=f'increase(blackwell_gpu_xid_errors_total{{xid=~"{xids}"}}[10m]) > 0\n'
              f'or (blackwell_gpu_xid_errors_total{{xid=~"{xids}"}} unless blackwell_gpu_xid_errors_total offset 10m)',
              severity="critical", summary="A GPU reported a critical XID error.",
              description=f"{_WHERE_GPU} reported XID {{{{ $labels.xid }}}} ({{{{ $value }}}} in the last 10 minutes or since "
              "the exporter started).", dashboard=NODE),
        Alert(name="BlackwellECCUncorrectable",
              expr='increase(blackwell_gpu_ecc_errors_total{error_type="uncorrected", counter="volatile"}[10m]) > 0',
              severity="critical", summary="A GPU counted uncorrectable ECC errors.",
              description=f"{_WHERE_GPU} counted {{{{ $value }}}} uncorrectable ECC errors in 10 minutes; data it computed "
              "may be wrong.", dashboard=NODE),
        Alert(name="BlackwellRowRemapFailure", expr="blackwell_gpu_remapped_rows_failure == 1", severity="critical",
              summary="A GPU failed to remap a faulty HBM row and needs service.",
              description=f"{_WHERE_GPU} failed an HBM row remap; drain it and open a hardware ticket.", dashboard=NODE),
        Alert(name="BlackwellThermalThrottling",
              expr='sum by (job, instance, gpu) (rate(blackwell_gpu_clock_event_seconds_total{reason=~"sw_thermal|hw_thermal|hw_slowdown"}[5m]))\n'
              f"> {number(config.throttle_time_ratio)}", severity="warning",
              summary="A GPU's clocks are held down by thermal slowdown.",
              description=f"{_WHERE_GPU} spent {{{{ $value | humanizePercentage }}}} of the last 5 minutes thermally throttled "
              f"(threshold {_percent(config.throttle_time_ratio)}).", dashboard=NODE, for_="10m"),
        Alert(name="BlackwellPowerThrottling",
              expr='sum by (job, instance, gpu) (rate(blackwell_gpu_clock_event_seconds_total{reason=~"sw_power_cap|hw_power_brake"}[5m]))\n'
              f"> {number(config.throttle_time_ratio)}", severity="warning",
              summary="A GPU's clocks are held down by its power cap.",
              description=f"{_WHERE_GPU} spent {{{{ $value | humanizePercentage }}}} of the last 5 minutes power capped "
              f"(threshold {_percent(config.throttle_time_ratio)}).", dashboard=NODE, for_="10m"),
        # max, not sum: on Hopper the legacy and the data-link counters are the same hardware
        # counters read through two NVML paths, so a sum would count every error twice.
        Alert(name="BlackwellNVLinkErrors", expr=f"max by (job, instance, gpu, link) ({rec.NVLINK_ERRORS}) > 0", severity="warning",
              summary="NVLink errors are counting on a link.",
              description=f"{_WHERE_GPU}, NVLink {{{{ $labels.link }}}}: {{{{ $value | humanize }}}} errors, replays or "
              "recoveries in the last 5 minutes on its busiest error counter.", dashboard=NODE, for_="1m"),
        Alert(name="BlackwellGPUStraggler",
              expr=f"{rec.PEER_DEVIATION} < -{number(config.straggler_utilization_gap)}\n"
              f"and on (job, instance, gpu) {rec.PEER_UTIL} > {number(config.straggler_min_peer_utilization)}",
              severity="warning", summary="A GPU is far less busy than its tensor-parallel peers.",
              description=f"{_WHERE_GPU} utilization is {{{{ $value | humanizePercentage }}}} (absolute) away from its peers' mean; "
              "the whole group waits for it.", dashboard=NODE, for_="10m"),
        Alert(name="BlackwellGPUUnderutilizedWhileQueued",
              expr=f"{rec.INSTANCE_POWER} < {number(config.underutilized_power_watts)}\n"
              "and on (job, instance)\n"
              "sum by (job, instance) (avg_over_time(blackwell_serving_pending_requests[5m]))"
              f" > {number(config.underutilized_min_queued_requests)}",
              severity="warning", summary="Requests are queued while the GPUs draw little power.",
              description=f"GPUs on {{{{ $labels.instance }}}} average {{{{ $value | humanize }}}}W (under "
              f"{number(config.underutilized_power_watts)}W) while requests wait: the batcher is starved.", dashboard=FLEET, for_="15m"),
    ]


def _serving_alerts(config: MixinConfig) -> list[Alert]:
    return [
        Alert(name="BlackwellServingNotReady", expr="blackwell_serving_ready == 0", severity="critical",
              summary="The serving runtime answers but is not ready.",
              description="{{ $labels.runtime }} at {{ $labels.endpoint }} on {{ $labels.instance }} reports not ready.",
              dashboard=SERVING, for_="5m"),
        Alert(name="BlackwellServingDown", expr="blackwell_serving_up == 0", severity="critical",
              summary="The serving runtime's metrics endpoint does not answer.",
              description="{{ $labels.runtime }} at {{ $labels.endpoint }} on {{ $labels.instance }} did not answer the "
              "exporter's last poll.", dashboard=SERVING, for_="5m"),
        Alert(name="BlackwellTTFTSLOViolation", expr=f"{rec.ttft_quantile('p95')} > {number(config.ttft_slo_seconds)}", severity="warning",
              summary="TTFT p95 is over the objective.",
              description=f"{_WHERE_MODEL}: TTFT p95 is {{{{ $value | humanizeDuration }}}}, objective "
              f"{number(config.ttft_slo_seconds)}s.", dashboard=SERVING, for_="10m"),
        Alert(name="BlackwellTTFTLongPromptSpikes",
              expr=f"{rec.ttft_quantile('p99')} > {number(config.ttft_long_prompt_p99_seconds)}\n"
              f"and on (job, instance, model)\n"
              f"{rec.ttft_quantile('p99')} / {rec.ttft_quantile('p50')} > {number(config.ttft_tail_ratio)}",
              severity="warning", summary="TTFT p99 spikes while the median stays fast: long prompts stall.",
              description=f"{_WHERE_MODEL}: TTFT p99 is {{{{ $value | humanizeDuration }}}}, more than "
              f"{number(config.ttft_tail_ratio)}x the median.", dashboard=SERVING, for_="10m"),
        Alert(name="BlackwellColdStartTTFT", expr=f"{rec.ttft_quantile('p50')} > {number(config.cold_start_ttft_seconds)}", severity="warning",
              summary="Median TTFT is over the cold-start limit, as after a deploy with cold caches.",
              description=f"{_WHERE_MODEL}: median TTFT is {{{{ $value | humanizeDuration }}}} (limit "
              f"{number(config.cold_start_ttft_seconds)}s).", dashboard=SERVING, for_="2m"),
        Alert(name="BlackwellKVCacheNearFull", expr=f"{rec.KV_OCCUPANCY} > {number(config.kv_cache_occupancy_max)}", severity="warning",
              summary="The KV cache is nearly full.",
              description=f"{_WHERE_MODEL}: {{{{ $value | humanizePercentage }}}} of KV-cache blocks are in use "
              f"(threshold {_percent(config.kv_cache_occupancy_max)}).", dashboard=SERVING, for_="10m"),
        Alert(name="BlackwellThroughputDrop",
              expr=f"{rec.TOKENS_VS_YESTERDAY} < {number(1 - config.throughput_drop_ratio)}\n"
              f"and on (job, instance) {rec.INSTANCE_TOKENS_RATE} offset 1d > {number(config.throughput_min_tokens_per_second)}",
              severity="warning", summary="Output tokens/s fell well under the same hour yesterday.",
              description="{{ $labels.instance }} generates {{ $value | humanizePercentage }} of yesterday's output tokens/s "
              f"at this hour (warns under {_percent(1 - config.throughput_drop_ratio)}).", dashboard=FLEET, for_="15m"),
    ]


def _precision_alerts(config: MixinConfig) -> list[Alert]:
    return [
        Alert(name="BlackwellMXFP4HitRateLow", expr=f"{rec.FP4_HIT_RATE} < {number(config.mxfp4_hit_rate_min)}\n{_EXPECTS_FP4}",
              severity="warning", summary="Too few GEMMs run on the MX-FP4 path.",
              description="{{ $labels.instance }}: {{ $value | humanizePercentage }} of GEMM launches use MX-FP4 "
              f"(expected at least {_percent(config.mxfp4_hit_rate_min)}).", dashboard=PRECISION, for_="15m"),
        Alert(name="BlackwellFP8FallbackHigh", expr=f"{rec.FP8_SHARE} > {number(config.fp8_fallback_share_max)}\n{_EXPECTS_FP4}",
              severity="warning", summary="Too many GEMMs fall back to FP8.",
              description="{{ $labels.instance }}: {{ $value | humanizePercentage }} of GEMM launches fell back to FP8 "
              f"(threshold {_percent(config.fp8_fallback_share_max)}).", dashboard=PRECISION, for_="15m"),
        Alert(name="BlackwellTEPromotionStorm", expr=f"{rec.TE_INSTANCE_RATE} * 3600 > {number(config.te_promotions_per_hour_max)}",
              severity="warning",
              summary="Transformer Engine promotes tensors to higher precision too often.",
              description="{{ $labels.instance }}: {{ $value | humanize }} TE promotion events per hour over the last hour "
              f"(threshold {number(config.te_promotions_per_hour_max)}).", dashboard=PRECISION, for_="5m"),
        Alert(name="BlackwellTEPromotionLayerSpike",
              expr=f"{rec.TE_LAYER_RATE} * 3600 > {number(config.te_layer_spike_per_hour)}\n"
              f"and on (job, instance, layer)\n"
              f"{rec.TE_LAYER_RATE} / on (job, instance) group_left {rec.TE_INSTANCE_RATE} > {number(config.te_layer_spike_share)}",
              severity="warning", summary="One layer holds most Transformer Engine promotion events.",
              description="{{ $labels.instance }}: layer {{ $labels.layer }} had {{ $value | humanize }} TE promotion events per "
              "hour over the last hour, most of them all.", dashboard=PRECISION, for_="5m"),
        Alert(name="BlackwellGraceC2CReadShareHigh",
              expr=f"({rec.C2C_READ_SHARE} > {number(config.c2c_read_share_max)} and deriv({rec.C2C_READ_SHARE}[30m]) > 0)\n"
              f"or {rec.C2C_READ_SHARE} > {number(config.c2c_read_share_critical)}",
              severity="warning", summary="A growing share of GPU memory reads is served from Grace over NVLink-C2C.",
              description=f"{_WHERE_GPU}: {{{{ $value | humanizePercentage }}}} of memory reads come over C2C (warns over "
              f"{_percent(config.c2c_read_share_max)} and climbing, or over {_percent(config.c2c_read_share_critical)}).",
              dashboard=PRECISION, for_="10m"),
    ]


def _exporter_alerts(config: MixinConfig) -> list[Alert]:
    return [
        Alert(name="BlackwellExporterDown", expr="up == 0", severity="critical",
              summary="Prometheus cannot scrape the Blackwell exporter.",
              description="{{ $labels.instance }} (job {{ $labels.job }}) has not answered scrapes for 5 minutes; every "
              "GPU and serving alert for it is blind.", dashboard=EXPORTER, for_="5m"),
        Alert(name="BlackwellExporterSourceDown", expr="blackwell_exporter_source_up == 0", severity="warning",
              summary="An exporter source keeps failing its polls.",
              description="Source {{ $labels.source }} on {{ $labels.instance }} has failed its polls for 5 minutes; its "
              "metrics are missing.", dashboard=EXPORTER, for_="5m"),
        Alert(name="BlackwellExporterSourceStale",
              expr="time() - blackwell_exporter_source_last_success_timestamp_seconds\n"
              f"> {number(STALE_INTERVALS)} * blackwell_exporter_source_interval_seconds\n"
              "and blackwell_exporter_source_last_success_timestamp_seconds > 0",
              severity="warning", summary="An exporter source has not completed a poll for several of its intervals.",
              description="Source {{ $labels.source }} on {{ $labels.instance }} last succeeded {{ $value | humanizeDuration }} "
              "ago.", dashboard=EXPORTER, for_="5m"),
    ]


def alert_groups(config: MixinConfig) -> list[Group]:
    """Every alert group, less the alerts named in ``mixin.disabled_alerts`` (a name the mixin does not
    ship is an error, so a typo cannot leave an alert on that was meant to be off)."""
    groups = [
        Group("blackwell-gpu.alerts", list(_gpu_alerts(config))),
        Group("blackwell-serving.alerts", list(_serving_alerts(config))),
        Group("blackwell-precision.alerts", list(_precision_alerts(config))),
        Group("blackwell-slo.alerts", list(slo_alerts(config))),
        Group("blackwell-domain.alerts", domain_alerts(config)),
        Group("blackwell-exporter.alerts", list(_exporter_alerts(config))),
    ]
    shipped = {rule.name for group in groups for rule in group.rules if isinstance(rule, Alert)}
    unknown = sorted(set(config.disabled_alerts) - shipped)
    if unknown:
        raise ValueError(f"mixin.disabled_alerts names alerts the mixin does not ship: {', '.join(unknown)}")
    disabled = set(config.disabled_alerts)
    return [Group(group.name, [rule for rule in group.rules if not (isinstance(rule, Alert) and rule.name in disabled)],
                  group.interval) for group in groups]


def all_alerts(config: MixinConfig | None = None) -> list[Alert]:
    groups = alert_groups(config or MixinConfig())
    return [rule for group in groups for rule in group.rules if isinstance(rule, Alert)]


def alert_names() -> list[str]:
    """Every alert name, once, in file order."""
    return list(dict.fromkeys(alert.name for alert in all_alerts()))


def runbook_file(name: str) -> str:
    """The runbook's path relative to the repository root."""
    return f"runbooks/{name}.md"
