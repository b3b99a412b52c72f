"""Every histogram bucket a generated rule counts is a bucket bound of every runtime's exposition.

A rule that counts ``..._bucket{le="X"}`` finds nothing for a runtime whose histogram has no X
bound, so the SLO it feeds goes silent there. This reads each runtime's fixture (tests/fixtures:
recorded or written from the upstream source) through the runtime's own upstream family names and
checks every bound the default rules use. A new runtime, a runtime that changes its buckets, or a
threshold moved off a shared bound fails here, naming the runtime and its bounds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exporter import promtext
from exporter.mixin.config import MixinConfig
from exporter.mixin.rules import rule_groups
from exporter.sources import runtime_maps

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TTFT = "blackwell_serving_ttft_seconds"
# runtime -> (fixture, the upstream family our source reads as blackwell_serving_ttft_seconds, unit divisor)
RUNTIME_TTFT = {
    "vllm": ("runtimes/vllm/metrics_0.11.0.txt", runtime_maps.VLLM.histograms[TTFT][0], 1),
    "vllm-0.8": ("runtimes/vllm/metrics_0.8.5.txt", runtime_maps.VLLM.histograms[TTFT][0], 1),
    "sglang": ("runtimes/sglang/metrics.txt", runtime_maps.SGLANG.histograms[TTFT][0], 1),
    "nim": ("runtimes/nim/metrics.txt", runtime_maps.NIM.histograms[TTFT][0], 1),
    "dynamo": ("runtimes/dynamo/frontend.txt", runtime_maps.DYNAMO_FRONTEND.histograms[TTFT][0], 1),
    "trtllm-serve": ("trtllm_serve/prometheus_prefixed.txt", "trtllm_time_to_first_token_seconds", 1),
    "trtllm-serve-unprefixed": ("trtllm_serve/prometheus_unprefixed.txt", "time_to_first_token_seconds", 1),
    "triton": ("triton/cpp_backend_metrics.txt", "nv_inference_first_response_histogram_ms", 1000),
}
# Runtimes whose default buckets lack a bound the default rules use, with what the user does about it.
# The test checks the lack is real, so an entry goes stale loudly too.
LACKS = {
    "sglang": "SGLang's TTFT buckets have 0.4 and 0.6, not 0.5: add 0.5 to --bucket-time-to-first-token, or set "
              "ttft_slo_seconds to 1 for a fleet without Triton",
    "dynamo": "the Dynamo frontend's log-spaced TTFT buckets have 0.47, not 0.5: set DYN_METRICS_TTFT_* buckets, "
              "or ttft_slo_seconds to 1 for a fleet without Triton",
}
BUCKET_MATCHER = re.compile(r'(\w+)_bucket\{[^}]*\ble=~?"([0-9.eE+-]+)')


def counted_bounds(config: MixinConfig) -> set[tuple[str, float]]:
    """(histogram family, bound) for every ``le`` matcher in every generated rule."""
    found = set()
    for group in rule_groups(config):
        for rule in group["rules"]:
            found |= {(family, float(bound)) for family, bound in BUCKET_MATCHER.findall(rule["expr"])}
    return found


def runtime_bounds(runtime: str) -> set[float]:
    fixture, family, divisor = RUNTIME_TTFT[runtime]
    histograms = promtext.parse((FIXTURES / fixture).read_bytes()).histograms(family)
    assert histograms, f"{fixture} has no {family} histogram"
    return {bound / divisor for histogram in histograms for bound, _ in histogram.buckets}


def test_the_default_rules_count_the_ttft_objective_bucket_and_no_other_family():
    bounds = counted_bounds(MixinConfig())
    assert (TTFT, MixinConfig().ttft_slo_seconds) in bounds
    assert {family for family, _ in bounds} == {TTFT}, \
        "a rule counts buckets of another histogram: add that family's fixtures to this test"


@pytest.mark.parametrize("runtime", sorted(RUNTIME_TTFT))
def test_every_counted_bucket_is_a_bound_of_the_runtime(runtime: str):
    have = runtime_bounds(runtime)
    missing = sorted(bound for family, bound in counted_bounds(MixinConfig()) if bound not in have)
    if runtime in LACKS:
        assert missing, f"{runtime} now has every bound the rules count: drop it from LACKS"
    else:
        assert not missing, f"{runtime}'s TTFT buckets {sorted(have)} lack {missing}, which the rules count"


def test_a_threshold_off_a_runtime_bound_is_caught():
    off_bound = MixinConfig(ttft_slo_seconds=1.0)  # vLLM, SGLang and Dynamo have 1 s; Triton (0.1, 0.5, 2, 5) does not
    assert (TTFT, 1.0) in counted_bounds(off_bound)
    assert 1.0 in runtime_bounds("vllm") and 1.0 in runtime_bounds("sglang") and 1.0 in runtime_bounds("dynamo")
    assert 1.0 not in runtime_bounds("triton")
