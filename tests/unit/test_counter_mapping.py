"""Counters the runtime already has, re-exported under catalog names (issue 5, part 4)."""


import pytest
from pydantic import ValidationError

from exporter import promtext
from exporter.snapshot import Snapshot
from exporter.sources.base import PartialPollError
from exporter.sources.counter_mapping import (
    CounterMap,
    CounterMappingConfig,
    CounterMappingSource,
    map_counters,
)
from tests.unit.upstream_server import Route, Upstream

RUNTIME_BODY = b"""\
# HELP trtllm_mx_fp4_kernel_dispatches_total MX-FP4 GEMM kernel dispatches
# TYPE trtllm_mx_fp4_kernel_dispatches_total counter
trtllm_mx_fp4_kernel_dispatches_total{gpu="0",model_name="undefined"} 1200
trtllm_mx_fp4_kernel_dispatches_total{gpu="1",model_name="undefined"} 1180
# HELP trtllm_fp8_kernel_dispatches_total FP8 GEMM kernel dispatches
# TYPE trtllm_fp8_kernel_dispatches_total counter
trtllm_fp8_kernel_dispatches_total{gpu="0",model_name="undefined"} 30
trtllm_fp8_kernel_dispatches_total{gpu="1",model_name="undefined"} 410
# HELP trtllm_te2_promotion_events TE promotion events
# TYPE trtllm_te2_promotion_events counter
trtllm_te2_promotion_events_total{layer="47",tensor="weight"} 12
trtllm_te2_promotion_events_total{layer="47",tensor="activation"} 3
trtllm_te2_promotion_events_total{layer="3",tensor="weight"} 1
# TYPE trtllm_tma_multicast_loads_total counter
trtllm_tma_multicast_loads_total{gpu="0"} 5.5e9
# TYPE trtllm_kv_cache_utilization gauge
trtllm_kv_cache_utilization{model_name="undefined"} 0.4
"""


DROPPED = "blackwell_counter_mapping_dropped_series"


@pytest.fixture
def upstream():
    server = Upstream()
    yield server
    server.close()


def values(families):
    """The mapped counters' series (the dropped-series gauge is checked on its own)."""
    return {(f.metric.name, labels): value for f in families for labels, value in f.samples
            if f.metric.name != DROPPED}


BRIEF_MAPPINGS = [
    {"upstream": "trtllm_mx_fp4_kernel_dispatches_total", "metric": "blackwell_gemm_kernel_launches_total",
     "labels": {"gpu": "{gpu}", "precision": "fp4"}},
    {"upstream": "trtllm_fp8_kernel_dispatches", "metric": "blackwell_gemm_kernel_launches_total",
     "labels": {"gpu": "{gpu}", "precision": "fp8"}},
    {"upstream": "trtllm_te2_promotion_events_total", "metric": "blackwell_te_promotion_events_total",
     "labels": {"layer": "{layer}"}},
    {"upstream": "trtllm_tma_multicast_loads_total", "metric": "blackwell_tma_multicast_loads_total",
     "labels": {"gpu": "{gpu}"}},
]


def test_the_product_briefs_counters_land_on_catalog_names():
    mappings = [CounterMap(**m) for m in BRIEF_MAPPINGS]
    families, problems = map_counters(promtext.parse(RUNTIME_BODY), mappings)
    got = values(families)
    assert problems == []
    assert got[("blackwell_gemm_kernel_launches_total", ("0", "fp4"))] == 1200
    assert got[("blackwell_gemm_kernel_launches_total", ("1", "fp8"))] == 410
    # Upstream series that land on one catalog series (two tensors of layer 47) are added up.
    assert got[("blackwell_te_promotion_events_total", ("47",))] == 15
    assert got[("blackwell_te_promotion_events_total", ("3",))] == 1
    assert got[("blackwell_tma_multicast_loads_total", ("0",))] == 5.5e9
    Snapshot.of("counter_mapping", families)


