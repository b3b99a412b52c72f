"""Serving families only some runtimes have: vLLM, SGLang, NVIDIA Dynamo and NIM (the ``runtimes`` source).

Kept apart from :mod:`exporter.catalog.serving` (Triton and trtllm-serve) so each area owns its
rows; every name follows the same ``blackwell_serving_*`` scheme and the same ``model`` label.
"""

from exporter.catalog.model import counter, gauge

_SRC = ("runtimes", "simulated")
_MODEL = ("model", "endpoint")  # as the serving rows: one series per model and endpoint

METRICS = [
    gauge("blackwell_serving_kv_cache_usage_ratio",
          "Share of the KV cache in use (0-1) as the runtime reports it (vLLM kv_cache_usage_perc, SGLang "
          "token_usage, Dynamo kvstats_gpu_cache_usage_percent, NIM gpu_cache_usage_perc: all 0-1 upstream).",
          _MODEL, sources=_SRC, unit="ratio"),
    counter("blackwell_serving_preemptions_total",
            "Requests preempted (vLLM) or retracted (SGLang) to free KV cache; they are recomputed later.",
            _MODEL, sources=_SRC),
    counter("blackwell_serving_prefix_cache_queried_tokens_total",
            "Prompt tokens looked up in the prefix cache (vLLM prefix_cache_queries).", _MODEL, sources=_SRC),
    counter("blackwell_serving_prefix_cache_hit_tokens_total",
            "Prompt tokens found in the prefix cache (vLLM prefix_cache_hits, SGLang cached_tokens); "
            "rate(hits) / rate(queried) is the hit ratio.", _MODEL, sources=_SRC),
]
