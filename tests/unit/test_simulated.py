"""The simulation models real boxes: the brief's operating points, moving values, and failure modes."""

import pytest

from exporter.sources.simulated.profiles import PROFILES
from exporter.sources.simulated.scenarios import SCENARIOS
from exporter.sources.simulated.source import scenario_fits
from tests.simulated_box import alerting_nvlink5_errors, make, poll, samples


def test_hgx_b200_has_8_gpus_with_18_active_links_each():
    metrics = poll(make()[0])
    assert len(metrics["blackwell_gpu_up"]) == 8
    links = metrics["blackwell_nvlink_link_up"]
    assert len(links) == 8 * 18 and all(s.value == 1 for s in links)
    assert {s.labels["remote_device_type"] for s in metrics["blackwell_nvlink_link_info"]} == {"switch"}


def test_healthy_b200_sits_at_the_briefs_operating_point():
    metrics = poll(make()[0])
    utils = [s.value for s in metrics["blackwell_gpu_utilization_ratio"]]
    watts = [s.value for s in metrics["blackwell_gpu_power_watts"]]
    assert all(0.70 <= u <= 0.85 for u in utils), utils
    assert all(900 <= w <= 1000 for w in watts), watts


def test_counters_only_go_up_and_values_move():
    source, clock = make()
    first = poll(source)
    clock.now += 10
    second = poll(source)
    for name in ("blackwell_gpu_energy_joules_total", "blackwell_serving_generation_tokens_total",
                 "blackwell_serving_request_success_total", "blackwell_gemm_kernel_launches_total"):
        before = sum(s.value for s in first[name])
        after = sum(s.value for s in second[name])
        assert after > before, name
    tokens_per_s = (second["blackwell_serving_generation_tokens_total"][0].value
                    - first["blackwell_serving_generation_tokens_total"][0].value) / 10
    assert 20_000 < tokens_per_s < 32_000


def test_h200_uses_the_hopper_nvlink_paths_and_no_nvlink5_counters():
    metrics = poll(make("h200x2")[0])
    assert "blackwell_nvlink5_errors_total" not in metrics
    assert len(metrics["blackwell_nvlink_dl_crc_errors_total"]) == 2 * 18
    assert {s.labels["remote_device_type"] for s in metrics["blackwell_nvlink_link_info"]} == {"switch"}


def test_gb200_tray_has_c2c_and_the_others_do_not():
    assert all(s.value == 1 for s in poll(make("gb200-tray")[0])["blackwell_c2c_enabled"])
    assert all(s.value == 0 for s in poll(make("hgx-b200")[0])["blackwell_c2c_enabled"])


def test_nvlink_crc_burst_counts_errors_on_one_gpu_only():
    source, clock = make()
    source.set_scenario("nvlink-crc-burst")
    clock.now += 30
    metrics = poll(source)
    erring = {s.labels["gpu"] for s in alerting_nvlink5_errors(metrics) if s.value > 0}
    assert erring == {"3"}


def test_straggler_gpu_runs_at_60_percent_while_peers_sit_near_80():
    source, clock = make(scenario="straggler-gpu")
    metrics = poll(source)
    utils = {s.labels["gpu"]: s.value for s in metrics["blackwell_gpu_utilization_ratio"]}
    assert abs(utils.pop("5") - 0.60) < 0.05
    assert all(abs(u - 0.80) < 0.06 for u in utils.values())


def test_gpu_lost_drops_only_that_gpus_series():
    source, clock = make()
    source.set_scenario("gpu-lost")
    clock.now += 10
    metrics = poll(source)
    assert samples(metrics, "blackwell_gpu_up", gpu="2")[0].value == 0
    assert not samples(metrics, "blackwell_gpu_power_watts", gpu="2")
    assert not samples(metrics, "blackwell_nvlink_link_up", gpu="2")
    assert len(metrics["blackwell_gpu_power_watts"]) == 7


def test_switching_scenarios_keeps_counters_monotonic():
    source, clock = make()
    before = poll(source)
    for name in SCENARIOS:
        if not scenario_fits(SCENARIOS[name], "hgx-b200"):
            continue
        source.set_scenario(name)
        clock.now += 5
        after = poll(source)
        for metric in ("blackwell_serving_request_success_total", "blackwell_serving_generation_tokens_total"):
            assert after[metric][0].value >= before[metric][0].value, (name, metric)
        before = after


def test_fp8_fallback_moves_the_gemm_mix():
    source, clock = make(scenario="fp8-fallback")
    clock.now += 60
    metrics = poll(source)
    launches = {s.labels["precision"]: s.value for s in samples(metrics, "blackwell_gemm_kernel_launches_total", gpu="0")}
    total = sum(launches.values())
    assert abs(launches["fp4"] / total - 0.70) < 0.02
    assert abs(launches["fp8"] / total - 0.25) < 0.02


def test_unknown_and_unfit_scenarios_are_refused_with_the_choices():
    source, _ = make()
    with pytest.raises(ValueError, match="choose one of healthy"):
        source.set_scenario("meltdown")
    with pytest.raises(ValueError, match="needs a profile with Grace C2C"):
        source.set_scenario("grace-kv-spill")


def test_every_scenario_documents_what_it_should_trigger():
    for scenario in SCENARIOS.values():
        assert scenario.description.endswith(".")
        assert scenario.name == "healthy" or scenario.alerts


def test_same_seed_same_numbers():
    a, b = make(), make()
    assert poll(a[0]) == poll(b[0])


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_profile_renders_under_every_scenario_it_supports(profile):
    for name, scenario in SCENARIOS.items():
        if not scenario_fits(scenario, profile):
            continue
        source, clock = make(profile, name)
        clock.now += 5
        assert poll(source)["blackwell_serving_up"]
