"""Grafana dashboards as JSON (schemaVersion 42), built from short panel declarations.

Every dashboard has the variables datasource -> job -> cluster -> instance -> gpu, a stable uid, tags,
and panels that each carry a unit and a description. Panels are written with instance/gpu matchers
only; :func:`dashboard` adds ``mixin.selector`` and the job and cluster variables to every vector
selector of every query. Queries read the recording rules where one
exists, so a panel and the alert on the same signal always agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.foundation import STALE_INTERVALS
from exporter.mixin import recording as rec
from exporter.mixin import slo
from exporter.mixin.config import MixinConfig
from exporter.mixin.promql import with_selector

SCHEMA_VERSION = 42
TAGS = ["blackwell", "blackwell-exporter"]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
INSTANCE = 'instance=~"$instance"'
INSTANCE_GPU = 'instance=~"$instance", gpu=~"$gpu"'
# Added to every vector selector of every panel (after mixin.selector): the job and cluster variables.
# ``cluster`` is an external label where a global view (Thanos, Mimir, federation) adds one; its
# "All" value ``.*`` also matches series that have no cluster label.
VARIABLE_MATCHERS = 'job=~"$job", cluster=~"$cluster"'
TOKENS_UNIT = "suffix: tok/s"


@dataclass(frozen=True)
class Query:
    """One query: PromQL and the legend Grafana shows for its series."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """One panel. ``width`` is in grid columns (24 per row); panels flow left to right."""

    title: str
    description: str
    unit: str
    queries: list[Query]
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None
    thresholds: list[tuple[float, str]] = field(default_factory=list)


def _variables(matchers: str) -> list[dict]:
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
        query_var("job", "Job", f"label_values(blackwell_exporter_build_info{{{matchers}}}, job)",
                  "Prometheus jobs the exporters are scraped under"),
        query_var("cluster", "Cluster", f'label_values(blackwell_exporter_build_info{{{matchers}, job=~"$job"}}, cluster)',
                  "Clusters (an external label added by Thanos, Mimir or federation; empty on one Prometheus)"),
        query_var("instance", "Instance",
                  f"label_values(blackwell_exporter_build_info{{{matchers}, {VARIABLE_MATCHERS}}}, instance)",
                  "Exporter instances (one per serving node)"),
        query_var("gpu", "GPU",
                  f'label_values(blackwell_gpu_up{{{matchers}, {VARIABLE_MATCHERS}, instance=~"$instance"}}, gpu)',
                  "GPU index on the selected instances"),
    ]


def _panel(panel: Panel, panel_id: int, x: int, y: int, matchers: str) -> dict:
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
            {"refId": chr(ord("A") + n), "datasource": DATASOURCE, "editorMode": "code",
             "expr": with_selector(query.expr, matchers),
             "legendFormat": query.legend or "__auto", "range": True}
            for n, query in enumerate(panel.queries)
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


def dashboard(uid: str, title: str, description: str, panels: list[Panel], config: MixinConfig,
              extra_tags: list[str]) -> dict:
    laid: list[dict] = []
    x = y = row_height = 0
    for n, panel in enumerate(panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        laid.append(_panel(panel, n, x, y, f"{config.matchers}, {VARIABLE_MATCHERS}"))
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
        "templating": {"list": _variables(config.matchers)},
        "annotations": {"list": [{
            "name": "Blackwell alerts", "enable": True, "iconColor": "red", "datasource": DATASOURCE,
            "expr": f'ALERTS{{alertstate="firing", alertname=~"Blackwell.*", {VARIABLE_MATCHERS}, {INSTANCE}}}',
            "titleFormat": "{{alertname}}", "textFormat": "{{instance}} {{severity}}", "step": "60s",
        }]},
        "panels": laid,
    }


def _fleet(config: MixinConfig) -> dict:
    return dashboard("blackwell-fleet-overview", "Blackwell / Fleet overview",
                     "Every serving node at a glance: throughput, latency, GPU health and load.", [
        Panel("Output tokens/s", "Output tokens generated per second over the selected instances.", TOKENS_UNIT,
          [Query(f"sum({rec.INSTANCE_TOKENS_RATE}{{{INSTANCE}}})")], "stat", 6, 4),
        Panel("GPUs up", "GPUs answering NVML over the selected instances.", "none",
          [Query(f"sum(blackwell_gpu_up{{{INSTANCE}}})")], "stat", 6, 4),
        Panel("GPUs lost", "GPUs that fell off the bus or need a reset (gpu_up == 0).", "none",
          [Query(f"sum(1 - blackwell_gpu_up{{{INSTANCE}}})")], "stat", 6, 4, thresholds=[(1, "red")]),
        Panel("Worst TTFT p95", "Highest 5-minute TTFT p95 of any model on the selected instances.", "s",
          [Query(f"max({rec.ttft_quantile('p95')}{{{INSTANCE}}})")], "stat", 6, 4,
          thresholds=[(config.ttft_slo_seconds, "red")]),
        Panel("Output tokens/s by instance", "Generation throughput per node (recording rule over 5m).", TOKENS_UNIT,
          [Query(f"{rec.INSTANCE_TOKENS_RATE}{{{INSTANCE}}}", "{{instance}}")]),
        Panel("Tokens/s vs same hour yesterday",
          "Today's output tokens/s as a fraction of the same time yesterday; empty until a day of history exists.",
          "percentunit", [Query(f"{rec.TOKENS_VS_YESTERDAY}{{{INSTANCE}}}", "{{instance}}")],
          thresholds=[(1 - config.throughput_drop_ratio, "red")]),
        Panel("TTFT p95 by instance", "Time to first token, 95th percentile over 5m, per node and model.", "s",
          [Query(f"{rec.ttft_quantile('p95')}{{{INSTANCE}}}", "{{instance}} {{model}}")],
          thresholds=[(config.ttft_slo_seconds, "red")]),
        Panel("Mean GPU utilization by instance", "Mean over the node's GPUs of the 5-minute utilization.",
          "percentunit", [Query(f"instance:blackwell_gpu_utilization_ratio:avg5m{{{INSTANCE}}}", "{{instance}}")], min=0, max=1),
        Panel("Mean GPU power by instance", "Mean GPU power draw per node over 5m; a saturated B200 draws 950-1000 W.",
          "watt", [Query(f"{rec.INSTANCE_POWER}{{{INSTANCE}}}", "{{instance}}")],
          thresholds=[(config.underutilized_power_watts, "green")]),
        Panel("Queued requests", "Requests waiting in the serving queue per node.", "none",
          [Query(f"sum by (instance) (blackwell_serving_pending_requests{{{INSTANCE}}})", "{{instance}}")]),
        Panel("KV-cache occupancy", "Used / max KV-cache blocks per node and model.", "percentunit",
          [Query(f"{rec.KV_OCCUPANCY}{{{INSTANCE}}}", "{{instance}} {{model}}")], min=0, max=1,
          thresholds=[(config.kv_cache_occupancy_max, "red")]),
        Panel("Serving ready", "1 when the serving runtime's readiness endpoint says ready.", "bool",
          [Query(f"blackwell_serving_ready{{{INSTANCE}}}", "{{instance}} {{runtime}}")]),
    ], config, ["fleet"])


def _node(config: MixinConfig) -> dict:
    return dashboard("blackwell-node-gpus", "Blackwell / Node GPUs and NVLink",
                     "Per-GPU health of one node and its NVLink fabric, per link.", [
        Panel("GPU utilization", "Fraction of time a kernel was running, per GPU (NVML).", "percentunit",
          [Query(f"blackwell_gpu_utilization_ratio{{{INSTANCE_GPU}}}", "{{instance}} gpu {{gpu}}")], min=0, max=1),
        Panel("Deviation from peers", "GPU utilization minus the mean of the other GPUs of the node (5m); a "
          "straggler sits far below 0.", "percentunit",
          [Query(f"{rec.PEER_DEVIATION}{{{INSTANCE_GPU}}}", "{{instance}} gpu {{gpu}}")],
          thresholds=[(-config.straggler_utilization_gap, "green")]),
        Panel("Power", "GPU power draw against its enforced limit.", "watt",
          [Query(f"blackwell_gpu_power_watts{{{INSTANCE_GPU}}}", "{{instance}} gpu {{gpu}}"),
           Query(f"max by (instance) (blackwell_gpu_power_limit_watts{{{INSTANCE_GPU}}})", "{{instance}} limit")]),
        Panel("Temperature", "GPU core and HBM temperatures.", "celsius",
          [Query(f"blackwell_gpu_temperature_celsius{{{INSTANCE_GPU}}}", "{{instance}} gpu {{gpu}} core"),
           Query(f"blackwell_gpu_memory_temperature_celsius{{{INSTANCE_GPU}}}", "{{instance}} gpu {{gpu}} hbm")]),
        Panel("SM clock", "Current SM clock; drops under throttling.", "hertz",
          [Query(f"blackwell_gpu_sm_clock_hertz{{{INSTANCE_GPU}}}", "{{instance}} gpu {{gpu}}")]),
        Panel("Clock throttle time", "Fraction of time the clocks were held down, by reason.", "percentunit",
          [Query(f"sum by (instance, gpu, reason) (rate(blackwell_gpu_clock_event_seconds_total{{{INSTANCE_GPU}}}[$__rate_interval]))",
             "{{instance}} gpu {{gpu}} {{reason}}")], min=0),
        Panel("HBM used", "Framebuffer memory in use and the driver's reserve (nvidia-smi's Reserved) against installed.", "bytes",
          [Query(f"blackwell_gpu_memory_used_bytes{{{INSTANCE_GPU}}}", "{{instance}} gpu {{gpu}}"),
           Query(f"blackwell_gpu_memory_reserved_bytes{{{INSTANCE_GPU}}}", "{{instance}} gpu {{gpu}} reserved"),
           Query(f"max by (instance) (blackwell_gpu_memory_total_bytes{{{INSTANCE_GPU}}})", "{{instance}} total")]),
        Panel("ECC errors", "ECC errors per second by type (volatile counters).", "short",
          [Query(f'sum by (instance, gpu, error_type) (rate(blackwell_gpu_ecc_errors_total{{{INSTANCE_GPU}, counter="volatile"}}[$__rate_interval]))',
             "{{instance}} gpu {{gpu}} {{error_type}}")]),
        Panel("XID events", "XID events in the dashboard's time range by code (every event counted).", "none",
          [Query(f"sum by (instance, gpu, xid) (increase(blackwell_gpu_xid_errors_total{{{INSTANCE_GPU}}}[$__range]))",
             "{{instance}} gpu {{gpu}} xid {{xid}}")], "stat", 8),
        Panel("Row remap failure", "1 when an HBM row remap failed: the GPU needs service.", "bool",
          [Query(f"max by (instance, gpu) (blackwell_gpu_remapped_rows_failure{{{INSTANCE_GPU}}})", "{{instance}} gpu {{gpu}}")],
          "stat", 8, thresholds=[(1, "red")]),
        Panel("PCIe replays", "PCIe replays per second.", "short",
          [Query(f"sum by (instance, gpu) (rate(blackwell_gpu_pcie_replay_total{{{INSTANCE_GPU}}}[$__rate_interval]))",
             "{{instance}} gpu {{gpu}}")], width=8),
        Panel("NVLink errors per link (heatmap)",
          "Data-link errors, replays and recoveries per GPU and link in 5-minute windows, all counter "
          "families (NVLink5 COUNT_* on Blackwell, legacy and DL counters on Hopper).", "short",
          [Query(f"sum by (instance, gpu, link) ({rec.NVLINK_ERRORS}{{{INSTANCE_GPU}}})", "gpu {{gpu}} link {{link}}")],
          "heatmap", 24, 10),
        Panel("NVLink errors by counter", "The same errors by counter family and kind.", "short",
          [Query(f"sum by (instance, gpu, counter, kind) ({rec.NVLINK_ERRORS}{{{INSTANCE_GPU}}})",
             "{{instance}} gpu {{gpu}} {{counter}} {{kind}}")]),
        Panel("NVLink5 bit error rate", "Decoded NVLink5 BER per link, effective (post-FEC) and symbol (pre-FEC).",
          "sci", [Query(f"max by (instance, gpu, kind) (blackwell_nvlink5_bit_error_rate{{{INSTANCE_GPU}}})",
                    "{{instance}} gpu {{gpu}} {{kind}}")]),
        Panel("NVLink throughput per GPU", "Payload bytes per second over all of the GPU's links (fields 138-141); "
          "per-link GPM rates are in the full detail tier.", "Bps",
          [Query(f"sum by (instance, gpu, direction) (rate(blackwell_nvlink_throughput_bytes_total{{{INSTANCE_GPU}, "
                 f'kind="data"}}[$__rate_interval]))', "{{instance}} gpu {{gpu}} {{direction}}")]),
        Panel("NVLink links up", "Active links per GPU.", "none",
          [Query(f"sum by (instance, gpu) (blackwell_nvlink_link_up{{{INSTANCE_GPU}}})", "{{instance}} gpu {{gpu}}")]),
        Panel("NVLink CRC and receive errors", "Per second: NVLINK_ERROR_DL_CRC where the GPU has no NVLink5 "
          "counters (Hopper, as nvidia-smi nvlink -e prints), NVLink5 receive errors on Blackwell.", "short",
          [Query(f"sum by (instance, gpu) (rate(blackwell_nvlink_dl_crc_errors_total{{{INSTANCE_GPU}}}[$__rate_interval]))",
             "{{instance}} gpu {{gpu}} DL CRC"),
           Query(f"sum by (instance, gpu) (rate(blackwell_nvlink5_errors_total{{{INSTANCE_GPU}, kind=\"rcv\"}}"
                 "[$__rate_interval]))", "{{instance}} gpu {{gpu}} NVLink5 rcv")]),
    ], config, ["gpu", "nvlink"])


def _serving(config: MixinConfig) -> dict:
    budget_ttft = 1 - config.ttft_slo_objective
    budget_avail = 1 - config.availability_slo_objective
    return dashboard("blackwell-serving-slos", "Blackwell / Serving SLOs",
                     "TTFT and inter-token latency, throughput, queue and KV cache, and SLO burn rates.", [
        Panel("TTFT p50 / p95 / p99", "Time to first token quantiles over 5m, from the runtime's histogram.", "s",
          [Query(f"{rec.ttft_quantile(n)}{{{INSTANCE}}}", f"{{{{instance}}}} {{{{model}}}} {n}") for n, _ in rec.QUANTILES],
          thresholds=[(config.ttft_slo_seconds, "red")]),
        Panel("Inter-token latency p50 / p95 / p99", "Time between output tokens, quantiles over 5m.", "s",
          [Query(f"{rec.itl_quantile(n)}{{{INSTANCE}}}", f"{{{{instance}}}} {{{{model}}}} {n}") for n, _ in rec.QUANTILES]),
        Panel("Tokens/s", "Output and prompt tokens per second.", TOKENS_UNIT,
          [Query(f"{rec.TOKENS_RATE}{{{INSTANCE}}}", "{{instance}} {{model}} output"),
           Query(f"instance_model:blackwell_serving_prompt_tokens:rate5m{{{INSTANCE}}}", "{{instance}} {{model}} prompt")]),
        Panel("Requests/s", "Successful and failed requests per second, failures by reason.", "reqps",
          [Query(f"sum by (instance, model) (rate(blackwell_serving_request_success_total{{{INSTANCE}}}[$__rate_interval]))",
             "{{instance}} {{model}} ok"),
           Query(f"sum by (instance, model, reason) (rate(blackwell_serving_request_failure_total{{{INSTANCE}}}[$__rate_interval]))",
             "{{instance}} {{model}} {{reason}}")]),
        Panel("Queue", "Requests waiting in the server queue and in-flight batcher requests by state.", "none",
          [Query(f"sum by (instance, model) (blackwell_serving_pending_requests{{{INSTANCE}}})", "{{instance}} pending"),
           Query(f'blackwell_serving_batch_requests{{{INSTANCE}, state=~"active|max|waiting"}}', "{{instance}} {{state}}")]),
        Panel("Queue time p95", "95th percentile of time requests wait before scheduling.", "s",
          [Query(f"histogram_quantile(0.95, sum by (instance, model, le) "
             f"(rate(blackwell_serving_queue_time_seconds_bucket{{{INSTANCE}}}[$__rate_interval])))", "{{instance}} {{model}}")]),
        Panel("KV-cache occupancy", "Used / max KV-cache blocks.", "percentunit",
          [Query(f"{rec.KV_OCCUPANCY}{{{INSTANCE}}}", "{{instance}} {{model}}")], min=0, max=1,
          thresholds=[(config.kv_cache_occupancy_max, "red")]),
        Panel("KV-cache prefix hit rate", "Share of KV blocks served from the prefix cache (runtime's figure).",
          "percentunit", [Query(f"blackwell_serving_kv_cache_hit_ratio{{{INSTANCE}}}", "{{instance}} {{model}}")], min=0, max=1),
        Panel("TTFT SLO burn rate", f"Rate the TTFT error budget burns (1 = exactly spent over the window); "
          f"objective {config.ttft_slo_objective:g} of requests under {config.ttft_slo_seconds:g}s, each runtime judged at a "
          f"bound it has ({slo.bounds_text(config)}). Pages at 14.4 (1h & 5m).",
          "none", [Query(f"{slo.ttft_error_ratio(w)}{{{INSTANCE}}} / {budget_ttft:.6g}", f"{{{{instance}}}} {{{{model}}}} {w}")
                   for w in ("5m", "1h", "6h")], thresholds=[(14.4, "red")]),
        Panel("Availability SLO burn rate", f"Rate the availability error budget burns; objective "
          f"{config.availability_slo_objective:g} of requests succeed (client cancels excluded).", "none",
          [Query(f"{slo.availability_error_ratio(w)}{{{INSTANCE}}} / {budget_avail:.6g}", f"{{{{instance}}}} {{{{model}}}} {w}")
           for w in ("5m", "1h", "6h")], thresholds=[(14.4, "red")]),
        Panel("Prompt length p50 / p99", "Prompt tokens per request.", "none",
          [Query(f"histogram_quantile({quantile}, sum by (instance, model, le) "
             f"(rate(blackwell_serving_prompt_length_tokens_bucket{{{INSTANCE}}}[$__rate_interval])))", f"{{{{instance}}}} {label}")
           for label, quantile in (("p50", 0.5), ("p99", 0.99))]),
        Panel("End-to-end latency p95", "Request latency as the runtime measures it, 95th percentile.", "s",
          [Query(f"histogram_quantile(0.95, sum by (instance, model, le) "
             f"(rate(blackwell_serving_e2e_latency_seconds_bucket{{{INSTANCE}}}[$__rate_interval])))", "{{instance}} {{model}}")]),
        Panel("Cold-start events", "Engine loads, CUDA graph captures, autotuning and JIT compiles the logs source "
          "saw in the time range: a cold start explains slow first tokens.", "none",
          [Query(f"sum by (instance, event) (increase(blackwell_engine_cold_start_events_total{{{INSTANCE}}}[$__range]))",
             "{{instance}} {{event}}")]),
        Panel("CUDA out-of-memory errors", "CUDA OOM errors in the serving logs over the time range.", "none",
          [Query(f"sum by (instance) (increase(blackwell_cuda_oom_errors_total{{{INSTANCE}}}[$__range]))", "{{instance}}")],
          "stat", 12, thresholds=[(1, "red")]),
    ], config, ["serving", "slo"])


def _precision(config: MixinConfig) -> dict:
    return dashboard("blackwell-precision-memory", "Blackwell / Precision and memory tiers",
                     "Which GEMM path ran (MX-FP4, FP8, 16-bit), Transformer Engine promotions, and how much "
                     "memory traffic Grace serves over NVLink-C2C.", [
        Panel("MX-FP4 hit rate", "Share of GEMM kernel launches on the FP4 path, per GPU (5m).", "percentunit",
          [Query(f"{rec.GPU_FP4_HIT_RATE}{{{INSTANCE_GPU}}}", "{{instance}} gpu {{gpu}}")], min=0, max=1,
          thresholds=[(config.mxfp4_hit_rate_min, "green")]),
        Panel("FP8 fallback share", "Share of GEMM kernel launches on the FP8 path, per GPU (5m).", "percentunit",
          [Query(f"{rec.GPU_FP8_SHARE}{{{INSTANCE_GPU}}}", "{{instance}} gpu {{gpu}}")], min=0,
          thresholds=[(config.fp8_fallback_share_max, "red")]),
        Panel("GEMM launches/s by precision (sampled)", "GEMM kernel launches per second by precision path, as the "
          "in-process sampler sees them: only inside its sampling windows (about the duty cycle of all launches), "
          "so compare precisions with each other, not with the runtime's own totals.", "ops",
          [Query(f"sum by (instance, precision) ({rec.GEMM_RATE}{{{INSTANCE_GPU}}})", "{{instance}} {{precision}}")]),
        Panel("GEMM time by precision (sampled)", "GPU time in GEMM kernels per second of wall time, by precision, "
          "inside the sampler's windows (scaled down by its duty cycle like the launches).",
          "percentunit", [Query(f"sum by (instance, precision) (rate(blackwell_gemm_kernel_seconds_total{{{INSTANCE_GPU}}}"
                            "[$__rate_interval]))", "{{instance}} {{precision}}")]),
        Panel("TE promotions by layer (top 10)", "Transformer Engine promotion events per hour, by layer, averaged "
          "over the last hour.", "none",
          [Query(f"topk(10, {rec.TE_LAYER_RATE}{{{INSTANCE}}} * 3600)", "{{instance}} layer {{layer}}")]),
        Panel("TE promotions per hour", "All TE promotion events of the node per hour, averaged over the last hour.",
          "none", [Query(f"{rec.TE_INSTANCE_RATE}{{{INSTANCE}}} * 3600", "{{instance}}")], thresholds=[(config.te_promotions_per_hour_max, "red")]),
        Panel("Grace C2C read share", "C2C data received / (C2C data + DRAM bandwidth utilization x peak HBM "
          "bandwidth): share of GPU memory reads served from Grace (GB200 only; approximation, see docs).",
          "percentunit", [Query(f"{rec.C2C_READ_SHARE}{{{INSTANCE_GPU}}}", "{{instance}} gpu {{gpu}}")], min=0,
          thresholds=[(config.c2c_read_share_max, "red")]),
        Panel("C2C and HBM bandwidth", "Bytes/s received over NVLink-C2C and estimated HBM traffic.", "Bps",
          [Query(f'blackwell_c2c_rx_bytes_per_second{{{INSTANCE_GPU}, kind="data"}}', "{{instance}} gpu {{gpu}} c2c rx"),
           Query(f"blackwell_gpu_dram_bandwidth_utilization_ratio{{{INSTANCE_GPU}}} * "
             f"blackwell_gpu_hbm_peak_bandwidth_bytes_per_second{{{INSTANCE_GPU}}}", "{{instance}} gpu {{gpu}} hbm")]),
        Panel("Tensor pipe active", "GPM: fraction of time any tensor pipe was active.", "percentunit",
          [Query(f'blackwell_gpu_tensor_active_ratio{{{INSTANCE_GPU}, pipe="any"}}', "{{instance}} gpu {{gpu}}")], min=0, max=1),
        Panel("DRAM bandwidth utilization", "GPM: fraction of peak HBM bandwidth in use.", "percentunit",
          [Query(f"blackwell_gpu_dram_bandwidth_utilization_ratio{{{INSTANCE_GPU}}}", "{{instance}} gpu {{gpu}}")], min=0, max=1),
        Panel("Engine quantization", "What the engine was built with (engine source: quant_algo, KV-cache "
          "quantization, parallelism).", "none",
          [Query(f"count by (instance, engine, quant_algo, kv_cache_quant_algo, tensor_parallel) "
             f"(blackwell_engine_info{{{INSTANCE}}})",
             "{{instance}} {{quant_algo}} kv {{kv_cache_quant_algo}} tp {{tensor_parallel}}")], "stat", 8),
        Panel("Engine GEMM layers by precision", "Linear layers of the engine by the precision they were built in.",
          "none", [Query(f"sum by (instance, precision) (blackwell_engine_gemm_layers{{{INSTANCE}}})",
                     "{{instance}} {{precision}}")], width=8),
        Panel("FP8 fallback warnings/s", "FP8 fallback warnings the logs source counted, per second.", "short",
          [Query(f"sum by (instance, rule) (rate(blackwell_fp8_fallback_warnings_total{{{INSTANCE}}}[$__rate_interval]))",
             "{{instance}} {{rule}}")], width=8),
        Panel("Dispatch sampler duty cycle", "Share of time the in-process kernel sampler records; the GEMM "
          "precision panels are estimated from these windows.", "percentunit",
          [Query(f"blackwell_dispatch_sampler_duty_cycle_ratio{{{INSTANCE}}}", "{{instance}} {{process}}")], min=0, max=1),
        Panel("Dispatch sampler dropped records/s", "Kernel records the sampler lost (buffer overflow); high values "
          "make the precision shares less certain.", "short",
          [Query(f"sum by (instance, process) (rate(blackwell_dispatch_sampler_dropped_records_total{{{INSTANCE}}}"
             "[$__rate_interval]))", "{{instance}} {{process}}")]),
    ], config, ["precision", "memory"])


def _cost(config: MixinConfig) -> dict:
    return dashboard("blackwell-cost-capacity", "Blackwell / Cost and capacity",
                     f"Cost per 1M output tokens at {config.gpu_hour_price:g} per GPU-hour, and headroom against "
                     f"{config.peak_output_tokens_per_second:g} tokens/s per node.", [
        Panel("Cost per 1M output tokens", f"GPUs x {config.gpu_hour_price:g} per GPU-hour / output tokens per second "
          "(mixin.gpu_hour_price).", "none", [Query(f"{rec.COST_PER_MILLION}{{{INSTANCE}}}", "{{instance}}")]),
        Panel("Capacity headroom", f"1 - output tokens/s / {config.peak_output_tokens_per_second:g} "
          "(mixin.peak_output_tokens_per_second).", "percentunit",
          [Query(f"{rec.HEADROOM}{{{INSTANCE}}}", "{{instance}}")], max=1, thresholds=[(0.1, "green")]),
        Panel("Tokens/s against peak", "Output tokens/s per node and the configured saturation peak.", TOKENS_UNIT,
          [Query(f"{rec.INSTANCE_TOKENS_RATE}{{{INSTANCE}}}", "{{instance}}"),
           Query(f"vector({config.peak_output_tokens_per_second:g})", "peak")]),
        Panel("Tokens/s today and yesterday", "Output tokens/s now and at the same time yesterday (needs a day of "
          "history).", TOKENS_UNIT,
          [Query(f"{rec.INSTANCE_TOKENS_RATE}{{{INSTANCE}}}", "{{instance}} today"),
           Query(f"{rec.INSTANCE_TOKENS_RATE}{{{INSTANCE}}} offset 1d", "{{instance}} yesterday")]),
        Panel("Energy per 1M output tokens", "GPU energy (NVML counters) per million output tokens.", "kwatth",
          [Query(f"sum by (instance) (rate(blackwell_gpu_energy_joules_total{{{INSTANCE}}}[$__rate_interval])) "
             f"/ on (instance) sum by (instance) ({rec.INSTANCE_TOKENS_RATE}{{{INSTANCE}}}) * 1e6 / 3.6e6", "{{instance}}")]),
        Panel("GPUs billed", "GPUs per node, lost ones included (they are paid for).", "none",
          [Query(f"count by (instance) (blackwell_gpu_up{{{INSTANCE}}})", "{{instance}}")]),
    ], config, ["cost", "capacity"])


def _exporter(config: MixinConfig) -> dict:
    return dashboard("blackwell-exporter-health", "Blackwell / Exporter health",
                     "Is the exporter scraped, and is every source polling on time?", [
        Panel("Scrape up", "1 when Prometheus scraped the exporter successfully.", "bool",
          [Query(f'up{{{INSTANCE}}}', "{{instance}}")]),
        Panel("Scrape duration", "How long Prometheus took to scrape /metrics.", "s",
          [Query(f'scrape_duration_seconds{{{INSTANCE}}}', "{{instance}}")]),
        Panel("Source up", "1 when the source's last poll succeeded.", "bool",
          [Query(f"blackwell_exporter_source_up{{{INSTANCE}}}", "{{instance}} {{source}}")]),
        Panel("Poll duration", "Wall time of each source's last poll.", "s",
          [Query(f"blackwell_exporter_source_poll_duration_seconds{{{INSTANCE}}}", "{{instance}} {{source}}")]),
        Panel("Time since last successful poll", "Seconds since each source last succeeded, against "
          f"{STALE_INTERVALS:g} intervals (the staleness limit).", "s",
          [Query(f"time() - blackwell_exporter_source_last_success_timestamp_seconds{{{INSTANCE}}}", "{{instance}} {{source}}"),
           Query(f"{STALE_INTERVALS:g} * blackwell_exporter_source_interval_seconds{{{INSTANCE}}}",
             "{{instance}} {{source}} stale after")]),
        Panel("Poll errors/s", "Failed polls per second by source and reason; empty while no poll has failed.",
          "short", [Query(f"sum by (instance, source, reason) (rate(blackwell_exporter_source_errors_total{{{INSTANCE}}}"
                      "[$__rate_interval]))", "{{instance}} {{source}} {{reason}}")]),
        Panel("Samples scraped", "Samples in each scrape.", "none",
          [Query(f'scrape_samples_scraped{{{INSTANCE}}}', "{{instance}}")]),
        Panel("Exporter versions", "Running exporter versions and modes (hardware or simulated).", "none",
          [Query(f"count by (version, mode) (blackwell_exporter_build_info{{{INSTANCE}}})", "{{version}} {{mode}}")]),
    ], config, ["exporter"])


def all_dashboards(config: MixinConfig) -> list[dict]:
    from exporter.mixin.rack_dashboard import rack_dashboard  # it builds on this module's panels and layout

    return [_fleet(config), _node(config), _serving(config), _precision(config), _cost(config), _exporter(config),
            rack_dashboard(config)]
