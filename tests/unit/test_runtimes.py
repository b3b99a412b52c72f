"""The runtimes source: vLLM, SGLang, Dynamo and NIM expositions under the blackwell_serving_* names.

The vLLM and SGLang fixtures are recorded from the runtimes' own metric modules; Dynamo's and
NIM's are written from their source and documentation (each fixture's header says which).
"""

import logging
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from exporter import promtext
from exporter.snapshot import Snapshot
from exporter.sources.base import PartialPollError
from exporter.sources.runtime_maps import DYNAMO_FRONTEND, NIM, SGLANG, VLLM
from exporter.sources.runtimes import RuntimeEndpoint, RuntimesConfig, RuntimesSource, runtime_families
from exporter.sources.serving_endpoints import merge_families
from tests.unit.upstream_server import Route, Upstream

FIXTURES = Path(__file__).parent.parent / "fixtures" / "runtimes"
URL = "http://10.0.0.5:8000/metrics"
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
# vllm/v1/metrics/loggers.py (0.11.0): time_to_first_token_seconds, inter_token_latency_seconds
VLLM_TTFT = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
             40.0, 80.0, 160.0, 640.0, 2560.0, math.inf]
VLLM_ITL = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
            80.0, math.inf]


def values(families):
    return {(f.metric.name, labels): value for f in families for labels, value in f.samples}


def read(fixture: str, runtime: str, **endpoint) -> dict:
    metrics = promtext.parse((FIXTURES / fixture).read_bytes())
    families = runtime_families(RuntimeEndpoint(url=URL, runtime=runtime, **endpoint), metrics, 200, "")
    Snapshot.of("runtimes", families)  # every family is one the catalog lets this source fill
    return values(families)


def bounds(histogram) -> list[float]:
    return [b for b, _ in histogram.buckets]


def test_vllm_current_generation():
    got = read("vllm/metrics_0.11.0.txt", "vllm")
    assert bounds(got[("blackwell_serving_ttft_seconds", (LLAMA, URL))]) == VLLM_TTFT
    itl = got[("blackwell_serving_inter_token_latency_seconds", (LLAMA, URL))]
    assert bounds(itl) == VLLM_ITL and itl.count == 4
    assert got[("blackwell_serving_e2e_latency_seconds", (LLAMA, URL))].sum == pytest.approx(2.1 + 4.4 + 9.8)
    assert got[("blackwell_serving_queue_time_seconds", (LLAMA, URL))].count == 3
    assert got[("blackwell_serving_request_success_total", (LLAMA, "", URL))] == 3  # stop + length
    assert got[("blackwell_serving_request_failure_total", (LLAMA, "", "CANCELED", URL))] == 0  # abort
    assert got[("blackwell_serving_prompt_tokens_total", (LLAMA, URL))] == 2688
    assert got[("blackwell_serving_generation_tokens_total", (LLAMA, URL))] == 704
    assert got[("blackwell_serving_batch_requests", (LLAMA, "active", URL))] == 14
    assert got[("blackwell_serving_batch_requests", (LLAMA, "waiting", URL))] == 2
    assert got[("blackwell_serving_kv_cache_usage_ratio", (LLAMA, URL))] == 0.37
    assert got[("blackwell_serving_kv_cache_blocks", (LLAMA, "max", URL))] == 16384  # cache_config_info
    assert got[("blackwell_serving_kv_cache_blocks", (LLAMA, "used", URL))] == round(0.37 * 16384)
    assert got[("blackwell_serving_preemptions_total", (LLAMA, URL))] == 1
    assert got[("blackwell_serving_prefix_cache_queried_tokens_total", (LLAMA, URL))] == 2944
    assert got[("blackwell_serving_prefix_cache_hit_tokens_total", (LLAMA, URL))] == 1024
    assert got[("blackwell_serving_runtime_info", ("vllm", URL, "v1-engine", "unknown"))] == 1


