"""Each serving runtime's default TTFT bucket bounds, and the bound its TTFT SLO is judged at.

The exporter keeps every runtime's own histogram boundaries (it never re-buckets), so the TTFT SLO
counts good requests in a bucket the runtime actually has: the largest default bound at or under
the objective. That is conservative, since no request slower than the objective counts as good;
the price is that a runtime without the objective as a bound is judged a little stricter (SGLang
at 0.4 s for a 0.5 s objective). The keys are the ``runtime`` values of
``blackwell_serving_runtime_info``. tests/unit/test_mixin_slo_bounds.py checks every table
against the runtime's recorded or source-written exposition in tests/fixtures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping


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


_VLLM = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
         80.0, 160.0, 640.0, 2560.0)
TTFT_DEFAULT_BUCKETS: Mapping[str, tuple[float, ...]] = {
    "vllm": _VLLM,  # vllm/v1/metrics/loggers.py (0.8 to 0.11)
    "trtllm-serve": _VLLM,  # tensorrt_llm/metrics/collector.py takes vLLM's
    "nim": _VLLM[:16],  # vLLM 0.6 (V0), which NIM for LLMs 1.x wraps; NIM documents none
    "sglang": (0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 200.0,
               400.0),  # python/sglang/srt/metrics/collector.py; --bucket-time-to-first-token moves them
    "dynamo": dynamo_log_buckets(0.001, 480.0, 18),  # the frontend's; DYN_METRICS_TTFT_{MIN,MAX,COUNT} move them
    "triton": (0.1, 0.5, 2.0, 5.0),  # nv_inference_first_response_histogram_ms 100, 500, 2000, 5000 ms
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
# Bounds this close to each other are one bound written two ways (0.1 * 5 = 0.5000000000000001).
_SAME_BOUND = 1e-9


def same_bound(first: float, second: float) -> bool:
    return math.isclose(first, second, rel_tol=_SAME_BOUND, abs_tol=0.0)


def bound_at_or_under(buckets: Iterable[float], objective: float) -> float | None:
    """The largest bound above 0 that is not over ``objective`` (float noise forgiven); None when none is."""
    under = [b for b in buckets if 0 < b and (b <= objective or same_bound(b, objective))]
    return max(under) if under else None


def default_bounds(objective: float) -> dict[str, float]:
    """Runtime -> the bound its TTFT SLO is judged at by default; a runtime with no default bound
    at or under ``objective`` is left out (it is then judged at the objective itself, and
    ``BlackwellTTFTSLOBucketMissing`` says when it has no such bucket)."""
    bounds = {}
    for runtime, buckets in TTFT_DEFAULT_BUCKETS.items():
        bound = bound_at_or_under(buckets, objective)
        if bound is not None:
            bounds[runtime] = objective if same_bound(bound, objective) else bound
    return bounds
