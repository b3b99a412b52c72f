"""Each runtime's default histogram buckets, and the simulation standing in for a runtime drawing into them.

The tables in ``exporter.catalog.runtime_buckets`` are checked against each runtime's own exposition
(tests/fixtures/runtimes, trtllm_serve: recorded, or written from the upstream source; the TTFT table
is checked in test_mixin_slo_bounds.py). The simulation standing in for a runtime must print that
runtime's buckets, with its simulated requests drawn into them, so the TTFT SLO finds a bucket at the
bound its runtime is judged at (SGLang 0.4 s, Dynamo 0.47 s) and BlackwellTTFTSLOBucketMissing stays
silent in a demo.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from exporter import promtext
from exporter.catalog.runtime_buckets import DEFAULT_BUCKETS, TTFT_DEFAULT_BUCKETS
from exporter.mixin.config import MixinConfig
from exporter.snapshot import Snapshot, SnapshotStore
from exporter.sources import runtime_maps
from exporter.sources.simulated.runtime_view import RUNTIMES
from exporter.sources.simulated.source import SimulatedConfig, SimulatedSource
from tests.support import FakeClock

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TTFT = "blackwell_serving_ttft_seconds"
# runtime -> (fixture, catalog histogram -> the upstream family the exporter reads it from)
FIXTURE = {
    "vllm": ("runtimes/vllm/metrics_0.11.0.txt", runtime_maps.VLLM.histograms),
    "sglang": ("runtimes/sglang/metrics.txt", runtime_maps.SGLANG.histograms),
    "nim": ("runtimes/nim/metrics.txt", runtime_maps.NIM.histograms),
    "dynamo": ("runtimes/dynamo/frontend.txt", runtime_maps.DYNAMO_FRONTEND.histograms),
    "trtllm-serve": ("trtllm_serve/prometheus_prefixed.txt", {
        "blackwell_serving_inter_token_latency_seconds": ("trtllm_time_per_output_token_seconds",),
        "blackwell_serving_e2e_latency_seconds": ("trtllm_e2e_request_latency_seconds",),
        "blackwell_serving_queue_time_seconds": ("trtllm_request_queue_time_seconds",)}),
}
TABLES = [(name, runtime) for name, by_runtime in DEFAULT_BUCKETS.items() if name != TTFT for runtime in by_runtime]


def fixture_bounds(runtime: str, name: str) -> list[float] | None:
    fixture, families = FIXTURE[runtime]
    metrics = promtext.parse((FIXTURES / fixture).read_bytes())
    for family in families.get(name, ()):
        histograms = metrics.histograms(family)
        if histograms:
            return sorted({bound for h in histograms for bound, _ in h.buckets} - {math.inf})
    return None


@pytest.mark.parametrize("name, runtime", TABLES)
def test_every_bucket_table_is_the_runtimes_own(name: str, runtime: str):
    assert fixture_bounds(runtime, name) == list(DEFAULT_BUCKETS[name][runtime]), \
        f"exporter/catalog/runtime_buckets.py has other {runtime} buckets for {name} than {FIXTURE[runtime][0]}"


@pytest.mark.parametrize("runtime", sorted(FIXTURE))
def test_every_latency_histogram_a_runtime_prints_with_default_buckets_has_a_table(runtime: str):
    printed = {name for name in DEFAULT_BUCKETS if fixture_bounds(runtime, name) is not None}
    assert printed <= {name for name, by_runtime in DEFAULT_BUCKETS.items() if runtime in by_runtime}


def simulated_histograms(runtime: str, scenario: str = "healthy") -> dict[str, promtext.Histogram]:
    """The serving histograms of a simulated hgx-b200 standing in for ``runtime``, from its rendered exposition."""
    clock = FakeClock()
    source = SimulatedSource(SimulatedConfig(enabled=True, profile="hgx-b200", scenario=scenario, runtime=runtime),
                             clock=clock)
    source.poll()
    clock.now += 120
    store = SnapshotStore()
    store.publish("simulated", Snapshot.of("simulated", source.poll()), lambda: Snapshot("exporter", {}))
    metrics = promtext.parse(store.current().text)
    return {name: hist for name in DEFAULT_BUCKETS for hist in metrics.histograms(name)}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_simulation_has_a_ttft_bucket_at_the_bound_its_runtime_is_judged_at(runtime: str):
    bound = MixinConfig().ttft_bounds()[runtime]
    ttft = simulated_histograms(runtime)[TTFT]
    assert any(math.isclose(b, bound) for b, _ in ttft.buckets), (runtime, bound, [b for b, _ in ttft.buckets])


@pytest.mark.parametrize("runtime", [r for r in RUNTIMES if r != "triton"])
def test_the_simulation_prints_each_runtimes_own_buckets(runtime: str):
    histograms = simulated_histograms(runtime)
    assert TTFT in histograms and histograms[TTFT].buckets[0][0] == TTFT_DEFAULT_BUCKETS[runtime][0]
    for name, hist in histograms.items():
        assert [b for b, _ in hist.buckets] == [*DEFAULT_BUCKETS[name][runtime], math.inf], (runtime, name)


@pytest.mark.parametrize("runtime", [r for r in RUNTIMES if r != "triton"])
def test_the_simulated_requests_are_drawn_into_the_runtimes_buckets(runtime: str):
    """The same requests as the simulated Triton's (same seed and times): the same count and sum, the same
    cumulative count at every bound both have, and slow TTFTs (the ttft-regression scenario, 25x) spread over the
    runtime's own buckets above the bound it is judged at."""
    own, triton = simulated_histograms(runtime, "ttft-regression"), simulated_histograms("triton", "ttft-regression")
    for name, hist in own.items():
        theirs = dict(triton[name].buckets)
        assert (hist.count, hist.sum) == (triton[name].count, pytest.approx(triton[name].sum))
        shared = {b: c for b, c in hist.buckets if b in theirs}
        assert shared == {b: theirs[b] for b in shared}, (runtime, name)
        counts = [c for _, c in hist.buckets]
        assert counts == sorted(counts), "cumulative"
    bound = MixinConfig().ttft_bounds()[runtime]
    at_bound = next(c for b, c in own[TTFT].buckets if math.isclose(b, bound))
    assert 0 < at_bound < own[TTFT].count, "some requests are good, some miss the objective"
