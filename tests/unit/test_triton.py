"""The triton source: Triton's bodies in, catalog names out, every failure visible and contained."""

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from exporter import promtext
from exporter.scheduler import SourceRunner
from exporter.snapshot import HistogramValue, Snapshot, SnapshotStore
from exporter.sources.base import PartialPollError, PollError
from exporter.sources.triton import (
    TritonApi,
    TritonConfig,
    TritonEndpoint,
    TritonSource,
    flavour,
    parse_stats,
    triton_families,
)
from tests.support import FakeClock as Clock
from tests.support import values_of_one_endpoint as values
from tests.unit.upstream_server import Route, Upstream

FIXTURES = Path(__file__).parent.parent / "fixtures" / "triton"
URL = "http://127.0.0.1:8002/metrics"


def recorded_python_backend():
    metrics = promtext.parse((FIXTURES / "python_backend_metrics.txt").read_bytes())
    stats = parse_stats((FIXTURES / "python_backend_stats.json").read_bytes())
    api = TritonApi(live=True, ready=True, version="2.51.0", stats=stats,
                    model_ready={("llm_stream", "1"): True}, backends={"llm_stream": "python"})
    return metrics, stats, api


def test_request_counters_and_durations_carry_tritons_numbers():
    metrics, _, api = recorded_python_backend()
    got = values(triton_families(URL, metrics, api))
    upstream = {s.name: s.value for s in metrics.samples if s.labels.get("model") == "llm_stream"
                and "reason" not in s.labels and "_token_len" not in s.name}
    mv = ("llm_stream", "1")
    assert got[("blackwell_serving_request_success_total", mv)] == upstream["nv_inference_request_success"] == 2
    assert got[("blackwell_serving_inference_count_total", mv)] == upstream["nv_inference_count"]
    assert got[("blackwell_serving_execution_count_total", mv)] == upstream["nv_inference_exec_count"]
    assert got[("blackwell_serving_request_duration_seconds_total", mv)] == pytest.approx(
        upstream["nv_inference_request_duration_us"] / 1e6, rel=1e-12)
    assert got[("blackwell_serving_queue_duration_seconds_total", mv)] == pytest.approx(
        upstream["nv_inference_queue_duration_us"] / 1e6, rel=1e-12)
    assert got[("blackwell_serving_compute_duration_seconds_total", (*mv, "infer"))] == pytest.approx(
        upstream["nv_inference_compute_infer_duration_us"] / 1e6, rel=1e-12)
    assert got[("blackwell_serving_request_failure_total", (*mv, "BACKEND"))] == 1
    assert got[("blackwell_serving_request_failure_total", (*mv, "REJECTED"))] == 0
    assert got[("blackwell_serving_pending_requests", mv)] == 0


def test_health_readiness_and_flavour():
    metrics, _, api = recorded_python_backend()
    got = values(triton_families(URL, metrics, api))
    assert got[("blackwell_serving_up", ("triton", URL))] == 1
    assert got[("blackwell_serving_live", ("triton", URL))] == 1
    assert got[("blackwell_serving_ready", ("triton", URL))] == 1
    assert got[("blackwell_serving_model_ready", ("llm_stream", "1"))] == 1
    assert got[("blackwell_serving_runtime_info", ("triton", URL, "python-backend", "2.51.0"))] == 1


def test_trtllm_families_land_on_catalog_states():
    metrics, _, api = recorded_python_backend()
    got = values(triton_families(URL, metrics, api))
    assert got[("blackwell_serving_batch_requests", ("llm_stream", "max"))] == 64
    assert {k[1][1] for k in got if k[0] == "blackwell_serving_batch_requests"} == {
        "active", "max", "scheduled", "context", "waiting", "generation", "paused"}
    assert got[("blackwell_serving_kv_cache_blocks", ("llm_stream", "max"))] == 1000
    assert got[("blackwell_serving_kv_cache_blocks", ("llm_stream", "free"))] == 1000
    assert got[("blackwell_serving_kv_cache_tokens_per_block", ("llm_stream",))] == 4
    assert got[("blackwell_serving_kv_cache_reused_blocks", ("llm_stream",))] == 2
    assert got[("blackwell_serving_runtime_memory_bytes", ("llm_stream", "gpu"))] == 3 << 30
    assert got[("blackwell_serving_iterations_total", ("llm_stream",))] == 8


