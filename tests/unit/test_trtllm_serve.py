"""The trtllm_serve source: both naming generations, undefined labels, iteration stats, and bad bodies."""

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from exporter import catalog, promtext
from exporter.catalog import MetricType
from exporter.snapshot import Snapshot
from exporter.sources.base import PartialPollError
from exporter.sources.trtllm_serve import (
    TrtllmServeConfig,
    TrtllmServeSource,
    failure_reason,
    trtllm_serve_families,
)
from tests.support import FakeClock as Clock
from tests.support import assert_nothing_went_down
from tests.support import values_of_one_endpoint as values
from tests.unit.upstream_server import Route, Upstream

FIXTURES = Path(__file__).parent.parent / "fixtures" / "trtllm_serve"
URL = "http://127.0.0.1:8000/prometheus/metrics"
QWEN = "Qwen2.5-72B-Instruct-FP4"
TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0, math.inf]


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_current_generation_with_prefix():
    metrics = promtext.parse(body("prometheus_prefixed.txt"))
    got = values(trtllm_serve_families(URL, metrics, 200, "1.2.0", "ignored", None))
    assert got[("blackwell_serving_request_success_total", (QWEN, ""))] == 4  # summed over finished_reason
    assert got[("blackwell_serving_prompt_tokens_total", (QWEN,))] == 512 + 2048 + 128 + 8192
    assert got[("blackwell_serving_generation_tokens_total", (QWEN,))] == 448
    assert got[("blackwell_serving_request_failure_total", (QWEN, "", "REJECTED"))] == 2
    assert got[("blackwell_serving_request_failure_total", (QWEN, "", "CANCELED"))] == 1
    assert got[("blackwell_serving_request_failure_total", (QWEN, "", "BACKEND"))] == 1
    assert got[("blackwell_serving_batch_requests", (QWEN, "active"))] == 6
    assert got[("blackwell_serving_batch_requests", (QWEN, "generation"))] == 5
    assert got[("blackwell_serving_kv_cache_blocks", (QWEN, "used"))] == 1024
    # trtllm_kv_cache_reused_blocks_total is a counter: exported as one, apart from Triton's reused-blocks gauge.
    assert got[("blackwell_serving_kv_cache_block_reuses_total", (QWEN,))] == 731
    assert catalog.get("blackwell_serving_kv_cache_block_reuses_total").type is MetricType.COUNTER
    assert not any(name == "blackwell_serving_kv_cache_reused_blocks" for name, _ in got)
    assert got[("blackwell_serving_kv_cache_hit_ratio", (QWEN,))] == 0.42
    assert got[("blackwell_serving_runtime_memory_bytes", (QWEN, "gpu"))] == 170e9
    assert got[("blackwell_serving_runtime_info", ("trtllm-serve", URL, "pytorch", "1.2.0"))] == 1
    ttft = got[("blackwell_serving_ttft_seconds", (QWEN,))]
    assert [b for b, _ in ttft.buckets] == TTFT_BUCKETS  # trtllm-serve's own buckets, untouched
    assert ttft.count == 4 and ttft.sum == pytest.approx(0.21 + 0.45 + 0.08 + 2.8)
    for name in ("blackwell_serving_inter_token_latency_seconds", "blackwell_serving_e2e_latency_seconds",
                 "blackwell_serving_queue_time_seconds"):
        assert got[(name, (QWEN,))].count == 4
    Snapshot.of("trtllm_serve", trtllm_serve_families(URL, metrics, 200, "1.2.0", "m", None))


def test_a_body_printing_both_generations_is_counted_once():
    both = body("prometheus_prefixed.txt") + body("prometheus_unprefixed.txt")
    metrics = promtext.parse(both)
    got = values(trtllm_serve_families(URL, metrics, 200, "1.2.0", "ignored", None))
    assert got[("blackwell_serving_request_success_total", (QWEN, ""))] == 4
    assert got[("blackwell_serving_ttft_seconds", (QWEN,))].count == 4
    assert not [key for key in got if "ignored" in key[1]], "the older generation's copy is not counted again"


