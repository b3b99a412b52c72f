"""The simulation's hardware detail moves as the real counters do: NVLink5 FEC history shaped like a
real link's (a degrading link fills the high bins), packets following bytes, PCIe error counters,
fabric and platform info as each board reports them, and the NVML stall signal."""

from __future__ import annotations

import pytest

from exporter.sources.simulated.fec import BINS, CODEWORD_BITS, LinkFec
from exporter.sources.simulated.model import NVLINK_PACKET_BYTES
from exporter.sources.simulated.profiles import PROFILES
from tests.simulated_box import make, poll, samples

NO_CLUSTER = "00000000-0000-0000-0000-000000000000"
LINE_RATE = PROFILES["hgx-b200"].gpu.nvlink_link_bytes_per_second


def fec_bins(metrics: dict, gpu: str, link: str) -> list[float]:
    by_bin = {s.labels["bin"]: s.value for s in samples(metrics, "blackwell_nvlink5_fec_history_total",
                                                         gpu=gpu, link=link)}
    return [by_bin[str(n)] for n in range(BINS)]


def nvlink5_error(metrics: dict, gpu: str, link: str, kind: str) -> float:
    return samples(metrics, "blackwell_nvlink5_errors_total", gpu=gpu, link=link, kind=kind)[0].value


def test_a_healthy_link_corrects_single_symbols_and_sends_nearly_all_codewords_clean():
    fec = LinkFec()
    fec.advance(3600.0, LINE_RATE)
    assert fec.bins[0] == pytest.approx(LINE_RATE * 8 / CODEWORD_BITS * 3600.0, rel=1e-6)
    assert fec.bins[1] > 100 * fec.bins[3] > 0
    assert all(later <= earlier for earlier, later in zip(fec.bins[1:-1], fec.bins[2:], strict=True))
    assert fec.symbol_errors == pytest.approx(sum(n * count for n, count in enumerate(fec.bins)))
    assert fec.effective_errors == 0


def test_a_degrading_link_fills_the_high_bins_and_its_tail_is_the_effective_errors():
    healthy, degrading = LinkFec(), LinkFec()
    healthy.advance(600.0, LINE_RATE)
    degrading.advance(600.0, LINE_RATE, uncorrectable_per_second=4.0)
    assert degrading.effective_errors == pytest.approx(4.0 * 600)
    assert degrading.bins[BINS - 1] > 100 and healthy.bins[BINS - 1] < 1e-9
    assert degrading.bins[1] > degrading.bins[8] > degrading.bins[BINS - 1]  # still most in the low bins
    assert degrading.symbol_errors > 1000 * healthy.symbol_errors


def test_the_burst_scenario_raises_the_high_fec_bins_of_the_faulty_links_only():
    source, clock = make(scenario="nvlink-crc-burst")
    clock.now += 600
    metrics = poll(source)
    assert fec_bins(metrics, "3", "0")[12] >= 1
    assert nvlink5_error(metrics, "3", "0", "effective") > 0
    for gpu, link in (("3", "17"), ("0", "0")):
        assert fec_bins(metrics, gpu, link)[6:] == [0] * (BINS - 6)
        assert fec_bins(metrics, gpu, link)[1] > 0
        assert nvlink5_error(metrics, gpu, link, "effective") == 0


def test_fec_history_packets_and_pcie_errors_only_count_up():
    source, clock = make(scenario="nvlink-crc-burst")
    names = ("blackwell_nvlink5_fec_history_total", "blackwell_nvlink5_packets_total", "blackwell_gpu_pcie_errors_total")
    before = poll(source)
    for _ in range(5):
        clock.now += 900
        after = poll(source)
        for name in names:
            old = {tuple(sorted(s.labels.items())): s.value for s in before[name]}
            assert all(s.value >= old[tuple(sorted(s.labels.items()))] for s in after[name]), name
        before = after
    assert sum(s.value for s in samples(after, "blackwell_gpu_pcie_errors_total", kind="receiver")) > 0
    assert sum(s.value for s in samples(after, "blackwell_gpu_pcie_errors_total", kind="fatal")) == 0


def test_packets_follow_the_bytes_each_link_moves():
    source, clock = make()
    clock.now += 60
    metrics = poll(source)
    for direction in ("tx", "rx"):
        sent = samples(metrics, f"blackwell_nvlink_{direction}_bytes_total", gpu="0", link="4")[0].value
        packets = samples(metrics, "blackwell_nvlink5_packets_total", gpu="0", link="4", direction=direction)[0].value
        assert sent > 0
        assert packets == pytest.approx(sent / NVLINK_PACKET_BYTES, rel=1e-6)


@pytest.mark.parametrize(("profile", "in_rack_domain"), [("hgx-b200", False), ("h200x2", False),
                                                         ("gb200-tray", True), ("nvl72-tray", True)])
def test_every_board_is_registered_with_the_fabric_manager_and_only_nvl72_trays_share_a_domain(
        profile: str, in_rack_domain: bool) -> None:
    metrics = poll(make(profile)[0])
    fabric = metrics["blackwell_gpu_fabric_info"]
    assert len(fabric) == PROFILES[profile].gpu_count
    assert {s.labels["state"] for s in fabric} == {"completed"}
    assert {s.labels["status"] for s in fabric} == {"0"}
    clusters = {s.labels["cluster_uuid"] for s in fabric}
    assert len(clusters) == 1
    assert (clusters != {NO_CLUSTER}) is in_rack_domain
    assert all(s.value == 0 for s in metrics["blackwell_gpu_fabric_health_mask"])
    platform = metrics["blackwell_gpu_platform_info"]
    assert {s.labels["chassis_serial_number"] != "" for s in platform} == {in_rack_domain}


def test_an_answering_gpu_is_not_stalled_and_a_lost_one_has_no_stall_series():
    source, clock = make(scenario="gpu-lost")
    clock.now += 10
    metrics = poll(source)
    stalled = {s.labels["gpu"]: s.value for s in metrics["blackwell_gpu_nvml_stalled"]}
    assert "2" not in stalled
    assert set(stalled.values()) == {0} and len(stalled) == 7
    assert samples(metrics, "blackwell_gpu_pcie_errors_total", gpu="2") == []