def test_match_selects_upstream_series():
    mapping = CounterMap(upstream="trtllm_tma_multicast_loads_total", metric="blackwell_tma_multicast_loads_total",
                         labels={"gpu": "gpu{gpu}"}, match={"gpu": "1"})
    families, _ = map_counters(promtext.parse(RUNTIME_BODY), [mapping])
    assert values(families) == {}
    mapping = CounterMap(upstream="trtllm_tma_multicast_loads_total", metric="blackwell_tma_multicast_loads_total",
                         labels={"gpu": "gpu{gpu}"}, match={"gpu": "0"})
    families, _ = map_counters(promtext.parse(RUNTIME_BODY), [mapping])
    assert values(families) == {("blackwell_tma_multicast_loads_total", ("gpu0",)): 5.5e9}


def test_a_gauge_is_never_re_exported_as_a_counter():
    mapping = CounterMap(upstream="trtllm_kv_cache_utilization", metric="blackwell_tma_multicast_loads_total",
                         labels={"gpu": "0"})
    families, problems = map_counters(promtext.parse(RUNTIME_BODY), [mapping])
    assert values(families) == {}
    assert problems == ["trtllm_kv_cache_utilization is declared gauge, not a counter; not re-exported"]


def test_missing_template_label_and_series_cap_are_problems():
    missing = CounterMap(upstream="trtllm_tma_multicast_loads_total", metric="blackwell_tma_multicast_loads_total",
                         labels={"gpu": "{device}"})
    _, problems = map_counters(promtext.parse(RUNTIME_BODY), [missing])
    assert "has no label 'device'" in problems[0]
    body = "".join(f'x_total{{gpu="{i}"}} 1\n' for i in range(5))
    capped = CounterMap(upstream="x_total", metric="blackwell_tma_multicast_loads_total", labels={"gpu": "{gpu}"},
                        max_series=3)
    families, problems = map_counters(promtext.parse(body), [capped])
    assert len(values(families)) == 3
    assert "more than 3 series" in problems[0]


def test_max_series_keeps_the_first_series_kept_whatever_order_upstream_prints_them(upstream):
    """The kept set never changes between polls: a counter never jumps to another series' value."""
    capped = CounterMap(upstream="x_total", metric="blackwell_tma_multicast_loads_total", labels={"gpu": "{gpu}"},
                        max_series=2)
    source = CounterMappingSource(CounterMappingConfig(enabled=True, endpoints=[{"url": upstream.url("/metrics")}],
                                                       mappings=[capped]), clock=lambda: now[0])
    now = [0.0]
    upstream.routes["/metrics"] = Route(b'x_total{gpu="5"} 50\nx_total{gpu="7"} 70\n')
    assert values(source.poll()) == {("blackwell_tma_multicast_loads_total", ("5",)): 50,
                                     ("blackwell_tma_multicast_loads_total", ("7",)): 70}
    upstream.routes["/metrics"] = Route(b'x_total{gpu="1"} 1\nx_total{gpu="2"} 2\nx_total{gpu="7"} 71\n'
                                        b'x_total{gpu="5"} 51\n')
    now[0] += 60
    with pytest.raises(PartialPollError, match="2 new ones dropped") as caught:
        source.poll()
    families = caught.value.families
    assert values(families) == {("blackwell_tma_multicast_loads_total", ("5",)): 51,
                                ("blackwell_tma_multicast_loads_total", ("7",)): 71}
    dropped = {labels: value for f in families if f.metric.name == DROPPED for labels, value in f.samples}
    assert dropped == {("x_total", "blackwell_tma_multicast_loads_total"): 2}


@pytest.mark.parametrize("mapping, error", [
    ({"upstream": "x", "metric": "blackwell_nope_total", "labels": {}}, "not declared in exporter.catalog"),
    ({"upstream": "x", "metric": "blackwell_serving_pending_requests", "labels": {"model": "m", "version": "1"}},
     "only counters can be mapped"),
    ({"upstream": "x", "metric": "blackwell_exporter_source_errors_total", "labels": {"source": "a", "reason": "b"}},
     "must list 'counter_mapping' in sources"),
    ({"upstream": "x", "metric": "blackwell_tma_multicast_loads_total", "labels": {}}, "labels must give exactly"),
    ({"upstream": "x", "metric": "blackwell_tma_multicast_loads_total", "labels": {"gpu": "{gpu!r}"}},
     "may only use"),
    ({"upstream": "x", "metric": "blackwell_tma_multicast_loads_total", "labels": {"gpu": "{gpu"}},
     "not a valid template"),
    ({"upstream": "9bad", "metric": "blackwell_tma_multicast_loads_total", "labels": {"gpu": "0"}},
     "not a Prometheus metric name"),
])
def test_bad_mappings_are_refused_at_config_time(mapping, error):
    with pytest.raises(ValidationError, match=error):
        CounterMap(**mapping)