def test_first_generation_without_prefix_and_undefined_labels():
    metrics = promtext.parse(body("prometheus_unprefixed.txt"))
    got = values(trtllm_serve_families(URL, metrics, 200, "", "llama-3.1-8b", None))
    assert got[("blackwell_serving_request_success_total", ("llama-3.1-8b", ""))] == 4
    assert got[("blackwell_serving_e2e_latency_seconds", ("llama-3.1-8b",))].count == 4
    assert got[("blackwell_serving_inter_token_latency_seconds", ("llama-3.1-8b",))].sum == pytest.approx(0.119)
    assert got[("blackwell_serving_runtime_info", ("trtllm-serve", URL, "unknown", "unknown"))] == 1
    assert not any("undefined" in labels for _, labels in got)


def test_iteration_stats_fill_what_the_prometheus_endpoint_lacks():
    metrics = promtext.parse(body("prometheus_unprefixed.txt"))
    newest = json.loads(body("iteration_stats.json"))[-1]
    got = values(trtllm_serve_families(URL, metrics, 200, "", "m", newest))
    assert got[("blackwell_serving_iterations_total", ("m",))] == 40212
    assert got[("blackwell_serving_batch_requests", ("m", "waiting"))] == 2
    assert got[("blackwell_serving_batch_requests", ("m", "scheduled"))] == 6
    assert got[("blackwell_serving_kv_cache_blocks", ("m", "free"))] == 4096 - 1024
    assert got[("blackwell_serving_kv_cache_hit_ratio", ("m",))] == pytest.approx(0.43)
    assert got[("blackwell_serving_runtime_memory_bytes", ("m", "pinned"))] == 1e9


def test_prometheus_values_win_over_iteration_stats():
    metrics = promtext.parse(body("prometheus_prefixed.txt"))
    stale = {**json.loads(body("iteration_stats.json"))[0], "numActiveRequests": 99}
    got = values(trtllm_serve_families(URL, metrics, 200, "", "m", stale))
    assert got[("blackwell_serving_batch_requests", (QWEN, "active"))] == 6
    assert got[("blackwell_serving_iterations_total", (QWEN,))] == 40210


@pytest.mark.parametrize("code, reason", [("499", "CANCELED"), ("400", "REJECTED"), ("429", "REJECTED"),
                                          ("500", "BACKEND"), ("503", "BACKEND"), ("", "OTHER")])
def test_http_codes_become_failure_reasons(code, reason):
    assert failure_reason(code) == reason


# -- the source against a local server playing trtllm-serve -----------------------------------

@pytest.fixture
def server():
    upstream = Upstream()
    upstream.routes.update({
        "/prometheus/metrics": Route(body("prometheus_unprefixed.txt")),
        "/health": Route(b""),
        "/version": Route(b'{"version": "1.0.0"}', content_type="application/json"),
        "/v1/models": Route(b'{"object": "list", "data": [{"id": "llama-3.1-8b", "object": "model"}]}',
                            content_type="application/json"),
        "/metrics": Route(body("iteration_stats.json"), content_type="application/json"),
    })
    yield upstream
    upstream.close()


def source_for(server: Upstream, clock: Clock | None = None, **endpoint) -> TrtllmServeSource:
    config = TrtllmServeConfig(enabled=True, interval=5, timeout=2,
                               endpoints=[{"url": server.url("/prometheus/metrics"), **endpoint}])
    return TrtllmServeSource(config, clock=clock or Clock())


def test_model_name_comes_from_v1_models_when_undefined(server):
    got = values(source_for(server).poll())
    url = server.url("/prometheus/metrics")
    assert got[("blackwell_serving_request_success_total", ("llama-3.1-8b", ""))] == 4
    assert got[("blackwell_serving_up", ("trtllm-serve", url))] == 1
    assert got[("blackwell_serving_ready", ("trtllm-serve", url))] == 1
    assert got[("blackwell_serving_runtime_info", ("trtllm-serve", url, "unknown", "1.0.0"))] == 1
    assert "/metrics" not in server.hits  # iteration stats are off by default: reading them drains the queue