def test_token_counts_are_counters_from_the_length_histograms():
    metrics, _, api = recorded_python_backend()
    got = values(triton_families(URL, metrics, api))
    assert got[("blackwell_serving_prompt_tokens_total", ("llm_stream",))] == 5
    assert got[("blackwell_serving_generation_tokens_total", ("llm_stream",))] == 8
    prompt = got[("blackwell_serving_prompt_length_tokens", ("llm_stream",))]
    assert [b for b, _ in prompt.buckets] == [10, 50, 100, 500, 1000, math.inf]  # upstream's own buckets


def test_statistics_api_gives_sum_and_count_latencies():
    metrics, stats, api = recorded_python_backend()
    got = values(triton_families(URL, metrics, api))
    success = stats[0]["inference_stats"]["success"]
    queue = stats[0]["inference_stats"]["queue"]
    assert got[("blackwell_serving_e2e_latency_seconds", ("llm_stream",))] == HistogramValue.sum_count_only(
        success["ns"] / 1e9, success["count"])
    assert got[("blackwell_serving_queue_time_seconds", ("llm_stream",))] == HistogramValue.sum_count_only(
        queue["ns"] / 1e9, queue["count"])
    assert ("blackwell_serving_ttft_seconds", ("llm_stream",)) not in got  # 2.51 has no first-response histogram


def test_cpp_backend_first_response_histogram_keeps_its_buckets_in_seconds():
    metrics = promtext.parse((FIXTURES / "cpp_backend_metrics.txt").read_bytes())
    api = TritonApi(live=True, ready=True, version="2.60.0",
                    backends={"ensemble": "ensemble", "tensorrt_llm": "tensorrtllm", "preprocessing": "python"})
    got = values(triton_families(URL, metrics, api))
    ttft = got[("blackwell_serving_ttft_seconds", ("tensorrt_llm",))]
    assert ttft.buckets == ((0.1, 90), (0.5, 118), (2.0, 120), (5.0, 120), (math.inf, 120))
    assert ttft.sum == pytest.approx(9.6) and ttft.count == 120
    assert got[("blackwell_serving_runtime_info", ("triton", URL, "trtllm-cpp-backend", "2.60.0"))] == 1
    # Ensemble rows are exported as they are: the ensemble carries the client-visible failures.
    assert got[("blackwell_serving_request_failure_total", ("ensemble", "1", "REJECTED"))] == 2
    assert got[("blackwell_serving_batch_requests", ("tensorrt_llm", "generation"))] == 6


def test_millisecond_bounds_become_exact_seconds():
    """le="700" ms must become le="0.7", not 0.7000000000000001, or SLO rules selecting le="0.7" find nothing."""
    text = ("# TYPE nv_inference_first_response_histogram_ms histogram\n"
            'nv_inference_first_response_histogram_ms_bucket{model="m",version="1",le="700"} 3\n'
            'nv_inference_first_response_histogram_ms_bucket{model="m",version="1",le="+Inf"} 4\n'
            'nv_inference_first_response_histogram_ms_sum{model="m",version="1"} 2900\n'
            'nv_inference_first_response_histogram_ms_count{model="m",version="1"} 4\n')
    ttft = values(triton_families(URL, promtext.parse(text), None))[("blackwell_serving_ttft_seconds", ("m",))]
    assert ttft.buckets[0] == (0.7, 3) and ttft.sum == 2.9


def test_every_family_is_one_the_triton_source_may_fill():
    metrics, _, api = recorded_python_backend()
    Snapshot.of("triton", triton_families(URL, metrics, api))
    Snapshot.of("triton", triton_families(URL, promtext.parse((FIXTURES / "cpp_backend_metrics.txt").read_text()),
                                          None))


@pytest.mark.parametrize("has_families, backends, expected", [
    (True, {"tensorrt_llm": "tensorrtllm", "ensemble": "ensemble"}, "trtllm-cpp-backend"),
    (True, {"tensorrt_llm": "python"}, "python-backend"),
    (False, {"tensorrt_llm": "python"}, "llmapi"),
    (False, {"resnet": "onnxruntime"}, "unknown"),
    (True, {}, "unknown"),
])
def test_flavour_detection(has_families, backends, expected):
    body = 'nv_inference_count{model="m",version="1"} 1\n'
    if has_families:
        body += 'nv_trt_llm_request_metrics{model="m",request_type="active",version="1"} 0\n'
    assert flavour(promtext.parse(body), backends) == expected


