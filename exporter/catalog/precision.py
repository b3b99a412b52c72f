"""Blackwell precision signals: which GEMM path ran, and quantization promotion events.

Ratios (MX-FP4 hit rate, FP8 fallback share) are recording rules over these counters.
precision is one of fp4, fp8, 16bit, other (see exporter.dispatch classification table).
"""

from exporter.catalog.model import counter

_DISPATCH = ("dispatch", "simulated")

METRICS = [
    counter("blackwell_gemm_kernel_launches_total",
            "GEMM kernel launches observed by the in-process sampler, by precision path.",
            ("gpu", "precision"), sources=_DISPATCH),
    counter("blackwell_gemm_kernel_seconds_total",
            "GPU time spent in GEMM kernels observed by the in-process sampler, by precision path.",
            ("gpu", "precision"), sources=_DISPATCH, unit="seconds"),
    counter("blackwell_te_promotion_events_total",
            "Transformer Engine quantization promotion events (a tensor promoted to higher precision), by layer.",
            ("layer",), sources=("logs", "simulated")),
]