def test_vllm_printing_both_generations_counts_once():
    """--show-hidden-metrics-for-version prints gpu_cache_usage_perc and gpu_prefix_cache_* beside the new names."""
    assert read("vllm/metrics_0.11.0_hidden.txt", "vllm") == read("vllm/metrics_0.11.0.txt", "vllm")


def test_vllm_older_generations():
    v092 = read("vllm/metrics_0.9.2.txt", "vllm")  # no inter_token_latency_seconds yet
    itl = v092[("blackwell_serving_inter_token_latency_seconds", (LLAMA, URL))]
    assert itl.count == 4 and itl.sum == pytest.approx(0.085)
    v085 = read("vllm/metrics_0.8.5.txt", "vllm")  # gpu_cache_usage_perc, gpu_prefix_cache_* only
    assert v085[("blackwell_serving_kv_cache_usage_ratio", (LLAMA, URL))] == 0.37
    assert v085[("blackwell_serving_prefix_cache_hit_tokens_total", (LLAMA, URL))] == 1024


def test_sglang():
    got = read("sglang/metrics.txt", "sglang")
    ttft = got[("blackwell_serving_ttft_seconds", (LLAMA, URL))]
    assert bounds(ttft)[:4] == [0.1, 0.2, 0.4, 0.6] and bounds(ttft)[-2:] == [400.0, math.inf]  # SGLang's own
    assert got[("blackwell_serving_inter_token_latency_seconds", (LLAMA, URL))].count == 60  # 3 x 20 tokens
    assert got[("blackwell_serving_queue_time_seconds", (LLAMA, URL))].count == 4
    assert got[("blackwell_serving_batch_requests", (LLAMA, "active", URL))] == 12
    assert got[("blackwell_serving_pending_requests", (LLAMA, "", URL))] == 3
    assert got[("blackwell_serving_kv_cache_usage_ratio", (LLAMA, URL))] == 0.62
    assert got[("blackwell_serving_kv_cache_hit_ratio", (LLAMA, URL))] == 0.41
    assert got[("blackwell_serving_prefix_cache_hit_tokens_total", (LLAMA, URL))] == 320
    assert got[("blackwell_serving_request_success_total", (LLAMA, "", URL))] == 3
    assert got[("blackwell_serving_runtime_info", ("sglang", URL, "unified", "unknown"))] == 1
    assert ("blackwell_serving_prefix_cache_queried_tokens_total", (LLAMA, URL)) not in got  # SGLang has no such count


def test_nim_first_generation_names_without_prefix():
    got = read("nim/metrics.txt", "nim")
    assert got[("blackwell_serving_inter_token_latency_seconds", (LLAMA, URL))].count == 4  # time_per_output_token
    assert got[("blackwell_serving_kv_cache_usage_ratio", (LLAMA, URL))] == 0.44  # gpu_cache_usage_perc
    assert got[("blackwell_serving_batch_requests", (LLAMA, "max", URL))] == 256
    assert got[("blackwell_serving_request_success_total", (LLAMA, "", URL))] == 3
    assert not any(name == "blackwell_serving_queue_time_seconds" for name, _ in got)  # NIM has none: absent


def test_dynamo_frontend_failures_by_error_type():
    got = read("dynamo/frontend.txt", "dynamo-frontend")
    assert got[("blackwell_serving_request_success_total", (LLAMA, "", URL))] == 41
    assert got[("blackwell_serving_request_failure_total", (LLAMA, "", "CANCELED", URL))] == 2
    assert got[("blackwell_serving_request_failure_total", (LLAMA, "", "REJECTED", URL))] == 1  # overload
    assert got[("blackwell_serving_request_failure_total", (LLAMA, "", "BACKEND", URL))] == 1  # internal
    assert got[("blackwell_serving_prompt_tokens_total", (LLAMA, URL))] == 512 + 2048 + 128
    assert got[("blackwell_serving_model_ready", (LLAMA, "", URL))] == 1
    ttft = got[("blackwell_serving_ttft_seconds", (LLAMA, URL))]
    assert bounds(ttft)[:3] == [0.0, 0.0022, 0.0047] and bounds(ttft)[-2:] == [480.0, math.inf]
    assert got[("blackwell_serving_runtime_info", ("dynamo", URL, "frontend", "unknown"))] == 1


