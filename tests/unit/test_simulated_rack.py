"""An NVL72 rack is 18 tray exporters of one NVLink domain; a rack scenario breaks one tray only."""

import pytest

from exporter.mixin.config import MixinConfig
from exporter.sources.simulated.profiles import NVL72_TRAYS, PROFILES
from exporter.sources.simulated.scenarios import SCENARIOS
from exporter.sources.simulated.source import SimulatedConfig, SimulatedSource
from tests.simulated_box import alerting_nvlink5_errors, poll, samples
from tests.support import FakeClock


def tray(index: int, scenario: str = "healthy", rack: str = "rack-0") -> dict[str, list]:
    clock = FakeClock()
    source = SimulatedSource(SimulatedConfig(enabled=True, profile="nvl72-tray", scenario=scenario, tray=index,
                                             rack=rack), clock=clock)
    source.poll()
    clock.now += 30
    return poll(source)


def test_a_tray_is_four_gb200_gpus_with_eighteen_nvlink5_links_each():
    metrics = tray(0)
    assert {s.labels["name"] for s in metrics["blackwell_gpu_info"]} == {"NVIDIA GB200"}
    assert len(metrics["blackwell_gpu_up"]) == 4
    assert len(metrics["blackwell_nvlink_link_up"]) == 4 * 18
    assert all(s.value == 1 for s in metrics["blackwell_c2c_enabled"])


def test_the_racks_72_gpus_share_one_cluster_uuid_and_clique_and_no_gpu_uuid():
    trays = [tray(i) for i in range(NVL72_TRAYS)]
    fabric = [s for metrics in trays for s in metrics["blackwell_gpu_fabric_info"]]
    assert len(fabric) == 72
    assert len({(s.labels["cluster_uuid"], s.labels["clique_id"]) for s in fabric}) == 1
    assert {s.labels["state"] for s in fabric} == {"completed"}
    uuids = {s.labels["uuid"] for metrics in trays for s in metrics["blackwell_gpu_info"]}
    assert len(uuids) == 72


def test_another_rack_is_another_nvlink_domain():
    one, other = tray(0, rack="rack-a"), tray(0, rack="rack-b")
    ids = [{(s.labels["cluster_uuid"], s.labels["clique_id"]) for s in m["blackwell_gpu_fabric_info"]}
           for m in (one, other)]
    assert ids[0].isdisjoint(ids[1])


def test_only_the_fault_tray_straggles():
    faulty = SCENARIOS["rack-straggler-gpu"].fault_tray
    utilization = {index: {s.labels["gpu"]: s.value for s in tray(index, "rack-straggler-gpu")[
        "blackwell_gpu_utilization_ratio"]} for index in (faulty, 0)}
    healthy = sum(utilization[0].values()) / 4
    assert utilization[faulty]["2"] == pytest.approx(healthy - 0.10, abs=0.03)
    assert all(u == pytest.approx(healthy, abs=0.03) for gpu, u in utilization[faulty].items() if gpu != "2")


def test_a_degrading_tray_moves_half_the_nvlink_traffic_and_counts_errors():
    faulty = SCENARIOS["rack-tray-links-degrading"].fault_tray
    bad, good = tray(faulty, "rack-tray-links-degrading"), tray(0, "rack-tray-links-degrading")

    def tx(metrics: dict) -> float:
        return sum(s.value for s in metrics["blackwell_nvlink_tx_bytes_total"])

    assert tx(bad) == pytest.approx(tx(good) / 2, rel=0.1)
    assert sum(s.value for s in samples(bad, "blackwell_nvlink5_errors_total", gpu="3", kind="effective")) > 0
    assert sum(s.value for s in alerting_nvlink5_errors(good)) == 0


def test_a_lost_tray_reports_its_gpus_down_and_leaves_the_fabric():
    faulty = SCENARIOS["rack-tray-lost"].fault_tray
    metrics = tray(faulty, "rack-tray-lost")
    assert [s.value for s in metrics["blackwell_gpu_up"]] == [0, 0, 0, 0]
    assert "blackwell_gpu_fabric_info" not in metrics
    assert len(tray(0, "rack-tray-lost")["blackwell_gpu_fabric_info"]) == 4


def test_rack_scenarios_need_a_tray_of_an_nvlink_domain():
    with pytest.raises(ValueError, match="rack scenario; it needs an NVLink-domain tray profile"):
        SimulatedConfig(enabled=True, profile="hgx-b200", scenario="rack-straggler-gpu")


def test_tray_index_stays_inside_the_rack():
    with pytest.raises(ValueError):
        SimulatedConfig(enabled=True, profile="nvl72-tray", tray=NVL72_TRAYS)
    assert PROFILES["nvl72-tray"].gpu_count * NVL72_TRAYS == 72


def _tray_power_over_the_load_cycle(scenario: str) -> list[float]:
    """One tray's summed GPU power every 10 s over a full period of the offered load's swing (about 610 s)."""
    clock = FakeClock()
    source = SimulatedSource(SimulatedConfig(enabled=True, profile="nvl72-tray", scenario=scenario), clock=clock)
    watts = []
    for _ in range(62):
        clock.now += 10
        watts.append(sum(s.value for s in poll(source)["blackwell_gpu_power_watts"]))
    return watts


def test_a_rack_near_its_power_budget_draws_99_percent_of_the_default_budget_and_a_healthy_rack_stays_under_the_ratio():
    config = MixinConfig()
    threshold = config.domain_gpu_power_budget_ratio * config.domain_gpu_power_budget_watts
    healthy = _tray_power_over_the_load_cycle("healthy")
    near = _tray_power_over_the_load_cycle("rack-power-near-budget")
    assert max(healthy) * NVL72_TRAYS < threshold - 300  # the healthy rack never comes within 300 W of warning
    assert min(near) * NVL72_TRAYS > threshold + 300
    assert sum(near) / len(near) * NVL72_TRAYS == pytest.approx(0.99 * config.domain_gpu_power_budget_watts, rel=0.002)
    assert SCENARIOS["rack-power-near-budget"].rack and SCENARIOS["rack-power-near-budget"].fault_tray is None
