"""Blackwell precision signals: what the engine was built for, which GEMM path ran, what the logs say.

Ratios (MX-FP4 hit rate, FP8 fallback share, parameter share per precision, sampler coverage) are
recording rules over these facts. ``precision`` on dispatch metrics is one of fp4, fp8, 16bit,
other (see ``exporter/dispatch_table.yaml``); on engine metrics it adds ``excluded`` (layers left
out of quantization by an exclude pattern) and ``unknown`` (an algorithm name this exporter does
not know).
"""

from exporter.catalog.model import counter, gauge, info

_DISPATCH = ("dispatch", "simulated")
_ENGINE = ("engine", "simulated")
_LOGS = ("logs", "simulated")
_P = ("process",)

METRICS = [
    # -- what actually ran: the CUPTI samplers' kernel names, classified by the dispatch source --
    counter("blackwell_gemm_kernel_launches_total",
            "GEMM kernel launches by precision path: kernel names sampled in the serving processes and classified "
            "by the dispatch table, or re-exported from a runtime counter through counter_mapping. Totals of every "
            "process since the exporter started: a process that exits or restarts takes nothing away.",
            ("gpu", "precision"), sources=(*_DISPATCH, "counter_mapping")),
    counter("blackwell_gemm_kernel_seconds_total",
            "GPU time spent in sampled GEMM kernels, by precision path.",
            ("gpu", "precision"), sources=_DISPATCH, unit="seconds"),
    counter("blackwell_dispatch_kernel_launches_total",
            "All sampled kernel launches (GEMM or not, names beyond the writer's bound included).",
            ("gpu",), sources=_DISPATCH),
    counter("blackwell_dispatch_kernel_seconds_total",
            "GPU time of all sampled kernels; GEMM share = gemm seconds / this.",
            ("gpu",), sources=_DISPATCH, unit="seconds"),
    counter("blackwell_dispatch_overflow_kernel_launches_total",
            "Sampled launches of kernels whose name came after the writer's bound on distinct names "
            "(BLACKWELL_DISPATCH_MAX_NAMES): counted as kernels, never in a GEMM share. Raise the bound if it grows.",
            ("gpu",), sources=_DISPATCH),
    counter("blackwell_dispatch_unrecognized_gemm_launches_total",
            "Sampled GEMM launches that no precision rule of the dispatch table matched (counted as precision "
            "other); the names are on the exporter's landing page.",
            ("gpu",), sources=_DISPATCH),
    gauge("blackwell_dispatch_unrecognized_gemm_names",
          "Distinct GEMM kernel names of the live processes that no precision rule matches.",
          ("gpu",), sources=_DISPATCH),
    gauge("blackwell_dispatch_kernel_names_pending",
          "Kernel names (per process and GPU) the dispatch source has not classified yet (new, or not since the "
          "table changed): each poll classifies until it has run sources.dispatch.classify_budget_seconds. Their "
          "launches are "
          "added to the GEMM totals when they are; while this is above 0 the GEMM shares are not final.",
          (), sources=_DISPATCH),
    gauge("blackwell_dispatch_table_last_reload_successful",
          "1 when the last (re)load of the kernel classification table succeeded; 0 while the last good table "
          "stays in use because the file changed into something that does not load.",
          (), sources=_DISPATCH),
    gauge("blackwell_dispatch_sampler_status",
          "Always 1: the state of each live writer (status sampling, unavailable, paused) and why it is not sampling "
          "(reason: cupti_missing, cupti_incompatible, multiple_subscribers, cupti_error, disabled). Ends with the process.",
          ("process", "writer", "status", "reason"), sources=_DISPATCH),
    counter("blackwell_dispatch_sampler_windows_skipped_total",
            "Windows a writer did not open because of its reason (another CUPTI subscriber, an error).",
            _P, sources=_DISPATCH),
    counter("blackwell_dispatch_sampler_windows_total",
            "Sampling windows a writer completed, by serving process (state file); reset with the process.",
            _P, sources=_DISPATCH),
    counter("blackwell_dispatch_sampler_sampled_seconds_total",
            "Wall time the sampler was recording; rate() of it is the window coverage (0-1).",
            _P, sources=_DISPATCH, unit="seconds"),
    counter("blackwell_dispatch_sampler_records_total",
            "Kernel activity records the writer received from CUPTI.",
            _P, sources=_DISPATCH),
    counter("blackwell_dispatch_sampler_dropped_records_total",
            "Kernel activity records CUPTI dropped because its buffers were full (counts are then low).",
            _P, sources=_DISPATCH),
    gauge("blackwell_dispatch_sampler_duty_cycle_ratio",
          "Configured fraction of wall time the sampler records (window / period).",
          _P, sources=_DISPATCH, unit="ratio"),
    gauge("blackwell_dispatch_sampler_state_age_seconds",
          "Seconds since the sampler last wrote its state file, as seen at the last poll.",
          _P, sources=_DISPATCH, unit="seconds"),
    # -- what the engine was built to do: the engine source ----------------------------------
    info("blackwell_engine_info",
         "Quantization and build settings of the engine or checkpoint the engine source reads.",
         ("engine", "format", "quant_algo", "kv_cache_quant_algo", "tensor_parallel", "pipeline_parallel",
          "producer", "build_flags"),
         sources=_ENGINE),
    gauge("blackwell_engine_gemm_layers",
          "GEMM (linear) layers of the engine by the precision they were built for "
          "(fp4, fp8, 16bit, excluded, other, unknown).",
          ("engine", "precision"), sources=_ENGINE),
    gauge("blackwell_engine_gemm_parameters",
          "Weight parameters in GEMM layers by build precision; parameter share = this / sum by engine.",
          ("engine", "precision"), sources=_ENGINE),
    info("blackwell_engine_unknown_algorithm_info",
         "An algorithm name in the engine's quantization config that this exporter does not know.",
         ("engine", "field", "algorithm"), sources=_ENGINE),
    gauge("blackwell_engine_config_loaded_timestamp_seconds",
          "When the engine source last (re)read the engine's config files.",
          ("engine",), sources=_ENGINE, unit="seconds"),
    # -- what the logs say: the logs source ---------------------------------------------------
    counter("blackwell_te_promotion_events_total",
            "Transformer Engine quantization promotion events (a tensor promoted to higher precision), by layer; "
            "from log rules, or re-exported from a runtime counter through counter_mapping.",
            ("layer",), sources=(*_LOGS, "counter_mapping")),
    counter("blackwell_fp8_fallback_warnings_total",
            "Log warnings that an FP8/FP4 kernel or plugin was unavailable and a higher precision was used.",
            ("rule",), sources=_LOGS),
    counter("blackwell_engine_cold_start_events_total",
            "Engine or kernel-cache cold starts and JIT/compile events seen in the serving logs, by event.",
            ("event",), sources=_LOGS),
    counter("blackwell_cuda_oom_errors_total", "CUDA out-of-memory errors seen in the serving logs.",
            (), sources=_LOGS),
    counter("blackwell_nccl_errors_total", "NCCL errors and watchdog timeouts seen in the serving logs, by kind.",
            ("kind",), sources=_LOGS),
    counter("blackwell_log_matches_total",
            "Matches of user-defined log rules; named groups fill key (one group) or are joined as name=value.",
            ("rule", "key"), sources=_LOGS),
    counter("blackwell_log_label_overflow_total",
            "Matches whose label values were folded into _overflow_ because the rule hit its cardinality cap.",
            ("rule",), sources=_LOGS),
    counter("blackwell_log_read_bytes_total", "Bytes the logs source read from each followed file.",
            ("path",), sources=("logs",), unit="bytes"),
    counter("blackwell_log_reopens_total",
            "Times a followed log file was reopened from the start or let go, by reason (rotated, truncated, "
            "deleted: closed so its disk space is released).",
            ("path", "reason"), sources=("logs",)),
]