def test_enabled_without_mappings_is_an_error():
    with pytest.raises(ValidationError, match="maps nothing"):
        CounterMappingConfig(enabled=True)


def test_the_source_reads_endpoints_and_reports_problems_without_losing_good_mappings():
    server = Upstream()
    try:
        server.routes["/metrics"] = Route(RUNTIME_BODY)
        good = BRIEF_MAPPINGS[3]
        bad = {"upstream": "trtllm_kv_cache_utilization", "metric": "blackwell_tma_multicast_loads_total",
               "labels": {"gpu": "9"}}
        config = CounterMappingConfig(enabled=True, interval=5, timeout=2,
                                      endpoints=[{"url": server.url("/metrics")}], mappings=[good])
        assert values(CounterMappingSource(config).poll()) == {
            ("blackwell_tma_multicast_loads_total", ("0",)): 5.5e9}
        config = config.model_copy(update={"mappings": [CounterMap(**good), CounterMap(**bad)]})
        with pytest.raises(PartialPollError) as err:
            CounterMappingSource(config).poll()
        assert err.value.reason == "mapping"
        assert values(err.value.families) == {("blackwell_tma_multicast_loads_total", ("0",)): 5.5e9}
        server.routes["/metrics"] = Route(b"trtllm_tma_multicast_loads_total{gpu=0} 1\n")
        with pytest.raises(PartialPollError) as err:
            CounterMappingSource(config).poll()
        assert err.value.reason == "malformed"
    finally:
        server.close()


PROMOTIONS = CounterMap(**BRIEF_MAPPINGS[2])  # trtllm_te2_promotion_events_total{layer,tensor}, summed over tensor


def promotions(source, upstream, body: bytes, now: list[float]) -> dict:
    upstream.routes["/metrics"] = Route(body)
    now[0] += 60
    return values(source.poll())


def test_a_mapped_counter_never_goes_backwards_when_upstream_series_go_away_or_restart(upstream):
    now = [0.0]
    source = CounterMappingSource(CounterMappingConfig(enabled=True, endpoints=[{"url": upstream.url("/metrics")}],
                                                       mappings=[PROMOTIONS]), clock=lambda: now[0])
    layer_47 = ("blackwell_te_promotion_events_total", ("47",))
    assert promotions(source, upstream, RUNTIME_BODY, now)[layer_47] == 12 + 3
    # the activation series is no longer printed while the weight series counts on: no false reset
    running = promotions(source, upstream, b'trtllm_te2_promotion_events_total{layer="47",tensor="weight"} 14\n', now)
    assert running[layer_47] == 14 + 3
    # the runtime restarts: its counters start again at 0, with only what it has counted since
    restarted = promotions(source, upstream, b'trtllm_te2_promotion_events_total{layer="47",tensor="activation"} 2\n'
                                             b'trtllm_te2_promotion_events_total{layer="3",tensor="weight"} 1\n', now)
    assert restarted[layer_47] == 14 + 3 + 2, "what the new process counted is added to what the old one had"
    assert restarted[("blackwell_te_promotion_events_total", ("3",))] == 1, "an unchanged series is unchanged"


def test_without_the_sources_retired_totals_the_function_passes_values_through():
    mapping = CounterMap(**BRIEF_MAPPINGS[3])
    before, _ = map_counters(promtext.parse(RUNTIME_BODY), [mapping])
    after, _ = map_counters(promtext.parse(b'trtllm_tma_multicast_loads_total{gpu="0"} 7\n'), [mapping])
    assert values(before)[("blackwell_tma_multicast_loads_total", ("0",))] == 5.5e9
    assert values(after)[("blackwell_tma_multicast_loads_total", ("0",))] == 7
