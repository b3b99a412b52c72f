"""Each serving runtime's default histogram bucket bounds, in seconds, and where a deployment moves them.

The exporter passes every runtime's histograms through with their own boundaries (it never
re-buckets), so two layers need to know them: the mixin judges each runtime's TTFT SLO at a bound
the runtime really has (:mod:`exporter.mixin.ttft_buckets`), and the simulation standing in for a
runtime draws its requests into that runtime's buckets (:mod:`exporter.sources.simulated.runtime_view`).
The keys are the ``runtime`` values of ``blackwell_serving_runtime_info``. tests/unit/test_mixin_slo_bounds.py
and tests/unit/test_runtime_buckets.py check every table against the runtime's recorded or
source-written exposition in tests/fixtures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def dynamo_log_buckets(low: float, high: float, count: int) -> tuple[float, ...]:
    """Dynamo's ``generate_log_buckets`` (lib/llm/src/http/service/metrics.rs, ai-dynamo/dynamo
    commit 0014908a): 0, then ``count - 1`` log-spaced values ending at ``high``, each rounded to two
    significant figures (Rust's ``round``: halves away from zero), duplicates dropped."""
    def two_figures(value: float) -> float:
        scale = 10.0 ** (1 - math.floor(math.log10(abs(value))))
        return math.floor(value * scale + 0.5) / scale

    values = [0.0] + [two_figures(math.exp(math.log(low) + (math.log(high) - math.log(low)) * i / (count - 1)))
                      for i in range(1, count)]
    return tuple(sorted(set(values)))


# vllm/v1/metrics/loggers.py (0.8 to 0.11); tensorrt_llm/metrics/collector.py takes the same.
_VLLM_TTFT = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
              40.0, 80.0, 160.0, 640.0, 2560.0)
_VLLM_ITL = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
_VLLM_REQUEST = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                 480.0, 960.0, 1920.0, 7680.0)  # e2e latency and queue time
# python/sglang/srt/metrics/collector.py (0.5.5); --bucket-time-to-first-token and friends move them.
_SGLANG_TTFT = (0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 200.0, 400.0)

TTFT_DEFAULT_BUCKETS: Mapping[str, tuple[float, ...]] = {
    "vllm": _VLLM_TTFT,
    "trtllm-serve": _VLLM_TTFT,
    "nim": _VLLM_TTFT[:16],  # vLLM 0.6 (V0), which NIM for LLMs 1.x wraps; NIM documents none
    "sglang": _SGLANG_TTFT,
    "dynamo": dynamo_log_buckets(0.001, 480.0, 18),  # the frontend's; DYN_METRICS_TTFT_{MIN,MAX,COUNT} move them
    "triton": (0.1, 0.5, 2.0, 5.0),  # nv_inference_first_response_histogram_ms 100, 500, 2000, 5000 ms
}
INTER_TOKEN_DEFAULT_BUCKETS: Mapping[str, tuple[float, ...]] = {
    "vllm": _VLLM_ITL,
    "trtllm-serve": _VLLM_ITL,
    "nim": _VLLM_ITL[:13],  # vLLM 0.6's time_per_output_token_seconds
    "sglang": (0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.06, 0.08, 0.1, 0.2, 0.4,
               0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0),
    "dynamo": dynamo_log_buckets(0.001, 2.0, 13),  # DYN_METRICS_* moves them, as it does the TTFT buckets
}
E2E_DEFAULT_BUCKETS: Mapping[str, tuple[float, ...]] = {
    "vllm": _VLLM_REQUEST,
    "trtllm-serve": _VLLM_REQUEST,
    "nim": (1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0),  # vLLM 0.6's
    "sglang": (*_SGLANG_TTFT, 600.0, 1200.0, 1800.0, 2400.0),
    "dynamo": dynamo_log_buckets(1.0, 512.0, 10),  # request_duration_seconds
}
QUEUE_TIME_DEFAULT_BUCKETS: Mapping[str, tuple[float, ...]] = {
    "vllm": _VLLM_REQUEST,
    "trtllm-serve": _VLLM_REQUEST,
    "sglang": (0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0,
               90.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0, 1000.0, 1200.0, 1400.0, 1600.0,
               1800.0, 2000.0, 2500.0, 3000.0),
}
# Catalog histogram -> runtime -> its default bounds (the +Inf bucket is every histogram's).
DEFAULT_BUCKETS: Mapping[str, Mapping[str, tuple[float, ...]]] = {
    "blackwell_serving_ttft_seconds": TTFT_DEFAULT_BUCKETS,
    "blackwell_serving_inter_token_latency_seconds": INTER_TOKEN_DEFAULT_BUCKETS,
    "blackwell_serving_e2e_latency_seconds": E2E_DEFAULT_BUCKETS,
    "blackwell_serving_queue_time_seconds": QUEUE_TIME_DEFAULT_BUCKETS,
}
# Where a deployment moves each runtime's TTFT buckets (docs/mixin.md).
TTFT_BUCKET_SETTINGS: Mapping[str, str] = {
    "vllm": "fixed in vLLM",
    "trtllm-serve": "fixed in TensorRT-LLM",
    "nim": "fixed in NIM (vLLM 0.6's; NIM documents none)",
    "sglang": "`--bucket-time-to-first-token`",
    "dynamo": "`DYN_METRICS_TTFT_{MIN,MAX,COUNT}` (log-spaced)",
    "triton": "the model's `histogram_options` in config.pbtxt (ms)",
}