def test_an_empty_models_answer_is_asked_again_next_poll(server):
    models = server.routes["/v1/models"]
    server.routes["/v1/models"] = Route(b"", status=503)
    clock = Clock()
    source = source_for(server, clock)
    source.poll()
    server.routes["/v1/models"] = models
    clock.now += 5
    got = values(source.poll())
    assert got[("blackwell_serving_request_success_total", ("llama-3.1-8b", ""))] == 4


def test_configured_model_name_wins(server):
    got = values(source_for(server, model="prod-llm").poll())
    assert got[("blackwell_serving_request_success_total", ("prod-llm", ""))] == 4
    assert "/v1/models" not in server.hits


def test_iteration_stats_keep_the_last_entry_when_the_queue_is_empty(server):
    clock = Clock()
    source = source_for(server, clock, iteration_stats=True)
    first = values(source.poll())
    assert first[("blackwell_serving_iterations_total", ("llama-3.1-8b",))] == 40212
    server.routes["/metrics"] = Route(b"[]", content_type="application/json")  # drained: nothing new
    clock.now += 5
    again = values(source.poll())
    assert again[("blackwell_serving_iterations_total", ("llama-3.1-8b",))] == 40212
    assert server.hits["/metrics"] == 2


def test_unhealthy_server_is_live_but_not_ready(server):
    server.routes["/health"] = Route(b"", status=503)
    got = values(source_for(server).poll())
    url = server.url("/prometheus/metrics")
    assert (got[("blackwell_serving_live", ("trtllm-serve", url))],
            got[("blackwell_serving_ready", ("trtllm-serve", url))]) == (1, 0)


@pytest.mark.parametrize("route, reason", [
    (Route(b"garbage {{{ not prometheus"), "malformed"),
    (Route(b"request_success_total{model_name=\"undefined\",finished_reason=\"stop\"} 3\n"
           b"request_success_total{model_name=\"undefined\",finished_rea"), "malformed"),
    (Route(b"\x89PNG\r\n\x1a\n\x00\x00binary"), "malformed"),
    (Route(b"x 1\n" * 50_000), "too_large"),
    (Route(b"request_success_total 1\n", declared_length=4096), "truncated"),
    (Route(b"", status=500), "http_status"),
    (Route(b"a 1\n" * 20, drip_seconds=0.2), "timeout"),
])
def test_bad_prometheus_bodies_mark_the_endpoint_down_without_crashing(server, route, reason):
    server.routes["/prometheus/metrics"] = route
    with pytest.raises(PartialPollError) as err:
        source_for(server, max_bytes=100_000, timeout=0.5).poll()
    assert err.value.reason == reason
    got = values(err.value.families)
    url = server.url("/prometheus/metrics")
    assert got[("blackwell_serving_up", ("trtllm-serve", url))] == 0
    assert not any(name == "blackwell_serving_request_success_total" for name, _ in got)


@pytest.mark.parametrize("payload", [b"{not json", b'{"iter": 1}', b"[1, 2]", b"[" * 100_000])
def test_bad_iteration_stats_are_malformed_not_fatal(server, payload):
    server.routes["/metrics"] = Route(payload, content_type="application/json")
    with pytest.raises(PartialPollError) as err:
        source_for(server, iteration_stats=True, max_bytes=200_000).poll()
    assert err.value.reason == "malformed"
    got = values(err.value.families)
    assert got[("blackwell_serving_request_success_total", ("unknown", ""))] == 4  # the Prometheus body still counts


def test_server_down(server):
    source = source_for(server)
    server.close()
    with pytest.raises(PartialPollError) as err:
        source.poll()
    assert err.value.reason == "unreachable"
    got = values(err.value.families)
    url = server.url("/prometheus/metrics")
    assert (got[("blackwell_serving_up", ("trtllm-serve", url))],
            got[("blackwell_serving_live", ("trtllm-serve", url))]) == (0, 0)


def test_default_config():
    config = TrtllmServeConfig()
    [endpoint] = config.endpoints
    assert endpoint.url == "http://127.0.0.1:8000/prometheus/metrics"
    assert endpoint.iteration_stats is False
    assert endpoint.base() == "http://127.0.0.1:8000"


