"""The serving stack: Triton (TensorRT-LLM backend) or trtllm-serve, under one set of names.

Latency histograms keep the upstream's own bucket boundaries. Where a runtime only keeps
cumulative sums and counts, the histogram carries just the +Inf bucket, so averages work and
quantiles honestly do not.
"""

from exporter.catalog.model import counter, gauge, histogram, info

_SRV = ("triton", "trtllm_serve", "runtimes", "simulated")
# Series of one model carry the endpoint they came from: the same model on two servers (or on
# triton and trtllm-serve at once) is two series, so one endpoint failing never hands its series
# to another endpoint's value (a false counter reset). Aggregate with sum by (model).
_M = ("model", "version", "endpoint")
_MODEL = ("model", "endpoint")

METRICS = [
    gauge("blackwell_serving_up", "1 when the serving runtime's metrics endpoint answered the last poll.",
          ("runtime", "endpoint"), sources=_SRV),
    gauge("blackwell_serving_ready", "1 when the runtime's readiness endpoint says ready.",
          ("runtime", "endpoint"), sources=_SRV),
    gauge("blackwell_serving_live", "1 when the runtime's liveness endpoint answers (live but not ready: "
          "still loading, or a model failed).", ("runtime", "endpoint"), sources=_SRV),
    info("blackwell_serving_runtime_info",
         "What is on the other side: runtime (triton, trtllm-serve) and flavour (Triton: trtllm-cpp-backend, "
         "python-backend, llmapi; trtllm-serve: its engine_type, e.g. pytorch; unknown when it cannot be told).",
         ("runtime", "endpoint", "flavour", "server_version"), sources=_SRV),
    gauge("blackwell_serving_model_ready", "1 when the model reports ready.", _M, sources=_SRV),
    counter("blackwell_serving_request_success_total", "Requests that completed successfully.",
            _M, sources=_SRV),
    counter("blackwell_serving_request_failure_total",
            "Failed requests by reason (REJECTED, CANCELED, BACKEND, OTHER).",
            ("model", "version", "reason", "endpoint"), sources=_SRV),
    counter("blackwell_serving_inference_count_total", "Inferences performed (a batch of n counts n).",
            _M, sources=_SRV),
    counter("blackwell_serving_execution_count_total", "Model executions (a batch counts once).",
            _M, sources=_SRV),
    counter("blackwell_serving_request_duration_seconds_total",
            "Cumulative end-to-end request handling time inside the server.", _M, sources=_SRV, unit="seconds"),
    counter("blackwell_serving_queue_duration_seconds_total", "Cumulative time requests waited in the queue.",
            _M, sources=_SRV, unit="seconds"),
    counter("blackwell_serving_compute_duration_seconds_total",
            "Cumulative compute time by phase (input, infer, output).",
            ("model", "version", "phase", "endpoint"), sources=_SRV, unit="seconds"),
    gauge("blackwell_serving_pending_requests", "Requests waiting in the server's queue.", _M, sources=_SRV),
    histogram("blackwell_serving_ttft_seconds", "Time to first token, with the upstream's own buckets.",
              _MODEL, sources=_SRV, unit="seconds"),
    histogram("blackwell_serving_inter_token_latency_seconds",
              "Time between consecutive output tokens (time per output token).",
              _MODEL, sources=_SRV, unit="seconds"),
    histogram("blackwell_serving_e2e_latency_seconds", "End-to-end request latency as the runtime measures it.",
              _MODEL, sources=_SRV, unit="seconds"),
    histogram("blackwell_serving_queue_time_seconds", "Time a request spent queued before scheduling.",
              _MODEL, sources=_SRV, unit="seconds"),
    counter("blackwell_serving_prompt_tokens_total", "Input (prompt) tokens processed.", _MODEL, sources=_SRV),
    counter("blackwell_serving_generation_tokens_total", "Output tokens generated; rate() gives tokens/s.",
            _MODEL, sources=_SRV),
    histogram("blackwell_serving_prompt_length_tokens", "Prompt length per request.", _MODEL,
              sources=_SRV, unit="tokens"),
    gauge("blackwell_serving_batch_requests",
          "In-flight batcher requests by state (active, max, scheduled, context, generation, waiting, paused).",
          ("model", "state", "endpoint"), sources=_SRV),
    gauge("blackwell_serving_kv_cache_blocks", "KV-cache blocks by state (max, used, free).",
          ("model", "state", "endpoint"), sources=_SRV),
    gauge("blackwell_serving_kv_cache_reused_blocks",
          "KV-cache blocks reused from the prefix cache, as Triton's nv_trt_llm_kv_cache_block_metrics "
          "{kv_cache_block_type=\"reused\"} reports it (a gauge).", _MODEL, sources=_SRV),
    counter("blackwell_serving_kv_cache_block_reuses_total",
            "KV-cache block reuses since the server started (trtllm-serve's trtllm_kv_cache_reused_blocks_total, "
            "a counter; rate() gives reuses/s).", _MODEL, sources=("trtllm_serve",)),
    gauge("blackwell_serving_kv_cache_tokens_per_block", "Tokens held by one KV-cache block.",
          _MODEL, sources=_SRV),
    gauge("blackwell_serving_kv_cache_hit_ratio", "Prefix-cache hit rate reported by the runtime (0-1).",
          _MODEL, sources=_SRV, unit="ratio"),
    gauge("blackwell_serving_runtime_memory_bytes", "Runtime memory by memory_type (gpu, cpu, pinned).",
          ("model", "memory_type", "endpoint"), sources=_SRV, unit="bytes"),
    counter("blackwell_serving_iterations_total", "Engine iterations (in-flight batcher iteration counter).",
            _MODEL, sources=_SRV),
    counter("blackwell_tma_multicast_loads_total",
            "TMA multicast loads reported by the runtime, re-exported through the counter mapping "
            "(no upstream exports it under a standard name).",
            ("gpu",), sources=("counter_mapping",)),
    gauge("blackwell_counter_mapping_dropped_series",
          "Catalog series a counter mapping turned away at its last read because max_series was reached "
          "(the series kept first stay kept, so the set never changes between polls).",
          ("upstream", "metric"), sources=("counter_mapping",)),
]
