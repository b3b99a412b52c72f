"""Every runtime's TTFT SLO is judged at a bucket bound its exposition really has.

The exporter keeps each runtime's own TTFT buckets, so the SLO rules count good requests in the
bucket the runtime has at or under the objective (``exporter.mixin.ttft_buckets``, from the tables in
``exporter.catalog.runtime_buckets``), selected per endpoint through ``blackwell_serving_runtime_info``.
This reads each runtime's fixture (tests/fixtures: recorded, or written from the upstream source)
through the runtime's own upstream family, checks that the default TTFT bucket table is that runtime's, and that the bound the
generated rules count for it is one of its buckets and not over the objective. A runtime that
changes its buckets, or a table that drifts from the fixtures, fails here, naming both.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from exporter import promtext
from exporter.catalog.runtime_buckets import TTFT_DEFAULT_BUCKETS, dynamo_log_buckets
from exporter.mixin.config import MixinConfig
from exporter.mixin.promql import le_matcher
from exporter.mixin.rules import rule_groups
from exporter.mixin.slo import TTFT_SLO_BUCKET
from exporter.sources import runtime_maps

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TTFT = "blackwell_serving_ttft_seconds"
# fixture name -> (runtime label, fixture, the upstream family read as blackwell_serving_ttft_seconds, unit divisor)
RUNTIME_TTFT = {
    "vllm": ("vllm", "runtimes/vllm/metrics_0.11.0.txt", runtime_maps.VLLM.histograms[TTFT][0], 1),
    "vllm-0.8": ("vllm", "runtimes/vllm/metrics_0.8.5.txt", runtime_maps.VLLM.histograms[TTFT][0], 1),
    "sglang": ("sglang", "runtimes/sglang/metrics.txt", runtime_maps.SGLANG.histograms[TTFT][0], 1),
    "nim": ("nim", "runtimes/nim/metrics.txt", runtime_maps.NIM.histograms[TTFT][0], 1),
    "dynamo": ("dynamo", "runtimes/dynamo/frontend.txt", runtime_maps.DYNAMO_FRONTEND.histograms[TTFT][0], 1),
    "dynamo-nim-prefix": ("dynamo", "runtimes/dynamo/frontend_nim_prefix.txt",
                          runtime_maps.DYNAMO_FRONTEND.histograms[TTFT][1], 1),
    "trtllm-serve": ("trtllm-serve", "trtllm_serve/prometheus_prefixed.txt", "trtllm_time_to_first_token_seconds", 1),
    "trtllm-serve-unprefixed": ("trtllm-serve", "trtllm_serve/prometheus_unprefixed.txt",
                                "time_to_first_token_seconds", 1),
    "triton": ("triton", "triton/cpp_backend_metrics.txt", "nv_inference_first_response_histogram_ms", 1000),
}


def fixture_bounds(name: str) -> list[float]:
    _, fixture, family, divisor = RUNTIME_TTFT[name]
    histograms = promtext.parse((FIXTURES / fixture).read_bytes()).histograms(family)
    assert histograms, f"{fixture} has no {family} histogram"
    return sorted({bound / divisor for histogram in histograms for bound, _ in histogram.buckets} - {float("inf")})


def matches(matcher: str, text: str) -> bool:
    """Whether an ``le`` matcher the rules write selects a bucket whose bound is written ``text``."""
    value = matcher.split('"')[1]
    if matcher.startswith('le=~'):
        return re.fullmatch(value.replace("\\\\", "\\"), text) is not None
    return value == text


def test_every_runtime_the_exporter_reports_has_a_default_bucket_table():
    assert {runtime for runtime, *_ in RUNTIME_TTFT.values()} == set(TTFT_DEFAULT_BUCKETS)


@pytest.mark.parametrize("name", sorted(RUNTIME_TTFT))
def test_the_default_table_is_the_runtimes_own_buckets(name: str):
    runtime = RUNTIME_TTFT[name][0]
    assert fixture_bounds(name) == list(TTFT_DEFAULT_BUCKETS[runtime]), \
        f"exporter/catalog/runtime_buckets.py has other {runtime} TTFT buckets than {RUNTIME_TTFT[name][1]}"


@pytest.mark.parametrize("name", sorted(RUNTIME_TTFT))
def test_each_runtime_is_judged_at_its_largest_bound_at_or_under_the_objective(name: str):
    config = MixinConfig()
    runtime, have = RUNTIME_TTFT[name][0], fixture_bounds(name)
    bound = config.ttft_bounds()[runtime]
    assert bound in have and bound <= config.ttft_slo_seconds
    assert not [b for b in have if bound < b <= config.ttft_slo_seconds], "a closer bound was passed over"


def test_the_defaults_at_half_a_second():
    assert MixinConfig().ttft_bounds() == {"vllm": 0.5, "trtllm-serve": 0.5, "nim": 0.5, "triton": 0.5,
                                           "sglang": 0.4, "dynamo": 0.47}


def test_the_rules_count_each_runtimes_bound_for_that_runtime_only():
    expr = next(rule["expr"] for group in rule_groups(MixinConfig()) for rule in group["rules"]
                if rule.get("record") == TTFT_SLO_BUCKET)
    branches = {runtime: matcher for matcher, runtime in
                re.findall(r'_bucket\{[^}]*?(le=~?"[^"]*")\} and on \(job, instance, endpoint\) '
                           r'blackwell_serving_runtime_info\{[^}]*runtime="([^"]+)"\}', expr)}
    assert set(branches) == {"sglang", "dynamo"}
    assert matches(branches["sglang"], "0.4") and not matches(branches["sglang"], "0.5")
    assert matches(branches["dynamo"], "0.47")
    assert 'unless on (job, instance, endpoint) blackwell_serving_runtime_info{job="blackwell-exporter", ' \
           'runtime=~"dynamo|sglang"}' in expr, "the other runtimes are judged at the objective"
    ratios = [rule["expr"] for group in rule_groups(MixinConfig()) for rule in group["rules"]
              if "slo_error_ratio" in rule.get("record", "")]
    assert ratios and all(expr.count(TTFT_SLO_BUCKET) == 2 for expr in ratios), "numerator and denominator"


@pytest.mark.parametrize(("bound", "spellings", "others"), [
    (0.5, ["0.5", "0.5000000000000001", "0.49999999999999994"], ["0.05", "0.50001", "5"]),
    (1.0, ["1", "1.0", "1.0000000000000002"], ["10", "0.1", "1.1"]),
    (0.47, ["0.47", "0.47000000000000003"], ["0.4", "0.470001", "47"]),
])
def test_le_matching_forgives_float_formatting_only(bound: float, spellings: list[str], others: list[str]):
    matcher = le_matcher(bound)
    assert all(matches(matcher, text) for text in spellings)
    assert not any(matches(matcher, text) for text in others)


def test_a_user_bound_for_custom_buckets_overrides_the_default():
    config = MixinConfig(ttft_slo_bounds={"sglang": 0.5, "dynamo": 0.33})
    assert config.ttft_bounds()["sglang"] == 0.5 and config.ttft_bounds()["dynamo"] == 0.33
    expr = "\n".join(rule["expr"] for group in rule_groups(config) for rule in group["rules"])
    assert 'runtime="dynamo"' in expr and 'runtime="sglang"' not in expr, "sglang is now judged at the objective"


@pytest.mark.parametrize(("bounds", "message"), [
    ({"sglang": 0.6}, "not over ttft_slo_seconds"),
    ({"sglang": 0.0}, "must be over 0"),
    ({"sglan": 0.4}, "not a runtime the exporter reports"),
])
def test_a_bound_that_would_count_slow_requests_as_good_is_refused(bounds: dict, message: str):
    with pytest.raises(ValidationError, match=message):
        MixinConfig(ttft_slo_bounds=bounds)


def test_another_objective_moves_every_default_bound():
    assert MixinConfig(ttft_slo_seconds=1.0).ttft_bounds() == {
        "vllm": 1.0, "trtllm-serve": 1.0, "nim": 1.0, "sglang": 1.0, "dynamo": 1.0, "triton": 0.5}
    tight = MixinConfig(ttft_slo_seconds=0.05).ttft_bounds()
    assert "triton" not in tight and "sglang" not in tight, "no bound at or under 0.05 s: judged at the objective"


def test_dynamo_buckets_follow_its_generator():
    assert dynamo_log_buckets(0.001, 480.0, 18)[6:10] == (0.1, 0.22, 0.47, 1.0)
    assert dynamo_log_buckets(1.0, 512.0, 10) == (0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 130.0, 260.0, 510.0)
