"""Grafana dashboards as JSON (schemaVersion 42), built from short panel declarations.

Every dashboard has the variables datasource -> instance -> gpu, a stable uid, tags, and
panels that each carry a unit and a description. Queries read the recording rules where one
exists, so a panel and the alert on the same signal always agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.foundation import STALE_INTERVALS
from exporter.mixin import recording as rec
from exporter.mixin import slo
from exporter.mixin.config import MixinConfig

SCHEMA_VERSION = 42
TAGS = ["blackwell", "blackwell-exporter"]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
I = 'instance=~"$instance"'  # noqa: E741 - the selector every query carries
IG = 'instance=~"$instance", gpu=~"$gpu"'
TOKENS_UNIT = "suffix: tok/s"


@dataclass(frozen=True)
class Q:
    """One query: PromQL and the legend Grafana shows for its series."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class P:
    """One panel. ``width`` is in grid columns (24 per row); panels flow left to right."""

    title: str
    description: str
    unit: str
    queries: list[Q]
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None
    thresholds: list[tuple[float, str]] = field(default_factory=list)


def _variables(job: str) -> list[dict]:
    def query_var(name: str, label: str, query: str, description: str) -> dict:
        return {
            "type": "query", "name": name, "label": label, "description": description,
            "datasource": DATASOURCE, "query": query, "definition": query,
            "refresh": 2, "sort": 7, "multi": True, "includeAll": True, "allValue": ".*",
            "current": {"text": "All", "value": "$__all"},
        }

    return [
        {"type": "datasource", "name": "datasource", "label": "Data source", "query": "prometheus",
         "description": "Prometheus that scrapes the exporter", "current": {"text": "default", "value": "default"}},
        query_var("instance", "Instance", f'label_values(blackwell_exporter_build_info{{job="{job}"}}, instance)',
                  "Exporter instances (one per serving node)"),
        query_var("gpu", "GPU", 'label_values(blackwell_gpu_up{instance=~"$instance"}, gpu)',
                  "GPU index on the selected instances"),
    ]


