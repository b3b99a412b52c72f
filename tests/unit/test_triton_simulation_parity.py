"""Dashboards and alerts are built and tested on the simulation; they must work on the real sources.

Every serving metric the simulation fills is filled by a real source too (Triton with the
TensorRT-LLM C++ backend, or trtllm-serve), with the same labels because both go through the catalog.
"""

from pathlib import Path

from exporter import promtext
from exporter.sources.simulated.source import SimulatedConfig, SimulatedSource
from exporter.sources.triton import TritonApi, triton_families
from exporter.sources.trtllm_serve import trtllm_serve_families

FIXTURES = Path(__file__).parent.parent / "fixtures"


def serving_names(families) -> set[str]:
    return {f.metric.name for f in families if f.metric.name.startswith("blackwell_serving_") and f.samples}


def test_real_sources_fill_every_serving_metric_the_simulation_fills():
    simulated = serving_names(SimulatedSource(SimulatedConfig(enabled=True, profile="hgx-b200")).poll())
    triton = serving_names(triton_families(
        "http://t:8002/metrics", promtext.parse((FIXTURES / "triton" / "cpp_backend_metrics.txt").read_bytes()),
        TritonApi(live=True, ready=True, version="2.60.0", model_ready={("tensorrt_llm", "1"): True},
                  stats=[{"name": "tensorrt_llm", "version": "1", "inference_stats": {
                      k: {"count": 1, "ns": 1} for k in ("success", "fail", "queue")}}],
                  backends={"tensorrt_llm": "tensorrtllm"})))
    trtllm_serve = serving_names(trtllm_serve_families(
        "http://s:8000/prometheus/metrics",
        promtext.parse((FIXTURES / "trtllm_serve" / "prometheus_prefixed.txt").read_bytes()), 200, "1.2.0", "m",
        None))
    assert simulated - (triton | trtllm_serve) == set()
    # What each runtime cannot give, by design (see docs/serving.md):
    assert simulated - triton == {"blackwell_serving_inter_token_latency_seconds",
                                  "blackwell_serving_kv_cache_hit_ratio"}
    assert simulated - trtllm_serve >= {"blackwell_serving_inference_count_total",
                                        "blackwell_serving_execution_count_total"}