def test_dynamo_frontend_under_the_nim_compatible_prefix_reads_the_same():
    """DYN_METRICS_PREFIX=nv_llm_http_service renames every frontend family; nothing else changes."""
    nim_prefixed = read("dynamo/frontend_nim_prefix.txt", "dynamo-frontend")
    assert nim_prefixed == read("dynamo/frontend.txt", "dynamo-frontend")
    assert {name for name, _ in nim_prefixed} >= {"blackwell_serving_ttft_seconds", "blackwell_serving_request_success_total",
                                                  "blackwell_serving_batch_requests", "blackwell_serving_model_ready"}


def test_dynamo_workers_report_state_not_client_latency():
    prefill = read("dynamo/worker_prefill.txt", "dynamo-worker")
    decode = read("dynamo/worker_decode.txt", "dynamo-worker", role="decode")
    assert prefill[("blackwell_serving_runtime_info", ("dynamo", URL, "vllm-prefill", "unknown"))] == 1
    assert decode[("blackwell_serving_runtime_info", ("dynamo", URL, "vllm-decode", "unknown"))] == 1
    assert prefill[("blackwell_serving_kv_cache_usage_ratio", (LLAMA, URL))] == 0.12
    assert decode[("blackwell_serving_kv_cache_usage_ratio", (LLAMA, URL))] == 0.81
    assert decode[("blackwell_serving_kv_cache_blocks", (LLAMA, "max", URL))] == 16384
    for worker in (prefill, decode):
        assert not [key for key in worker if key[0].endswith(("_seconds", "tokens_total"))
                    and "prefix_cache" not in key[0]], "latency and tokens are the frontend's"


def test_prefill_and_decode_workers_of_one_model_stay_apart():
    families = []
    for fixture, url, role in (("dynamo/worker_prefill.txt", "http://prefill-0:9090/metrics", None),
                               ("dynamo/worker_decode.txt", "http://decode-0:9090/metrics", "decode")):
        metrics = promtext.parse((FIXTURES / fixture).read_bytes())
        families.append(runtime_families(RuntimeEndpoint(url=url, runtime="dynamo-worker", role=role), metrics, 200, ""))
    merged, duplicates = merge_families(families)
    got = values(merged)
    assert not duplicates
    assert got[("blackwell_serving_kv_cache_usage_ratio", (LLAMA, "http://prefill-0:9090/metrics"))] == 0.12
    assert got[("blackwell_serving_kv_cache_usage_ratio", (LLAMA, "http://decode-0:9090/metrics"))] == 0.81


def test_a_percentage_where_a_ratio_belongs_is_left_out_and_reported():
    metrics = promtext.parse(f'vllm:kv_cache_usage_perc{{model_name="{LLAMA}",engine="0"}} 37\n')
    got = values(runtime_families(RuntimeEndpoint(url=URL, runtime="vllm"), metrics, 200, ""))
    assert ("blackwell_serving_kv_cache_usage_ratio", (LLAMA, URL)) not in got
    assert any("outside 0..1" in problem for problem in metrics.problems)


def test_data_parallel_engines_add_up_and_ratios_average():
    metrics = promtext.parse(
        f'vllm:num_requests_running{{model_name="{LLAMA}",engine="0"}} 3\n'
        f'vllm:num_requests_running{{model_name="{LLAMA}",engine="1"}} 5\n'
        f'vllm:kv_cache_usage_perc{{model_name="{LLAMA}",engine="0"}} 0.2\n'
        f'vllm:kv_cache_usage_perc{{model_name="{LLAMA}",engine="1"}} 0.6\n')
    got = values(runtime_families(RuntimeEndpoint(url=URL, runtime="vllm"), metrics, 200, ""))
    assert got[("blackwell_serving_batch_requests", (LLAMA, "active", URL))] == 8
    assert got[("blackwell_serving_kv_cache_usage_ratio", (LLAMA, URL))] == pytest.approx(0.4)


