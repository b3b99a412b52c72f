"""Recording rules: the ratios the exporter deliberately does not compute (DESIGN rule 3).

Names follow ``level:metric:operations``. Levels are the labels kept: ``instance``,
``instance_gpu``, ``instance_model``, ``job``. ``job`` is always kept so two deployments
scraped by one Prometheus never mix. Rules later in a group may read rules earlier in it:
Prometheus evaluates a group's rules in order.
"""

from __future__ import annotations

from exporter.mixin.config import MixinConfig
from exporter.mixin.model import Group, Recording
from exporter.mixin.promql import number

QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))

# Names other modules and dashboards refer to.
TOKENS_RATE = "instance_model:blackwell_serving_generation_tokens:rate5m"
INSTANCE_TOKENS_RATE = "instance:blackwell_serving_generation_tokens:rate5m"
JOB_TOKENS_RATE = "job:blackwell_serving_generation_tokens:rate5m"
TOKENS_VS_YESTERDAY = "instance:blackwell_serving_generation_tokens:rate5m_vs_1d"
COST_PER_MILLION = "instance:blackwell_serving_generation_tokens:cost_per_million_rate5m"
HEADROOM = "instance:blackwell_serving_generation_tokens:headroom_ratio_rate5m"
KV_OCCUPANCY = "instance_model:blackwell_serving_kv_cache_blocks:used_ratio"
GPU_UTIL = "instance_gpu:blackwell_gpu_utilization_ratio:avg5m"
PEER_UTIL = "instance_gpu:blackwell_gpu_utilization_ratio:peer_avg5m"
PEER_DEVIATION = "instance_gpu:blackwell_gpu_utilization_ratio:peer_deviation5m"
INSTANCE_POWER = "instance:blackwell_gpu_power_watts:avg5m"
NVLINK_ERRORS = "instance_gpu_link:blackwell_nvlink_errors:increase5m"
C2C_READ_SHARE = "instance_gpu:blackwell_c2c_rx_bytes_per_second:read_share_avg5m"
GEMM_RATE = "instance_gpu_precision:blackwell_gemm_kernel_launches:rate5m"
FP4_HIT_RATE = "instance:blackwell_gemm_kernel_launches:fp4_ratio_rate5m"
FP8_SHARE = "instance:blackwell_gemm_kernel_launches:fp8_ratio_rate5m"
GPU_FP4_HIT_RATE = "instance_gpu:blackwell_gemm_kernel_launches:fp4_ratio_rate5m"
GPU_FP8_SHARE = "instance_gpu:blackwell_gemm_kernel_launches:fp8_ratio_rate5m"
# Per-second rates over an hour; x3600 gives events per hour. A rate, unlike an increase, keeps
# its meaning when drills shrink the window.
TE_LAYER_RATE = "instance_layer:blackwell_te_promotion_events:rate1h"
TE_INSTANCE_RATE = "instance:blackwell_te_promotion_events:rate1h"


def ttft_quantile(name: str) -> str:
    return f"instance_model:blackwell_serving_ttft_seconds:{name}_rate5m"


def itl_quantile(name: str) -> str:
    return f"instance_model:blackwell_serving_inter_token_latency_seconds:{name}_rate5m"


def _serving(config: MixinConfig) -> Group:
    rules = [
        Recording(record=TOKENS_RATE,
                  expr="sum by (job, instance, model) (rate(blackwell_serving_generation_tokens_total[5m]))"),
        Recording(record=INSTANCE_TOKENS_RATE, expr=f"sum by (job, instance) ({TOKENS_RATE})"),
        Recording(record=JOB_TOKENS_RATE, expr=f"sum by (job) ({TOKENS_RATE})"),
        Recording(record="instance_model:blackwell_serving_prompt_tokens:rate5m",
                  expr="sum by (job, instance, model) (rate(blackwell_serving_prompt_tokens_total[5m]))"),
    ]
    for label, q in QUANTILES:
        rules.append(Recording(record=ttft_quantile(label), expr=f"histogram_quantile({q}, sum by (job, instance, model, le) "
                                                     "(rate(blackwell_serving_ttft_seconds_bucket[5m])))"))
    for label, q in QUANTILES:
        rules.append(Recording(record=itl_quantile(label), expr=f"histogram_quantile({q}, sum by (job, instance, model, le) "
                                                    "(rate(blackwell_serving_inter_token_latency_seconds_bucket[5m])))"))
    rules += [
        Recording(record=KV_OCCUPANCY,
                  expr='sum by (job, instance, model) (blackwell_serving_kv_cache_blocks{state="used"})\n'
                  '/ sum by (job, instance, model) (blackwell_serving_kv_cache_blocks{state="max"} > 0)'),
        Recording(record=TOKENS_VS_YESTERDAY, expr=f"{INSTANCE_TOKENS_RATE}\n/ ({INSTANCE_TOKENS_RATE} offset 1d > 0)"),
        # Every GPU of the box is paid for, lost or idle ones included: count gpu_up, not busy GPUs.
        Recording(record=COST_PER_MILLION,
                  expr=f"count by (job, instance) (blackwell_gpu_up) * {number(config.gpu_hour_price / 3600)}\n"
                  f"/ on (job, instance) ({INSTANCE_TOKENS_RATE} > 0) * 1e6"),
        Recording(record=HEADROOM, expr=f"1 - {INSTANCE_TOKENS_RATE} / {number(config.peak_output_tokens_per_second)}"),
    ]
    return Group("blackwell-serving.rules", rules)