def test_without_the_metrics_body_only_the_cpp_backend_can_be_told():
    assert flavour(None, {"tensorrt_llm": "tensorrtllm"}) == "trtllm-cpp-backend"
    assert flavour(None, {"tensorrt_llm": "python"}) == "unknown"


@pytest.mark.parametrize("body, problem", [
    (b"not json", "not JSON"),
    (b"[]", "no model_stats list"),
    (b'{"model_stats": [{"version": "1"}]}', "has no name"),
    (b'{"model_stats": [{"name": "m", "inference_stats": {"success": {"count": 1}}}]}', "not a count"),
    (b'{"model_stats": [{"name": "m", "inference_stats": {"success": {"count": "x", "ns": 1}}}]}', "has 'x'"),
    (b'{"model_stats": [{"name": "m", "inference_stats": {"success": {"count": 1, "ns": 2}}}]}', "fail"),
])
def test_malformed_statistics_are_named(body, problem):
    with pytest.raises(Exception, match=problem) as err:
        parse_stats(body)
    assert err.value.reason == "malformed"


def test_grpc_style_string_integers_are_accepted():
    stats = {"model_stats": [{"name": "m", "version": "1", "inference_stats": {
        k: {"count": "2", "ns": "3000000000"} for k in ("success", "fail", "queue")}}]}
    [entry] = parse_stats(json.dumps(stats).encode())
    assert entry["inference_stats"]["success"] == {"count": 2, "ns": 3_000_000_000}


# -- the source against a local server playing Triton -----------------------------------------

class FakeTriton:
    """Serves recorded bodies on the metrics and API paths of one port."""

    def __init__(self, metrics: bytes | None = None):
        self.server = Upstream()
        self.set_metrics((FIXTURES / "python_backend_metrics.txt").read_bytes() if metrics is None else metrics)
        json_type = "application/json"
        self.server.routes.update({
            "/v2/health/live": Route(b"", content_type=json_type),
            "/v2/health/ready": Route(b"", content_type=json_type),
            "/v2": Route(b'{"name":"triton","version":"2.51.0"}', content_type=json_type),
            "/v2/models/stats": Route((FIXTURES / "python_backend_stats.json").read_bytes(), content_type=json_type),
            "/v2/models/llm_stream/versions/1/ready": Route(b"", content_type=json_type),
            "/v2/models/llm_stream/versions/1/config": Route(b'{"name":"llm_stream","backend":"python"}',
                                                             content_type=json_type),
        })

    def set_metrics(self, body: bytes, **route) -> None:
        self.server.routes["/metrics"] = Route(body, **route)

    def endpoint(self, **extra) -> dict:
        return {"url": self.server.url("/metrics"), "api_url": self.server.url(""), **extra}


@pytest.fixture
def triton():
    fake = FakeTriton()
    yield fake
    fake.server.close()


def source_for(*endpoints: dict, clock: Clock | None = None) -> TritonSource:
    return TritonSource(TritonConfig(enabled=True, interval=5, timeout=2, endpoints=list(endpoints)),
                        clock=clock or Clock())


def test_poll_reads_metrics_health_stats_and_model_config(triton):
    clock = Clock()
    source = source_for(triton.endpoint(), clock=clock)
    got = values(source.poll())
    url = triton.server.url("/metrics")
    assert got[("blackwell_serving_up", ("triton", url))] == 1
    assert got[("blackwell_serving_runtime_info", ("triton", url, "python-backend", "2.51.0"))] == 1
    assert got[("blackwell_serving_request_success_total", ("llm_stream", "1"))] == 2
    clock.now += 5
    source.poll()
    assert triton.server.hits["/v2/models/llm_stream/versions/1/config"] == 1  # read once, then cached
    assert triton.server.hits["/v2/models/stats"] == 2


