"""The simulation's engine, sampler-health and log-rule series (exporter/sources/simulated/precision_extras.py)."""

from __future__ import annotations

from exporter.snapshot import Snapshot
from exporter.sources.simulated.precision_extras import PrecisionExtras
from exporter.sources.simulated.profiles import PROFILES
from exporter.sources.simulated.scenarios import SCENARIOS


def values(extras: PrecisionExtras) -> dict[tuple[str, tuple[str, ...]], float]:
    families = extras.families()
    Snapshot.of("simulated", families)
    return {(f.metric.name, labels): v for f in families for labels, v in f.samples}


def test_a_blackwell_box_runs_an_nvfp4_engine_with_only_lm_head_left_out():
    got = values(PrecisionExtras(PROFILES["hgx-b200"]))
    assert got[("blackwell_engine_gemm_layers", ("simulated", "fp4"))] == 80 * 5
    assert got[("blackwell_engine_gemm_layers", ("simulated", "excluded"))] == 1
    assert got[("blackwell_engine_gemm_parameters", ("simulated", "excluded"))] == 8192 * 152064


def test_fp8_fallback_scenario_logs_fallback_warnings_and_healthy_does_not():
    for scenario, expect_warnings in (("healthy", False), ("fp8-fallback", True)):
        extras = PrecisionExtras(PROFILES["hgx-b200"])
        for _ in range(10):
            extras.advance(SCENARIOS[scenario], 10.0, 0.85)
        warned = values(extras)[("blackwell_fp8_fallback_warnings_total", ("fp8_fallback",))]
        assert (warned > 0) is expect_warnings


def test_cold_start_counts_its_events_once_and_sampler_coverage_is_the_default_duty_cycle():
    extras = PrecisionExtras(PROFILES["hgx-b200"])
    for _ in range(3):
        extras.advance(SCENARIOS["cold-start"], 100.0, 0.85)
    got = values(extras)
    assert got[("blackwell_engine_cold_start_events_total", ("engine_load",))] == 1
    assert got[("blackwell_dispatch_sampler_sampled_seconds_total", ("rank0",))] == 3.0  # 1% of 300 s
    assert got[("blackwell_dispatch_kernel_launches_total", ("0",))] > 0