def _gpu(config: MixinConfig) -> Group:
    ignored = "|".join(config.nvlink_ignored_error_kinds)
    nvlink5_kinds = f'{{kind!~"{ignored}"}}' if ignored else ""
    # One rule per counter family; the static ``counter`` label keeps their series apart.
    nvlink = [
        ("nvlink5_errors",
         f"sum by (job, instance, gpu, link, kind) (increase(blackwell_nvlink5_errors_total{nvlink5_kinds}[5m]))"),
        # result="total" already counts the failed recoveries (NVML: successful + failed).
        ("nvlink5_recovery_events", "sum by (job, instance, gpu, link) "
                                    '(increase(blackwell_nvlink5_recovery_events_total{result="total"}[5m]))'),
    ]
    for name in ("crc_flit", "replay", "recovery", "dl_crc", "dl_replay", "dl_recovery"):
        nvlink.append((name, f"sum by (job, instance, gpu, link) (increase(blackwell_nvlink_{name}_errors_total[5m]))"))
    rules = [
        Recording(record=GPU_UTIL, expr="avg by (job, instance, gpu) (avg_over_time(blackwell_gpu_utilization_ratio[5m]))"),
        # Mean of the other GPUs of the same box: (sum - own) / (count - 1); one-GPU boxes have no peers.
        Recording(record=PEER_UTIL,
                  expr=f"(sum by (job, instance) ({GPU_UTIL}) - on (job, instance) group_right {GPU_UTIL})\n"
                  f"/ on (job, instance) group_left () ((count by (job, instance) ({GPU_UTIL}) > 1) - 1)"),
        Recording(record=PEER_DEVIATION, expr=f"{GPU_UTIL} - {PEER_UTIL}"),
        Recording(record="instance:blackwell_gpu_utilization_ratio:avg5m", expr=f"avg by (job, instance) ({GPU_UTIL})"),
        Recording(record=INSTANCE_POWER, expr="avg by (job, instance) (avg_over_time(blackwell_gpu_power_watts[5m]))"),
        *(Recording(record=NVLINK_ERRORS, expr=expr, labels={"counter": name}) for name, expr in nvlink),
        # HBM reads are not counted directly: DRAM bandwidth utilization (NVML's GPM metric
        # NVML_GPM_METRIC_DRAM_BW_UTIL, nvml.h: DRAM bandwidth used against the theoretical maximum)
        # x peak approximates reads + writes, so the share is a lower bound of the truth.
        Recording(record=C2C_READ_SHARE,
                  expr='avg by (job, instance, gpu) (avg_over_time(blackwell_c2c_rx_bytes_per_second{kind="data"}[5m]))\n'
                  "/ (\n"
                  '  avg by (job, instance, gpu) (avg_over_time(blackwell_c2c_rx_bytes_per_second{kind="data"}[5m]))\n'
                  "  + avg by (job, instance, gpu) (avg_over_time(blackwell_gpu_dram_bandwidth_utilization_ratio[5m])"
                  " * blackwell_gpu_hbm_peak_bandwidth_bytes_per_second)\n"
                  ")"),
    ]
    return Group("blackwell-gpu.rules", rules)


def _precision() -> Group:
    rules = [
        Recording(record=GEMM_RATE,
                  expr="sum by (job, instance, gpu, precision) (rate(blackwell_gemm_kernel_launches_total[5m]))"),
        Recording(record=GPU_FP4_HIT_RATE, expr=f'sum by (job, instance, gpu) ({GEMM_RATE}{{precision="fp4"}})\n'
                                    f"/ sum by (job, instance, gpu) ({GEMM_RATE})"),
        Recording(record=GPU_FP8_SHARE, expr=f'sum by (job, instance, gpu) ({GEMM_RATE}{{precision="fp8"}})\n'
                                 f"/ sum by (job, instance, gpu) ({GEMM_RATE})"),
        Recording(record=FP4_HIT_RATE, expr=f'sum by (job, instance) ({GEMM_RATE}{{precision="fp4"}})\n'
                                f"/ sum by (job, instance) ({GEMM_RATE})"),
        Recording(record=FP8_SHARE, expr=f'sum by (job, instance) ({GEMM_RATE}{{precision="fp8"}})\n'
                             f"/ sum by (job, instance) ({GEMM_RATE})"),
        Recording(record=TE_LAYER_RATE, expr="sum by (job, instance, layer) (rate(blackwell_te_promotion_events_total[1h]))"),
        Recording(record=TE_INSTANCE_RATE, expr=f"sum by (job, instance) ({TE_LAYER_RATE})"),
    ]
    return Group("blackwell-precision.rules", rules)


def recording_groups(config: MixinConfig) -> list[Group]:
    """Every recording group except the SLO ones (see :mod:`exporter.mixin.slo`)."""
    return [_serving(config), _gpu(config), _precision()]