def _panel(panel: P, panel_id: int, x: int, y: int) -> dict:
    defaults: dict = {"unit": panel.unit, "description": panel.description}
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    steps: list[dict] = [{"value": None, "color": "green"}]
    steps += [{"value": value, "color": color} for value, color in panel.thresholds]
    defaults["thresholds"] = {"mode": "absolute", "steps": steps}
    defaults["color"] = {"mode": "thresholds" if panel.kind == "stat" else "palette-classic"}
    if panel.kind == "timeseries" and panel.thresholds:
        defaults["custom"] = {"thresholdsStyle": {"mode": "dashed"}}
    out: dict = {
        "type": panel.kind,
        "id": panel_id,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": [
            {"refId": chr(ord("A") + n), "datasource": DATASOURCE, "editorMode": "code", "expr": q.expr,
             "legendFormat": q.legend or "__auto", "range": True}
            for n, q in enumerate(panel.queries)
        ],
        "fieldConfig": {"defaults": defaults, "overrides": []},
    }
    if panel.kind == "timeseries":
        out["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
                          "tooltip": {"mode": "multi", "sort": "desc"}}
    elif panel.kind == "stat":
        out["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                          "colorMode": "value", "graphMode": "area", "textMode": "auto", "justifyMode": "auto"}
    elif panel.kind == "heatmap":
        out["options"] = {"calculate": False, "cellGap": 1, "yAxis": {"axisPlacement": "left"},
                          "color": {"mode": "scheme", "scheme": "Reds", "steps": 64, "exponent": 0.5},
                          "legend": {"show": True}, "tooltip": {"mode": "single", "yHistogram": False}}
    return out


def dashboard(uid: str, title: str, description: str, panels: list[P], config: MixinConfig,
              extra_tags: list[str]) -> dict:
    laid: list[dict] = []
    x = y = row_height = 0
    for n, panel in enumerate(panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        laid.append(_panel(panel, n, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS + extra_tags,
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "links": [{"title": "Blackwell dashboards", "type": "dashboards", "icon": "external link", "tooltip": "",
                   "tags": ["blackwell"], "asDropdown": True, "targetBlank": False, "includeVars": True,
                   "keepTime": True}],
        "templating": {"list": _variables(config.job)},
        "annotations": {"list": [{
            "name": "Blackwell alerts", "enable": True, "iconColor": "red", "datasource": DATASOURCE,
            "expr": 'ALERTS{alertstate="firing", alertname=~"Blackwell.*", instance=~"$instance"}',
            "titleFormat": "{{alertname}}", "textFormat": "{{instance}} {{severity}}", "step": "60s",
        }]},
        "panels": laid,
    }


def _fleet(c: MixinConfig) -> dict:
    return dashboard("blackwell-fleet-overview", "Blackwell / Fleet overview",
                     "Every serving node at a glance: throughput, latency, GPU health and load.", [
        P("Output tokens/s", "Output tokens generated per second over the selected instances.", TOKENS_UNIT,
          [Q(f"sum({rec.INSTANCE_TOKENS_RATE}{{{I}}})")], "stat", 6, 4),
        P("GPUs up", "GPUs answering NVML over the selected instances.", "none",
          [Q(f"sum(blackwell_gpu_up{{{I}}})")], "stat", 6, 4),
        P("GPUs lost", "GPUs that fell off the bus or need a reset (gpu_up == 0).", "none",
          [Q(f"sum(1 - blackwell_gpu_up{{{I}}})")], "stat", 6, 4, thresholds=[(1, "red")]),
        P("Worst TTFT p95", "Highest 5-minute TTFT p95 of any model on the selected instances.", "s",
          [Q(f"max({rec.ttft_quantile('p95')}{{{I}}})")], "stat", 6, 4,
          thresholds=[(c.ttft_slo_seconds, "red")]),
        P("Output tokens/s by instance", "Generation throughput per node (recording rule over 5m).", TOKENS_UNIT,
          [Q(f"{rec.INSTANCE_TOKENS_RATE}{{{I}}}", "{{instance}}")]),
        P("Tokens/s vs same hour yesterday",
          "Today's output tokens/s as a fraction of the same time yesterday; empty until a day of history exists.",
          "percentunit", [Q(f"{rec.TOKENS_VS_YESTERDAY}{{{I}}}", "{{instance}}")],
          thresholds=[(1 - c.throughput_drop_ratio, "red")]),
        P("TTFT p95 by instance", "Time to first token, 95th percentile over 5m, per node and model.", "s",
          [Q(f"{rec.ttft_quantile('p95')}{{{I}}}", "{{instance}} {{model}}")],
          thresholds=[(c.ttft_slo_seconds, "red")]),
        P("Mean GPU utilization by instance", "Mean over the node's GPUs of the 5-minute utilization.",
          "percentunit", [Q(f"instance:blackwell_gpu_utilization_ratio:avg5m{{{I}}}", "{{instance}}")], min=0, max=1),
        P("Mean GPU power by instance", "Mean GPU power draw per node over 5m; a saturated B200 draws 950-1000 W.",
          "watt", [Q(f"{rec.INSTANCE_POWER}{{{I}}}", "{{instance}}")],
          thresholds=[(c.underutilized_power_watts, "green")]),
        P("Queued requests", "Requests waiting in the serving queue per node.", "none",
          [Q(f"sum by (instance) (blackwell_serving_pending_requests{{{I}}})", "{{instance}}")]),
        P("KV-cache occupancy", "Used / max KV-cache blocks per node and model.", "percentunit",
          [Q(f"{rec.KV_OCCUPANCY}{{{I}}}", "{{instance}} {{model}}")], min=0, max=1,
          thresholds=[(c.kv_cache_occupancy_max, "red")]),
        P("Serving ready", "1 when the serving runtime's readiness endpoint says ready.", "bool",
          [Q(f"blackwell_serving_ready{{{I}}}", "{{instance}} {{runtime}}")]),
    ], c, ["fleet"])


def _node(c: MixinConfig) -> dict:
    return dashboard("blackwell-node-gpus", "Blackwell / Node GPUs and NVLink",
                     "Per-GPU health of one node and its NVLink fabric, per link.", [
        P("GPU utilization", "Fraction of time a kernel was running, per GPU (NVML).", "percentunit",
          [Q(f"blackwell_gpu_utilization_ratio{{{IG}}}", "{{instance}} gpu {{gpu}}")], min=0, max=1),
        P("Deviation from peers", "GPU utilization minus the mean of the other GPUs of the node (5m); a "
          "straggler sits far below 0.", "percentunit",
          [Q(f"{rec.PEER_DEVIATION}{{{IG}}}", "{{instance}} gpu {{gpu}}")],
          thresholds=[(-c.straggler_utilization_gap, "green")]),
        P("Power", "GPU power draw against its enforced limit.", "watt",
          [Q(f"blackwell_gpu_power_watts{{{IG}}}", "{{instance}} gpu {{gpu}}"),
           Q(f"max by (instance) (blackwell_gpu_power_limit_watts{{{IG}}})", "{{instance}} limit")]),
        P("Temperature", "GPU core and HBM temperatures.", "celsius",
          [Q(f"blackwell_gpu_temperature_celsius{{{IG}}}", "{{instance}} gpu {{gpu}} core"),
           Q(f"blackwell_gpu_memory_temperature_celsius{{{IG}}}", "{{instance}} gpu {{gpu}} hbm")]),
        P("SM clock", "Current SM clock; drops under throttling.", "hertz",
          [Q(f"blackwell_gpu_sm_clock_hertz{{{IG}}}", "{{instance}} gpu {{gpu}}")]),
        P("Clock throttle time", "Fraction of time the clocks were held down, by reason.", "percentunit",
          [Q(f"sum by (instance, gpu, reason) (rate(blackwell_gpu_clock_event_seconds_total{{{IG}}}[$__rate_interval]))",
             "{{instance}} gpu {{gpu}} {{reason}}")], min=0),
        P("HBM used", "Framebuffer memory in use against installed.", "bytes",
          [Q(f"blackwell_gpu_memory_used_bytes{{{IG}}}", "{{instance}} gpu {{gpu}}"),
           Q(f"max by (instance) (blackwell_gpu_memory_total_bytes{{{IG}}})", "{{instance}} total")]),
        P("ECC errors", "ECC errors per second by type (volatile counters).", "short",
          [Q(f'sum by (instance, gpu, error_type) (rate(blackwell_gpu_ecc_errors_total{{{IG}, counter="volatile"}}[$__rate_interval]))',
             "{{instance}} gpu {{gpu}} {{error_type}}")]),
        P("XID events", "XID events in the dashboard's time range by code (every event counted).", "none",
          [Q(f"sum by (instance, gpu, xid) (increase(blackwell_gpu_xid_errors_total{{{IG}}}[$__range]))",
             "{{instance}} gpu {{gpu}} xid {{xid}}")], "stat", 8),
        P("Row remap failure", "1 when an HBM row remap failed: the GPU needs service.", "bool",
          [Q(f"max by (instance, gpu) (blackwell_gpu_remapped_rows_failure{{{IG}}})", "{{instance}} gpu {{gpu}}")],
          "stat", 8, thresholds=[(1, "red")]),
        P("PCIe replays", "PCIe replays per second.", "short",
          [Q(f"sum by (instance, gpu) (rate(blackwell_gpu_pcie_replay_total{{{IG}}}[$__rate_interval]))",
             "{{instance}} gpu {{gpu}}")], width=8),
        P("NVLink errors per link (heatmap)",
          "Data-link errors, replays and recoveries per GPU and link in 5-minute windows, all counter "
          "families (NVLink5 COUNT_* on Blackwell, legacy and DL counters on Hopper).", "short",
          [Q(f"sum by (instance, gpu, link) ({rec.NVLINK_ERRORS}{{{IG}}})", "gpu {{gpu}} link {{link}}")],
          "heatmap", 24, 10),
        P("NVLink errors by counter", "The same errors by counter family and kind.", "short",
          [Q(f"sum by (instance, gpu, counter, kind) ({rec.NVLINK_ERRORS}{{{IG}}})",
             "{{instance}} gpu {{gpu}} {{counter}} {{kind}}")]),
        P("NVLink5 bit error rate", "Decoded NVLink5 BER per link, effective (post-FEC) and symbol (pre-FEC).",
          "sci", [Q(f"max by (instance, gpu, kind) (blackwell_nvlink5_bit_error_rate{{{IG}}})",
                    "{{instance}} gpu {{gpu}} {{kind}}")]),
        P("NVLink throughput per link", "GPM receive and transmit rate per link.", "Bps",
          [Q(f"sum by (instance, gpu) (blackwell_nvlink_link_rx_bytes_per_second{{{IG}}})", "{{instance}} gpu {{gpu}} rx"),
           Q(f"sum by (instance, gpu) (blackwell_nvlink_link_tx_bytes_per_second{{{IG}}})", "{{instance}} gpu {{gpu}} tx")]),
        P("NVLink links up", "Active links per GPU.", "none",
          [Q(f"sum by (instance, gpu) (blackwell_nvlink_link_up{{{IG}}})", "{{instance}} gpu {{gpu}}")]),
        P("Hopper legacy CRC flit errors", "Legacy nvmlDeviceGetNvLinkErrorCounter CRC_FLIT per second (Hopper "
          "and older; Blackwell reports the NVLink5 counters instead).", "short",
          [Q(f"sum by (instance, gpu) (rate(blackwell_nvlink_crc_flit_errors_total{{{IG}}}[$__rate_interval]))",
             "{{instance}} gpu {{gpu}}")]),
        P("Hopper DL CRC errors", "NVLINK_ERROR_DL_CRC per second, as nvidia-smi nvlink -e prints on Hopper.", "short",
          [Q(f"sum by (instance, gpu) (rate(blackwell_nvlink_dl_crc_errors_total{{{IG}}}[$__rate_interval]))",
             "{{instance}} gpu {{gpu}}")]),
    ], c, ["gpu", "nvlink"])


def _serving(c: MixinConfig) -> dict:
    budget_ttft = 1 - c.ttft_slo_objective
    budget_avail = 1 - c.availability_slo_objective
    return dashboard("blackwell-serving-slos", "Blackwell / Serving SLOs",
                     "TTFT and inter-token latency, throughput, queue and KV cache, and SLO burn rates.", [
        P("TTFT p50 / p95 / p99", "Time to first token quantiles over 5m, from the runtime's histogram.", "s",
          [Q(f"{rec.ttft_quantile(n)}{{{I}}}", f"{{{{instance}}}} {{{{model}}}} {n}") for n, _ in rec.QUANTILES],
          thresholds=[(c.ttft_slo_seconds, "red")]),
        P("Inter-token latency p50 / p95 / p99", "Time between output tokens, quantiles over 5m.", "s",
          [Q(f"{rec.itl_quantile(n)}{{{I}}}", f"{{{{instance}}}} {{{{model}}}} {n}") for n, _ in rec.QUANTILES]),
        P("Tokens/s", "Output and prompt tokens per second.", TOKENS_UNIT,
          [Q(f"{rec.TOKENS_RATE}{{{I}}}", "{{instance}} {{model}} output"),
           Q(f"instance_model:blackwell_serving_prompt_tokens:rate5m{{{I}}}", "{{instance}} {{model}} prompt")]),
        P("Requests/s", "Successful and failed requests per second, failures by reason.", "reqps",
          [Q(f"sum by (instance, model) (rate(blackwell_serving_request_success_total{{{I}}}[$__rate_interval]))",
             "{{instance}} {{model}} ok"),
           Q(f"sum by (instance, model, reason) (rate(blackwell_serving_request_failure_total{{{I}}}[$__rate_interval]))",
             "{{instance}} {{model}} {{reason}}")]),
        P("Queue", "Requests waiting in the server queue and in-flight batcher requests by state.", "none",
          [Q(f"sum by (instance, model) (blackwell_serving_pending_requests{{{I}}})", "{{instance}} pending"),
           Q(f'blackwell_serving_batch_requests{{{I}, state=~"active|max|waiting"}}', "{{instance}} {{state}}")]),
        P("Queue time p95", "95th percentile of time requests wait before scheduling.", "s",
          [Q(f"histogram_quantile(0.95, sum by (instance, model, le) "
             f"(rate(blackwell_serving_queue_time_seconds_bucket{{{I}}}[$__rate_interval])))", "{{instance}} {{model}}")]),
        P("KV-cache occupancy", "Used / max KV-cache blocks.", "percentunit",
          [Q(f"{rec.KV_OCCUPANCY}{{{I}}}", "{{instance}} {{model}}")], min=0, max=1,
          thresholds=[(c.kv_cache_occupancy_max, "red")]),
        P("KV-cache prefix hit rate", "Share of KV blocks served from the prefix cache (runtime's figure).",
          "percentunit", [Q(f"blackwell_serving_kv_cache_hit_ratio{{{I}}}", "{{instance}} {{model}}")], min=0, max=1),
        P("TTFT SLO burn rate", f"Rate the TTFT error budget burns (1 = exactly spent over the window); "
          f"objective {c.ttft_slo_objective:g} of requests under {c.ttft_slo_seconds:g}s. Pages at 14.4 (1h & 5m).",
          "none", [Q(f"{slo.ttft_error_ratio(w)}{{{I}}} / {budget_ttft:.6g}", f"{{{{instance}}}} {{{{model}}}} {w}")
                   for w in ("5m", "1h", "6h")], thresholds=[(14.4, "red")]),
        P("Availability SLO burn rate", f"Rate the availability error budget burns; objective "
          f"{c.availability_slo_objective:g} of requests succeed (client cancels excluded).", "none",
          [Q(f"{slo.availability_error_ratio(w)}{{{I}}} / {budget_avail:.6g}", f"{{{{instance}}}} {{{{model}}}} {w}")
           for w in ("5m", "1h", "6h")], thresholds=[(14.4, "red")]),
        P("Prompt length p50 / p99", "Prompt tokens per request.", "none",
          [Q(f"histogram_quantile({q}, sum by (instance, model, le) "
             f"(rate(blackwell_serving_prompt_length_tokens_bucket{{{I}}}[$__rate_interval])))", f"{{{{instance}}}} {n}")
           for n, q in (("p50", 0.5), ("p99", 0.99))]),
        P("End-to-end latency p95", "Request latency as the runtime measures it, 95th percentile.", "s",
          [Q(f"histogram_quantile(0.95, sum by (instance, model, le) "
             f"(rate(blackwell_serving_e2e_latency_seconds_bucket{{{I}}}[$__rate_interval])))", "{{instance}} {{model}}")]),
        P("Cold-start events", "Engine loads, CUDA graph captures, autotuning and JIT compiles the logs source "
          "saw in the time range: a cold start explains slow first tokens.", "none",
          [Q(f"sum by (instance, event) (increase(blackwell_engine_cold_start_events_total{{{I}}}[$__range]))",
             "{{instance}} {{event}}")]),
        P("CUDA out-of-memory errors", "CUDA OOM errors in the serving logs over the time range.", "none",
          [Q(f"sum by (instance) (increase(blackwell_cuda_oom_errors_total{{{I}}}[$__range]))", "{{instance}}")],
          "stat", 12, thresholds=[(1, "red")]),
    ], c, ["serving", "slo"])


def _precision(c: MixinConfig) -> dict:
    return dashboard("blackwell-precision-memory", "Blackwell / Precision and memory tiers",
                     "Which GEMM path ran (MX-FP4, FP8, 16-bit), Transformer Engine promotions, and how much "
                     "memory traffic Grace serves over NVLink-C2C.", [
        P("MX-FP4 hit rate", "Share of GEMM kernel launches on the FP4 path, per GPU (5m).", "percentunit",
          [Q(f"{rec.GPU_FP4_HIT_RATE}{{{IG}}}", "{{instance}} gpu {{gpu}}")], min=0, max=1,
          thresholds=[(c.mxfp4_hit_rate_min, "green")]),
        P("FP8 fallback share", "Share of GEMM kernel launches on the FP8 path, per GPU (5m).", "percentunit",
          [Q(f"{rec.GPU_FP8_SHARE}{{{IG}}}", "{{instance}} gpu {{gpu}}")], min=0,
          thresholds=[(c.fp8_fallback_share_max, "red")]),
        P("GEMM launches/s by precision (sampled)", "GEMM kernel launches per second by precision path, as the "
          "in-process sampler sees them: only inside its sampling windows (about the duty cycle of all launches), "
          "so compare precisions with each other, not with the runtime's own totals.", "ops",
          [Q(f"sum by (instance, precision) ({rec.GEMM_RATE}{{{IG}}})", "{{instance}} {{precision}}")]),
        P("GEMM time by precision (sampled)", "GPU time in GEMM kernels per second of wall time, by precision, "
          "inside the sampler's windows (scaled down by its duty cycle like the launches).",
          "percentunit", [Q(f"sum by (instance, precision) (rate(blackwell_gemm_kernel_seconds_total{{{IG}}}"
                            "[$__rate_interval]))", "{{instance}} {{precision}}")]),
        P("TE promotions by layer (top 10)", "Transformer Engine promotion events per hour, by layer, averaged "
          "over the last hour.", "none",
          [Q(f"topk(10, {rec.TE_LAYER_RATE}{{{I}}} * 3600)", "{{instance}} layer {{layer}}")]),
        P("TE promotions per hour", "All TE promotion events of the node per hour, averaged over the last hour.",
          "none", [Q(f"{rec.TE_INSTANCE_RATE}{{{I}}} * 3600", "{{instance}}")], thresholds=[(c.te_promotions_per_hour_max, "red")]),
        P("Grace C2C read share", "C2C data received / (C2C data + DRAM bandwidth utilization x peak HBM "
          "bandwidth): share of GPU memory reads served from Grace (GB200 only; approximation, see docs).",
          "percentunit", [Q(f"{rec.C2C_READ_SHARE}{{{IG}}}", "{{instance}} gpu {{gpu}}")], min=0,
          thresholds=[(c.c2c_read_share_max, "red")]),
        P("C2C and HBM bandwidth", "Bytes/s received over NVLink-C2C and estimated HBM traffic.", "Bps",
          [Q(f'blackwell_c2c_rx_bytes_per_second{{{IG}, kind="data"}}', "{{instance}} gpu {{gpu}} c2c rx"),
           Q(f"blackwell_gpu_dram_bandwidth_utilization_ratio{{{IG}}} * "
             f"blackwell_gpu_hbm_peak_bandwidth_bytes_per_second{{{IG}}}", "{{instance}} gpu {{gpu}} hbm")]),
        P("Tensor pipe active", "GPM: fraction of time any tensor pipe was active.", "percentunit",
          [Q(f'blackwell_gpu_tensor_active_ratio{{{IG}, pipe="any"}}', "{{instance}} gpu {{gpu}}")], min=0, max=1),
        P("DRAM bandwidth utilization", "GPM: fraction of peak HBM bandwidth in use.", "percentunit",
          [Q(f"blackwell_gpu_dram_bandwidth_utilization_ratio{{{IG}}}", "{{instance}} gpu {{gpu}}")], min=0, max=1),
        P("Engine quantization", "What the engine was built with (engine source: quant_algo, KV-cache "
          "quantization, parallelism).", "none",
          [Q(f"count by (instance, engine, quant_algo, kv_cache_quant_algo, tensor_parallel) "
             f"(blackwell_engine_info{{{I}}})",
             "{{instance}} {{quant_algo}} kv {{kv_cache_quant_algo}} tp {{tensor_parallel}}")], "stat", 8),
        P("Engine GEMM layers by precision", "Linear layers of the engine by the precision they were built in.",
          "none", [Q(f"sum by (instance, precision) (blackwell_engine_gemm_layers{{{I}}})",
                     "{{instance}} {{precision}}")], width=8),
        P("FP8 fallback warnings/s", "FP8 fallback warnings the logs source counted, per second.", "short",
          [Q(f"sum by (instance, rule) (rate(blackwell_fp8_fallback_warnings_total{{{I}}}[$__rate_interval]))",
             "{{instance}} {{rule}}")], width=8),
        P("Dispatch sampler duty cycle", "Share of time the in-process kernel sampler records; the GEMM "
          "precision panels are estimated from these windows.", "percentunit",
          [Q(f"blackwell_dispatch_sampler_duty_cycle_ratio{{{I}}}", "{{instance}} {{process}}")], min=0, max=1),
        P("Dispatch sampler dropped records/s", "Kernel records the sampler lost (buffer overflow); high values "
          "make the precision shares less certain.", "short",
          [Q(f"sum by (instance, process) (rate(blackwell_dispatch_sampler_dropped_records_total{{{I}}}"
             "[$__rate_interval]))", "{{instance}} {{process}}")]),
    ], c, ["precision", "memory"])


def _cost(c: MixinConfig) -> dict:
    return dashboard("blackwell-cost-capacity", "Blackwell / Cost and capacity",
                     f"Cost per 1M output tokens at {c.gpu_hour_price:g} per GPU-hour, and headroom against "
                     f"{c.peak_output_tokens_per_second:g} tokens/s per node.", [
        P("Cost per 1M output tokens", f"GPUs x {c.gpu_hour_price:g} per GPU-hour / output tokens per second "
          "(mixin.gpu_hour_price).", "none", [Q(f"{rec.COST_PER_MILLION}{{{I}}}", "{{instance}}")]),
        P("Capacity headroom", f"1 - output tokens/s / {c.peak_output_tokens_per_second:g} "
          "(mixin.peak_output_tokens_per_second).", "percentunit",
          [Q(f"{rec.HEADROOM}{{{I}}}", "{{instance}}")], max=1, thresholds=[(0.1, "green")]),
        P("Tokens/s against peak", "Output tokens/s per node and the configured saturation peak.", TOKENS_UNIT,
          [Q(f"{rec.INSTANCE_TOKENS_RATE}{{{I}}}", "{{instance}}"),
           Q(f"vector({c.peak_output_tokens_per_second:g})", "peak")]),
        P("Tokens/s today and yesterday", "Output tokens/s now and at the same time yesterday (needs a day of "
          "history).", TOKENS_UNIT,
          [Q(f"{rec.INSTANCE_TOKENS_RATE}{{{I}}}", "{{instance}} today"),
           Q(f"{rec.INSTANCE_TOKENS_RATE}{{{I}}} offset 1d", "{{instance}} yesterday")]),
        P("Energy per 1M output tokens", "GPU energy (NVML counters) per million output tokens.", "kwatth",
          [Q(f"sum by (instance) (rate(blackwell_gpu_energy_joules_total{{{I}}}[$__rate_interval])) "
             f"/ on (instance) sum by (instance) ({rec.INSTANCE_TOKENS_RATE}{{{I}}}) * 1e6 / 3.6e6", "{{instance}}")]),
        P("GPUs billed", "GPUs per node, lost ones included (they are paid for).", "none",
          [Q(f"count by (instance) (blackwell_gpu_up{{{I}}})", "{{instance}}")]),
    ], c, ["cost", "capacity"])


def _exporter(c: MixinConfig) -> dict:
    return dashboard("blackwell-exporter-health", "Blackwell / Exporter health",
                     "Is the exporter scraped, and is every source polling on time?", [
        P("Scrape up", "1 when Prometheus scraped the exporter successfully.", "bool",
          [Q(f'up{{job="{c.job}", {I}}}', "{{instance}}")]),
        P("Scrape duration", "How long Prometheus took to scrape /metrics.", "s",
          [Q(f'scrape_duration_seconds{{job="{c.job}", {I}}}', "{{instance}}")]),
        P("Source up", "1 when the source's last poll succeeded.", "bool",
          [Q(f"blackwell_exporter_source_up{{{I}}}", "{{instance}} {{source}}")]),
        P("Poll duration", "Wall time of each source's last poll.", "s",
          [Q(f"blackwell_exporter_source_poll_duration_seconds{{{I}}}", "{{instance}} {{source}}")]),
        P("Time since last successful poll", "Seconds since each source last succeeded, against "
          f"{STALE_INTERVALS:g} intervals (the staleness limit).", "s",
          [Q(f"time() - blackwell_exporter_source_last_success_timestamp_seconds{{{I}}}", "{{instance}} {{source}}"),
           Q(f"{STALE_INTERVALS:g} * blackwell_exporter_source_interval_seconds{{{I}}}",
             "{{instance}} {{source}} stale after")]),
        P("Poll errors/s", "Failed polls per second by source and reason; empty while no poll has failed.",
          "short", [Q(f"sum by (instance, source, reason) (rate(blackwell_exporter_source_errors_total{{{I}}}"
                      "[$__rate_interval]))", "{{instance}} {{source}} {{reason}}")]),
        P("Samples scraped", "Samples in each scrape.", "none",
          [Q(f'scrape_samples_scraped{{job="{c.job}", {I}}}', "{{instance}}")]),
        P("Exporter versions", "Running exporter versions and modes (hardware or simulated).", "none",
          [Q(f"count by (version, mode) (blackwell_exporter_build_info{{{I}}})", "{{version}} {{mode}}")]),
    ], c, ["exporter"])


def all_dashboards(config: MixinConfig) -> list[dict]:
    return [_fleet(config), _node(config), _serving(config), _precision(config), _cost(config), _exporter(config)]