def test_a_server_that_is_down_exports_up_0_and_fails_the_poll(triton):
    source = source_for(triton.endpoint())
    triton.server.close()
    with pytest.raises(PartialPollError) as err:
        source.poll()
    assert err.value.reason == "unreachable"
    got = values(err.value.families)
    url = triton.server.url("/metrics")
    assert got[("blackwell_serving_up", ("triton", url))] == 0
    assert got[("blackwell_serving_ready", ("triton", url))] == 0
    assert ("blackwell_serving_request_success_total", ("llm_stream", "1")) not in got


def test_not_ready_is_reported_not_raised(triton):
    triton.server.routes["/v2/health/ready"] = Route(b"", status=503)
    triton.server.routes["/v2/models/llm_stream/versions/1/ready"] = Route(b'{"error":"unavailable"}', status=400)
    got = values(source_for(triton.endpoint()).poll())
    url = triton.server.url("/metrics")
    assert got[("blackwell_serving_live", ("triton", url))] == 1
    assert got[("blackwell_serving_ready", ("triton", url))] == 0
    assert got[("blackwell_serving_model_ready", ("llm_stream", "1"))] == 0


@pytest.mark.parametrize("route, reason", [
    ({"body": b"nv_inference_count{model=\"m\" 1\n"}, "malformed"),
    ({"body": b"\x00\xff\xfe garbage"}, "malformed"),
    ({"body": b"nv_inference_count 1\n" * 2000}, "too_large"),
    ({"body": b"nv_inference_count 1\n", "declared_length": 500}, "truncated"),
])
def test_bad_metrics_bodies_fail_the_endpoint_cleanly(triton, route, reason):
    triton.set_metrics(**route)
    source = source_for(triton.endpoint(max_bytes=10_000))
    with pytest.raises(PartialPollError) as err:
        source.poll()
    assert err.value.reason == reason
    got = values(err.value.families)
    assert got[("blackwell_serving_up", ("triton", triton.server.url("/metrics")))] == 0
    assert got[("blackwell_serving_ready", ("triton", triton.server.url("/metrics")))] == 1  # the API still answered


def test_malformed_statistics_fail_the_endpoint_but_keep_the_metrics(triton):
    triton.server.routes["/v2/models/stats"] = Route(b'{"model_stats": 7}')
    with pytest.raises(PartialPollError) as err:
        source_for(triton.endpoint()).poll()
    assert err.value.reason == "malformed"
    got = values(err.value.families)
    assert got[("blackwell_serving_request_success_total", ("llm_stream", "1"))] == 2


def test_upstream_counter_resets_pass_through(triton):
    clock = Clock()
    source = source_for(triton.endpoint(), clock=clock)
    before = values(source.poll())[("blackwell_serving_request_success_total", ("llm_stream", "1"))]
    triton.set_metrics(b'nv_inference_request_success{model="llm_stream",version="1"} 1\n')  # Triton restarted
    clock.now += 4.9  # a little early, as scheduler jitter can make it
    after = values(source.poll())[("blackwell_serving_request_success_total", ("llm_stream", "1"))]
    assert (before, after) == (2, 1)


def test_api_can_be_switched_off(triton):
    got = values(source_for(triton.endpoint(api=False)).poll())
    assert not triton.server.hits.get("/v2/models/stats")
    assert ("blackwell_serving_ready", ("triton", triton.server.url("/metrics"))) not in got
    assert got[("blackwell_serving_runtime_info", ("triton", triton.server.url("/metrics"), "unknown", "unknown"))]


def test_two_endpoints_one_down_keeps_the_other_and_names_the_failure(triton):
    other = FakeTriton(b'nv_inference_request_success{model="other",version="1"} 9\n')
    try:
        source = source_for(triton.endpoint(), other.endpoint(api=False))
        other.server.close()
        with pytest.raises(PartialPollError) as err:
            source.poll()
        got = values(err.value.families)
        assert got[("blackwell_serving_up", ("triton", triton.server.url("/metrics")))] == 1
        assert got[("blackwell_serving_up", ("triton", other.server.url("/metrics")))] == 0
        assert got[("blackwell_serving_request_success_total", ("llm_stream", "1"))] == 2
        assert other.server.url("/metrics") in str(err.value)
    finally:
        other.server.close()