iteration_fields = st.dictionaries(
    st.sampled_from(["iter", "numActiveRequests", "numQueuedRequests", "maxNumActiveRequests", "gpuMemUsage",
                     "kvCacheStats", "inflightBatchingStats", "maxNumBlocks", "usedNumBlocks", "cacheHitRate"]),
    st.none() | st.booleans() | st.integers(min_value=-2**80, max_value=2**80) | st.floats() | st.text(max_size=3)
    | st.dictionaries(st.sampled_from(["maxNumBlocks", "usedNumBlocks", "numGenRequests", "cacheHitRate"]),
                      st.integers(min_value=-2**80, max_value=2**80) | st.floats(), max_size=4),
    max_size=10)


@settings(max_examples=300, deadline=None)
@given(iteration_fields)
def test_any_iteration_stats_entry_yields_valid_families(entry):
    families = trtllm_serve_families(URL, None, 200, "", "m", entry)
    Snapshot.of("trtllm_serve", families)
    for family in families:
        for _, value in family.samples:
            assert math.isfinite(value)


# -- counters never go backwards: restarts and label values that go away ---------------------------

class FakeTrtllmServe:
    """A trtllm-serve process's /prometheus/metrics: the prometheus_client calls its metrics collector
    makes (see tests/fixtures/trtllm_serve/make_bodies.py). The first generation (no prefix) has
    request_success_total and the histograms only; current builds (``trtllm_``) add the error and
    token counters. ``restart`` is a new process: every counter starts again at 0 and a label value
    appears only once it is counted. trtllm-serve runs prometheus_client in multiprocess mode, which
    prints no ``_created`` samples."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.restart()

    def restart(self) -> None:
        self.registry = CollectorRegistry()
        p, labels = self.prefix, ["model_name", "engine_type"]
        self.success = Counter(p + "request_success_total", "Count of successfully processed requests.",
                               [*labels, "finished_reason"], registry=self.registry)
        self.ttft = Histogram(p + "time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                              labels, buckets=TTFT_BUCKETS[:-1], registry=self.registry)
        if self.prefix:
            self.errors = Counter(p + "request_error_total", "Total request errors, labeled by HTTP status code.",
                                  [*labels, "http_code"], registry=self.registry)
            self.prompt = Counter(p + "prompt_tokens_total", "Cumulative number of prompt (input) tokens processed.",
                                  labels, registry=self.registry)

    def finish(self, reason: str, count: int = 1, prompt_tokens: int = 100) -> None:
        for _ in range(count):
            self.success.labels("undefined", "undefined", reason).inc()
            self.ttft.labels("undefined", "undefined").observe(0.2)
            if self.prefix:
                self.prompt.labels("undefined", "undefined").inc(prompt_tokens)

    def fail(self, http_code: str, count: int = 1) -> None:
        if self.prefix:  # the first generation did not count errors
            self.errors.labels("undefined", "undefined", http_code).inc(count)

    def body(self) -> bytes:
        return b"".join(line for line in generate_latest(self.registry).splitlines(keepends=True)
                        if b"_created" not in line)


COUNTERS = ("blackwell_serving_request_success_total", "blackwell_serving_request_failure_total",
            "blackwell_serving_prompt_tokens_total")


def counters_and_ttft(families) -> dict:
    """Every counter series, and each TTFT histogram's count, sum and buckets as series of their own."""
    out = {}
    for key, value in values(families).items():
        if key[0] in COUNTERS:
            out[key] = value
        elif key[0] == "blackwell_serving_ttft_seconds":
            out[(key, "count")], out[(key, "sum")] = value.count, value.sum
            out.update({(key, bound): count for bound, count in value.buckets})
    return out


@pytest.fixture(params=["", "trtllm_"], ids=["first generation", "trtllm_ prefix"])
def fake_serve(request, server):
    fake = FakeTrtllmServe(request.param)
    server.routes["/prometheus/metrics"] = Route(fake.body())
    return fake


def poll_after(source, server, fake, clock):
    server.routes["/prometheus/metrics"] = Route(fake.body())
    clock.now += 5
    return counters_and_ttft(source.poll())