def test_an_endpoint_must_say_which_runtime_it_is():
    with pytest.raises(ValidationError, match="runtime"):
        RuntimesConfig(enabled=True, endpoints=[{"url": URL}])
    with pytest.raises(ValidationError, match="runtime"):
        RuntimesConfig(enabled=True, endpoints=[{"url": URL, "runtime": "lmdeploy"}])


# -- the source against a local server playing vLLM -------------------------------------------

@pytest.fixture
def server():
    upstream = Upstream()
    upstream.routes.update({
        "/metrics": Route((FIXTURES / "vllm" / "metrics_0.11.0.txt").read_bytes()),
        "/health": Route(b""),
        "/version": Route(b'{"version": "0.11.0"}', content_type="application/json"),
    })
    yield upstream
    upstream.close()


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def source_for(server: Upstream, clock: Clock | None = None, **endpoint) -> RuntimesSource:
    config = RuntimesConfig(enabled=True, interval=5, timeout=2,
                            endpoints=[{"url": server.url("/metrics"), "runtime": "vllm", **endpoint}])
    return RuntimesSource(config, clock=clock or Clock())


def test_the_source_reads_metrics_health_and_version_once(server):
    clock = Clock()
    source = source_for(server, clock)
    got = values(source.poll())
    url = server.url("/metrics")
    assert got[("blackwell_serving_up", ("vllm", url))] == 1
    assert got[("blackwell_serving_ready", ("vllm", url))] == 1
    assert got[("blackwell_serving_runtime_info", ("vllm", url, "v1-engine", "0.11.0"))] == 1
    clock.now += 5
    source.poll()
    assert server.hits["/version"] == 1 and server.hits["/metrics"] == 2


def test_an_unknown_version_is_read_and_logged_once(server, caplog):
    server.routes["/version"] = Route(b'{"version": "0.14.1"}', content_type="application/json")
    clock = Clock()
    source = source_for(server, clock)
    with caplog.at_level(logging.WARNING, logger="exporter.sources.runtimes"):
        first = values(source.poll())
        clock.now += 5
        source.poll()
    assert first[("blackwell_serving_ttft_seconds", (LLAMA, server.url("/metrics")))].count == 3
    assert first[("blackwell_serving_runtime_info", ("vllm", server.url("/metrics"), "v1-engine", "0.14.1"))] == 1
    assert len([r for r in caplog.records if "0.14.1" in r.message]) == 1


@pytest.mark.parametrize("route, reason", [
    (Route(b"vllm:num_requests_running{model_name=\"m\"} 1\nvllm:num_requests_wai"), "malformed"),
    (Route(b"vllm:num_requests_running{model_name=\"m\"} 1\nvllm:num_requests_running{model_name=\"m\"} 2\n"),
     "malformed"),
    (Route(b"x 1\n" * 50_000), "too_large"),
    (Route(b"", status=500), "http_status"),
    (Route(b"vllm:num_requests_running 1\n" * 20, drip_seconds=0.2), "timeout"),
])
def test_a_bad_body_is_refused_whole_with_its_reason(server, route, reason):
    server.routes["/metrics"] = route
    with pytest.raises(PartialPollError) as err:
        source_for(server, max_bytes=100_000, timeout=0.5).poll()
    assert err.value.reason == reason
    got = values(err.value.families)
    url = server.url("/metrics")
    assert got[("blackwell_serving_up", ("vllm", url))] == 0
    assert not [name for name, _ in got if name.endswith(("_total", "_seconds", "_requests", "_ratio"))]


def test_a_server_that_is_not_ready_is_live_but_not_ready(server):
    server.routes["/health"] = Route(b"", status=503)
    got = values(source_for(server).poll())
    url = server.url("/metrics")
    assert (got[("blackwell_serving_live", ("vllm", url))], got[("blackwell_serving_ready", ("vllm", url))]) == (1, 0)