def test_each_endpoint_keeps_its_own_interval(triton):
    clock = [100.0]
    config = TritonConfig(enabled=True, interval=5, timeout=2,
                          endpoints=[triton.endpoint(api=False, interval=20)])
    source = TritonSource(config, clock=lambda: clock[0])
    source.poll()
    clock[0] += 5
    again = values(source.poll())  # not due: served from the last read
    assert triton.server.hits["/metrics"] == 1
    assert again[("blackwell_serving_request_success_total", ("llm_stream", "1"))] == 2
    clock[0] += 15
    source.poll()
    assert triton.server.hits["/metrics"] == 2


def test_the_same_model_on_two_endpoints_is_two_series_told_apart_by_endpoint(triton):
    twin = FakeTriton()
    try:
        families = source_for(triton.endpoint(api=False), twin.endpoint(api=False)).poll()
        rows = [labels for f in families if f.metric.name == "blackwell_serving_request_success_total"
                for labels, _ in f.samples]
        assert rows == [("llm_stream", "1", triton.server.url("/metrics")),
                        ("llm_stream", "1", twin.server.url("/metrics"))]
        ups = [labels for f in families if f.metric.name == "blackwell_serving_up" for labels, _ in f.samples]
        assert len(ups) == 2
    finally:
        twin.server.close()


def test_config_defaults_and_checks():
    default = TritonConfig()
    assert [e.url for e in default.endpoints] == ["http://127.0.0.1:8002/metrics"]
    assert default.endpoints[0].api_base() == "http://127.0.0.1:8000"
    assert TritonEndpoint(url="https://[::1]:8002/metrics").api_base() == "https://[::1]:8000"
    with pytest.raises(ValidationError, match="must not exceed the source's timeout"):
        TritonConfig(interval=10, timeout=5, endpoints=[{"url": URL, "timeout": 6}])
    with pytest.raises(ValidationError, match="must not be shorter than the source's interval"):
        TritonConfig(interval=10, timeout=5, endpoints=[{"url": URL, "interval": 2}])
    with pytest.raises(ValidationError, match="listed more than once"):
        TritonConfig(endpoints=[{"url": URL}, {"url": URL}])
    with pytest.raises(ValidationError, match="at least one endpoint"):
        TritonConfig(endpoints=[])
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        TritonConfig(endpoints=[{"url": URL, "tls_verfy": False}])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["model_stats", "name", "version", "inference_stats", "success", "fail", "queue", "count",
                         "ns", "x"]), inner, max_size=5),
    max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_statistics_body_is_parsed_or_refused_as_malformed(data):
    try:
        stats = parse_stats(json.dumps(data).encode())
    except PollError as exc:
        assert exc.reason == "malformed"
        return
    Snapshot.of("triton", triton_families(URL, None, TritonApi(stats=stats)))


def test_a_hung_triton_is_reported_by_the_source_before_the_scheduler_gives_up(triton):
    triton.set_metrics(b"nv_inference_count 1\n" * 50, drip_seconds=0.05)  # would take 50 s
    store = SnapshotStore()
    source = TritonSource(TritonConfig(enabled=True, interval=2, timeout=1, endpoints=[triton.endpoint(api=False)]))
    runner = SourceRunner(source, store, lambda: Snapshot("exporter", {}))
    runner.run_once()
    assert runner.errors == {"timeout": 1}
    assert "no complete answer within 0.9s" in runner.last_error  # the source's message, not "did not finish"
    assert 'blackwell_serving_up{runtime="triton"' in store.current().text.decode()
    assert f'endpoint="{triton.server.url("/metrics")}"}} 0' in store.current().text.decode()


def test_two_versions_of_one_trtllm_model_are_added_up_per_model():
    """The catalog keys KV blocks and batch states on the model: versions add up, tokens per block does not."""
    text = ("# TYPE nv_trt_llm_kv_cache_block_metrics gauge\n"
            'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used",model="tensorrt_llm",version="1"} 10\n'
            'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used",model="tensorrt_llm",version="2"} 20\n'
            'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="tokens_per",model="tensorrt_llm",version="1"} 32\n'
            'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="tokens_per",model="tensorrt_llm",version="2"} 32\n')
    families = {f.metric.name: f for f in triton_families("http://t/metrics", promtext.parse(text), None)}
    assert families["blackwell_serving_kv_cache_blocks"].samples == [(("tensorrt_llm", "used", "http://t/metrics"), 30)]
    assert families["blackwell_serving_kv_cache_tokens_per_block"].samples == [(("tensorrt_llm", "http://t/metrics"), 32)]