def test_a_restart_with_fewer_finished_reasons_never_takes_a_counter_backwards(server, fake_serve):
    clock = Clock()
    source = source_for(server, clock, model="m")
    fake_serve.finish("stop", 30)
    fake_serve.finish("length", 12)
    fake_serve.finish("abort", 3)
    fake_serve.fail("400", 4)
    fake_serve.fail("429", 2)
    before = poll_after(source, server, fake_serve, clock)
    assert before[("blackwell_serving_request_success_total", ("m", ""))] == 45
    if fake_serve.prefix:
        assert before[("blackwell_serving_request_failure_total", ("m", "", "REJECTED"))] == 6

    fake_serve.restart()  # the new process has finished 2 requests, all "stop", and refused one with 429
    fake_serve.finish("stop", 2)
    fake_serve.fail("429")
    after = poll_after(source, server, fake_serve, clock)
    assert_nothing_went_down(before, after)
    # what the new process counted is added to what the old one had: rate() sees exactly the new requests
    assert after[("blackwell_serving_request_success_total", ("m", ""))] == 45 + 2
    if fake_serve.prefix:
        assert after[("blackwell_serving_request_failure_total", ("m", "", "REJECTED"))] == 6 + 1
        assert after[("blackwell_serving_prompt_tokens_total", ("m",))] == 45 * 100 + 2 * 100
    ttft = ((("blackwell_serving_ttft_seconds", ("m",))), "count")
    assert after[ttft] == 45 + 2

    fake_serve.finish("length", 1)  # a reason comes back after the restart: counted once, from where it left
    again = poll_after(source, server, fake_serve, clock)
    assert_nothing_went_down(after, again)
    assert again[("blackwell_serving_request_success_total", ("m", ""))] == 45 + 3


def test_a_reason_series_that_goes_away_while_the_server_runs_is_no_false_reset(server, fake_serve):
    clock = Clock()
    source = source_for(server, clock, model="m")
    fake_serve.finish("stop", 10)
    fake_serve.finish("length", 5)
    fake_serve.fail("500", 3)
    fake_serve.fail("503", 1)
    before = poll_after(source, server, fake_serve, clock)
    fake_serve.success.remove("undefined", "undefined", "length")  # the series is no longer printed
    if fake_serve.prefix:
        fake_serve.errors.remove("undefined", "undefined", "503")
    fake_serve.finish("stop", 1)
    after = poll_after(source, server, fake_serve, clock)
    assert_nothing_went_down(before, after)
    assert after[("blackwell_serving_request_success_total", ("m", ""))] == 16
    if fake_serve.prefix:
        assert after[("blackwell_serving_request_failure_total", ("m", "", "BACKEND"))] == 4


def test_a_restart_behind_an_outage_carries_on_and_the_outage_costs_no_counts(server, fake_serve):
    clock = Clock()
    source = source_for(server, clock, model="m")
    fake_serve.finish("stop", 8)
    fake_serve.finish("length", 2)
    before = poll_after(source, server, fake_serve, clock)
    server.routes["/prometheus/metrics"] = Route(b"", status=503)  # the server is down for a few polls
    clock.now += 5
    with pytest.raises(PartialPollError):
        source.poll()
    assert poll_after(source, server, fake_serve, clock) == before, "back, not restarted: the same values"
    fake_serve.restart()
    fake_serve.finish("stop", 1)
    after = poll_after(source, server, fake_serve, clock)
    assert_nothing_went_down(before, after)
    assert after[("blackwell_serving_request_success_total", ("m", ""))] == 11


def test_the_iteration_counter_carries_on_over_a_restart(server):
    clock = Clock()
    source = source_for(server, clock, iteration_stats=True, model="m")
    assert values(source.poll())[("blackwell_serving_iterations_total", ("m",))] == 40212
    newest = {**json.loads(body("iteration_stats.json"))[-1], "iter": 7}  # a new process: iter counts from 0
    server.routes["/metrics"] = Route(json.dumps([newest]).encode(), content_type="application/json")
    clock.now += 5
    assert values(source.poll())[("blackwell_serving_iterations_total", ("m",))] == 40212 + 7