# -- the simulation standing in for each runtime ------------------------------------------------

def simulated(runtime: str) -> dict:
    from exporter.sources.simulated.source import SimulatedConfig, SimulatedSource

    now = [0.0]
    source = SimulatedSource(SimulatedConfig(enabled=True, profile="hgx-b200", runtime=runtime), clock=lambda: now[0])
    source.poll()
    now[0] = 60.0
    families = source.poll()
    Snapshot.of("simulated", families)
    return values(families)


@pytest.mark.parametrize("runtime, fixture, kind", [
    ("vllm", "vllm/metrics_0.11.0.txt", "vllm"), ("sglang", "sglang/metrics.txt", "sglang"),
    ("nim", "nim/metrics.txt", "nim"), ("dynamo", "dynamo/frontend.txt", "dynamo-frontend"),
])
def test_the_simulation_reports_what_the_runtime_reports(runtime, fixture, kind):
    """The same serving families (and states, and failure reasons) as the runtime's own exposition gives."""
    sim = simulated(runtime)
    real = read(fixture, kind)
    if runtime == "dynamo":  # the workers' state beside the frontend
        real |= read("dynamo/worker_decode.txt", "dynamo-worker", role="decode")
    only_series = {(name, labels[1:-1]) for name, labels in sim if name.startswith("blackwell_serving_")}
    real_series = {(name, labels[1:-1]) for name, labels in real}  # model and endpoint differ
    extra = {key for key in only_series - real_series if key[0] not in
             ("blackwell_serving_up", "blackwell_serving_live", "blackwell_serving_ready",
              "blackwell_serving_runtime_info", "blackwell_serving_request_failure_total")}
    assert not extra, f"the simulated {runtime} reports what {runtime} cannot: {sorted(extra)}"
    assert [labels[0] for name, labels in sim if name == "blackwell_serving_runtime_info"] == [runtime]
    assert all(0 <= value <= 1 for (name, _), value in sim.items() if name.endswith("_ratio"))


def test_the_simulation_stays_triton_by_default():
    got = simulated("triton")
    assert ("blackwell_serving_runtime_info", ("triton", "http://127.0.0.1:8002/metrics", "trtllm-cpp-backend",
                                               "2.51.0")) in got
    assert not any(name == "blackwell_serving_kv_cache_usage_ratio" for name, _ in got)


# -- whatever a runtime prints, the mapping produces valid catalog families ------------------------

_UPSTREAM_NAMES = sorted({name for m in (VLLM, SGLANG, NIM, DYNAMO_FRONTEND) for r in m.rules for name in r.upstream}
                         | {"dynamo_component_kvstats_gpu_cache_usage_percent", "vllm:cache_config_info"})
_LABELS = st.dictionaries(st.sampled_from(["model_name", "model", "engine", "finished_reason", "status",
                                           "error_type", "num_gpu_blocks", "worker_type"]),
                          st.sampled_from(["", "undefined", "m", "abort", "error", "cancelled", "16384", "-3",
                                           "None", "nan", "prefill"]), max_size=4)
_VALUES = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10, 10**12).map(float)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_UPSTREAM_NAMES), _LABELS, _VALUES), max_size=30),
       st.sampled_from(["vllm", "sglang", "nim", "dynamo-frontend", "dynamo-worker"]))
def test_any_exposition_maps_to_valid_families(samples, runtime):
    lines = {}
    for name, labels, value in samples:
        rendered = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        number = "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf") if math.isinf(value) else repr(value)
        lines[f"{name}{{{rendered}}}"] = f"{name}{{{rendered}}} {number}"
    metrics = promtext.parse("\n".join(lines.values()) + "\n")
    families = runtime_families(RuntimeEndpoint(url=URL, runtime=runtime), metrics, 200, "")
    Snapshot.of("runtimes", families)
    for (name, _), value in values(families).items():
        if name.endswith("_ratio"):
            assert 0 <= value <= 1
