"""The nvml source, run for real against recorded answers of two H200 GPUs (and synthetic Blackwell ones).

The recording is tests/fixtures/nvml/h200x2/nvml_probe.json (measured data, see its README);
tests/fixtures/nvml/h200x2_overlay.json adds the few calls the recording did not make.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from exporter.snapshot import Family, Snapshot
from exporter.sources.base import PollError
from exporter.sources.dcgm_exporter_names import exporter_hostname
from exporter.sources.nvml import fields as nf
from exporter.sources.nvml.backend import GPU_IS_LOST, NOT_SUPPORTED, RESET_REQUIRED, NvmlError
from exporter.sources.nvml.source import NvmlConfig, NvmlSource
from tests.nvml_replay import ReplayBackend
from tests.support import FakeClock as Clock

ROOT = Path(__file__).resolve().parents[2]
RECORDING = ROOT / "tests" / "fixtures" / "nvml" / "h200x2" / "nvml_probe.json"
OVERLAY = ROOT / "tests" / "fixtures" / "nvml" / "h200x2_overlay.json"
GPU0 = "GPU-1b78982c-0e04-daa0-7189-44a219fa7d37"
GPU1 = "GPU-0b6b0347-d03c-3e57-476c-d9a8e64fd5a6"


@pytest.fixture(scope="module")
def recording() -> dict:
    import json

    return json.loads(RECORDING.read_text())


@pytest.fixture
def backend(recording: dict) -> ReplayBackend:
    import json

    return ReplayBackend(recording, json.loads(OVERLAY.read_text())["calls"])


def make_source(backend: ReplayBackend, clock: Clock | None = None, **config: object) -> NvmlSource:
    settings: dict[str, object] = {"xid_events": False, "gpu_deadline": 0.5, "timeout": 2.0, **config}
    clock = clock or Clock()
    backend.set_clock(clock)  # the replay's counters and GPM samples keep the source's time
    source = NvmlSource(NvmlConfig(**settings), backend=backend, clock=clock)
    source.probe()
    return source


def samples(families: list[Family]) -> dict[tuple[str, tuple[str, ...]], float]:
    Snapshot.of("nvml", families)  # every family is declared and the nvml source may fill it
    out = {}
    for family in families:
        for labels, value in family.samples:
            key = (family.metric.name, labels)
            assert key not in out, f"duplicate series {key}"
            out[key] = value
    return out


def test_h200_recording_yields_identity_gauges_and_links(backend: ReplayBackend, recording: dict) -> None:
    source = make_source(backend)
    s = samples(source.poll())
    assert s[("blackwell_gpu_up", ("0", GPU0))] == 1
    assert s[("blackwell_gpu_up", ("1", GPU1))] == 1
    assert s[("blackwell_gpu_info", ("0", GPU0, "NVIDIA H200", "00000000:00:06.0", "hopper", "9.0", "580.159.04",
                                     "96.00.A5.00.1A", "1"))] == 1
    assert s[("blackwell_gpu_power_watts", ("0",))] == pytest.approx(81.447)
    assert s[("blackwell_gpu_power_limit_watts", ("0",))] == 700
    # mJ in NVML; the counter advances by power x time, and no time passed on the source's clock
    assert s[("blackwell_gpu_energy_joules_total", ("0",))] == pytest.approx(5456.646, abs=1)
    assert s[("blackwell_gpu_memory_total_bytes", ("0",))] == 150754820096
    assert s[("blackwell_gpu_memory_temperature_celsius", ("1",))] == 40
    assert s[("blackwell_gpu_sm_clock_hertz", ("0",))] == 345e6
    assert s[("blackwell_gpu_pcie_link_generation", ("0",))] == 5
    assert s[("blackwell_gpu_pcie_errors_total", ("0", "lane"))] == 55
    assert s[("blackwell_gpu_hbm_peak_bandwidth_bytes_per_second", ("0",))] == pytest.approx(3201e6 * 6016 * 2 / 8)  # 4.81 TB/s
    assert s[("blackwell_c2c_enabled", ("0",))] == 0
    for gpu in ("0", "1"):
        for link in range(18):
            assert s[("blackwell_nvlink_link_up", (gpu, str(link)))] == 1
            assert s[("blackwell_nvlink_link_speed_bytes_per_second", (gpu, str(link)))] == 26562e6
    # NVML answers version 6 (nvmlNvlinkVersion_t NVLINK_VERSION_4_0): exported as NVLink generation 4.
    assert s[("blackwell_nvlink_link_info", ("0", "0", "4", "switch", "FFFFFFFF:FF:FF.0"))] == 1
    # Throughput fields 138-141 are per link, in KiB: the per-GPU series is the sum over the 18 links.
    scoped = recording["devices"][0]["fieldvalues_scoped_by_link"]
    raw_tx = sum(scoped[str(link)]["values"]["NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_TX"]["value"] for link in range(18))
    assert raw_tx > 18 * 247 - 1
    assert s[("blackwell_nvlink_throughput_bytes_total", ("0", "tx", "raw"))] == raw_tx * 1024


def test_link_speed_is_read_at_probe_and_again_when_the_link_state_changes(backend: ReplayBackend) -> None:
    source = make_source(backend)
    requests = {r for g in source._gpus for r in g.state.caps.field_requests}  # noqa: SLF001
    assert not [r for r in requests if r[0] == nf.LINK_SPEED]
    source.poll()
    backend.set_field(0, nf.LINK_STATE, 0, scope=4)  # link 4 goes down
    backend.set_field(0, nf.LINK_SPEED, 0, scope=4)
    s = samples(source.poll())
    assert s[("blackwell_nvlink_link_up", ("0", "4"))] == 0
    assert s[("blackwell_nvlink_link_speed_bytes_per_second", ("0", "4"))] == 0
    assert s[("blackwell_nvlink_link_speed_bytes_per_second", ("0", "5"))] == 26562e6
    backend.set_field(0, nf.LINK_STATE, 1, scope=4)  # and retrains at a lower rate
    backend.set_field(0, nf.LINK_SPEED, 13281, scope=4)
    s = samples(source.poll())
    assert s[("blackwell_nvlink_link_up", ("0", "4"))] == 1
    assert s[("blackwell_nvlink_link_speed_bytes_per_second", ("0", "4"))] == 13281e6


def test_both_nvlink_error_paths_are_exported_under_their_own_names(backend: ReplayBackend) -> None:
    s = samples(make_source(backend).poll())
    # GPU0 link 0: the legacy call says CRC_DATA=20, ECC_DATA=28; field 163 (nvidia-smi nvlink -e) says 0.
    assert s[("blackwell_nvlink_crc_data_errors_total", ("0", "0"))] == 20
    assert s[("blackwell_nvlink_ecc_data_errors_total", ("0", "0"))] == 28
    assert s[("blackwell_nvlink_dl_crc_errors_total", ("0", "0"))] == 0
    assert s[("blackwell_nvlink_crc_flit_errors_total", ("0", "0"))] == 0


def test_hopper_does_not_report_nvlink5_counters(backend: ReplayBackend) -> None:
    s = samples(make_source(backend).poll())
    assert not [k for k in s if k[0].startswith("blackwell_nvlink5_")]
    assert not [k for k in s if k[0] in ("blackwell_nvlink_tx_bytes_total", "blackwell_nvlink_rx_bytes_total")]


def test_all_link_fields_of_a_gpu_come_in_one_field_values_call(backend: ReplayBackend) -> None:
    source = make_source(backend)
    before = backend.calls["field_values"]
    source.poll()
    assert backend.calls["field_values"] - before == 2  # one per GPU


def test_unsupported_paths_are_not_asked_again_after_probe(backend: ReplayBackend) -> None:
    backend.fail(0, "fabric_info", NOT_SUPPORTED)
    backend.make_blackwell(0)
    source = make_source(backend, legacy_nvlink_interval=0)
    legacy_calls = backend.calls["nvlink_error_counter"]
    source.poll()
    source.poll()
    # GPU0 (Blackwell): legacy counters unsupported, never asked; GPU1: 18 links x 5 counters per poll.
    assert backend.calls["nvlink_error_counter"] - legacy_calls == 2 * 90
    caps = {g.uuid: g.state.caps for g in source._gpus}
    requested = {fid for fid, _ in caps[GPU1].field_requests}
    assert not requested & set(range(201, 251)), "H200 answered NotSupported to COUNT_*: they must not be asked"


def test_synthetic_blackwell_counters_and_decoded_ber(backend: ReplayBackend) -> None:
    backend.make_blackwell(0)
    backend.set_field(0, 221, 42, scope=3)  # SYMBOL_ERRORS on link 3
    backend.set_field(0, 220, (3 << 8) | 14, scope=3)  # EFFECTIVE_BER 3e-14
    s = samples(make_source(backend).poll())
    assert s[("blackwell_gpu_info", ("0", GPU0, "NVIDIA B200", "00000000:00:06.0", "blackwell", "10.0",
                                     "580.159.04", "96.00.A5.00.1A", "1"))] == 1
    assert s[("blackwell_nvlink5_errors_total", ("0", "3", "symbol"))] == 42
    assert s[("blackwell_nvlink5_bit_error_rate", ("0", "3", "effective"))] == pytest.approx(3e-14)
    assert s[("blackwell_nvlink5_bit_error_rate", ("0", "0", "symbol"))] == pytest.approx(2e-12)
    assert s[("blackwell_nvlink5_recovery_events_total", ("0", "5", "failed"))] == 0
    assert s[("blackwell_nvlink_tx_bytes_total", ("0", "17"))] == 64_000_000
    assert s[("blackwell_nvlink5_fec_history_total", ("0", "0", "15"))] == 0
    # Hopper paths on the Blackwell GPU answered NotSupported: absent, not zero.
    assert ("blackwell_nvlink_dl_crc_errors_total", ("0", "0")) not in s
    assert ("blackwell_nvlink_crc_data_errors_total", ("0", "0")) not in s
    # GPU1 stays an H200.
    assert s[("blackwell_nvlink_crc_data_errors_total", ("1", "0"))] == 11


@pytest.mark.parametrize("raw, expected", [(0, 0.0), ((1 << 8) | 15, 1e-15), ((9 << 8) | 3, 9e-3),
                                           ((15 << 8) | 255, 15e-255)])
def test_ber_decoding(raw: int, expected: float) -> None:
    assert nf.decode_ber(raw) == pytest.approx(expected, rel=1e-9)


def test_gpm_needs_two_samples_then_reports_tensor_activity_under_load(backend: ReplayBackend) -> None:
    clock = Clock()
    source = make_source(backend, clock)
    first = samples(source.poll())
    assert not [k for k in first if k[0] == "blackwell_gpu_tensor_active_ratio"]
    backend.phase = "load"
    clock.now += 0.05  # too close to the first sample: no metrics, no new sample
    assert not [k for k in samples(source.poll()) if k[0] == "blackwell_gpu_tensor_active_ratio"]
    assert backend.calls["gpm_sample"] == 2
    clock.now += 10
    s = samples(source.poll())
    assert s[("blackwell_gpu_tensor_active_ratio", ("0", "hmma"))] == pytest.approx(0.541693, abs=1e-4)
    assert s[("blackwell_gpu_tensor_active_ratio", ("0", "any"))] == pytest.approx(0.541693, abs=1e-4)
    assert s[("blackwell_nvlink_link_tx_bytes_per_second", ("0", "0"))] == pytest.approx(6278.8698 * 2**20)
    assert s[("blackwell_nvlink_link_rx_bytes_per_second", ("1", "0"))] == pytest.approx(6513.3291 * 2**20)
    assert 0 < s[("blackwell_gpu_dram_bandwidth_utilization_ratio", ("0",))] <= 1
    assert s[("blackwell_gpu_utilization_ratio", ("0",))] == 0.93
    assert not [k for k in s if k[0].startswith("blackwell_c2c_") and k[0] != "blackwell_c2c_enabled"]


def test_gpm_off_in_config_makes_no_gpm_calls(backend: ReplayBackend) -> None:
    clock = Clock()
    source = make_source(backend, clock, gpm=False)
    for _ in range(3):
        clock.now += 10
        source.poll()
    assert backend.calls["gpm_sample"] == 0 and backend.calls["gpm_metrics"] == 0


def test_legacy_counters_are_read_on_their_own_interval(backend: ReplayBackend) -> None:
    clock = Clock()
    source = make_source(backend, clock, legacy_nvlink_interval=60)
    source.poll()
    calls = backend.calls["nvlink_error_counter"]
    backend.set_legacy(0, 0, 3, 25)
    clock.now += 10
    s = samples(source.poll())
    assert backend.calls["nvlink_error_counter"] == calls
    assert s[("blackwell_nvlink_crc_data_errors_total", ("0", "0"))] == 20  # the cached value, still exported
    clock.now += 60
    s = samples(source.poll())
    assert s[("blackwell_nvlink_crc_data_errors_total", ("0", "0"))] == 25


def test_a_counter_that_resets_is_exported_as_read(backend: ReplayBackend) -> None:
    source = make_source(backend)
    backend.set_plain(0, "total_energy_mj", 9_000_000)
    assert samples(source.poll())[("blackwell_gpu_energy_joules_total", ("0",))] == 9000
    backend.set_plain(0, "total_energy_mj", 1_000)  # driver reload: the counter restarts, Prometheus sees a reset
    s = samples(source.poll())
    assert s[("blackwell_gpu_energy_joules_total", ("0",))] == 1
    assert s[("blackwell_gpu_up", ("0", GPU0))] == 1


def test_not_supported_is_never_an_error(backend: ReplayBackend) -> None:
    for method in ("utilization", "temperature_c", "memory_info"):
        backend.fail(0, method, NOT_SUPPORTED)
    source = make_source(backend)
    s = samples(source.poll())
    assert s[("blackwell_gpu_up", ("0", GPU0))] == 1
    assert ("blackwell_gpu_utilization_ratio", ("0",)) not in s
    assert ("blackwell_gpu_temperature_celsius", ("0",)) not in s
    assert ("blackwell_gpu_temperature_celsius", ("1",)) in s
    assert ("blackwell_gpu_power_watts", ("0",)) in s
    calls = backend.calls["utilization"]
    source.poll()
    assert backend.calls["utilization"] == calls + 1  # GPU1 only


@pytest.mark.parametrize("code", [GPU_IS_LOST, RESET_REQUIRED, 999])
def test_lost_gpu_drops_only_its_series_and_comes_back_by_uuid(backend: ReplayBackend, code: int) -> None:
    clock = Clock()
    source = make_source(backend, clock, interval=10, timeout=5)
    source.poll()
    backend.lose_gpu(1)
    backend.fail(1, None, code)
    s = samples(source.poll())
    assert s[("blackwell_gpu_up", ("1", GPU1))] == 0
    assert s[("blackwell_gpu_up", ("0", GPU0))] == 1
    assert not [k for k in s if k[1][0] == "1" and k[0] != "blackwell_gpu_up"]
    assert s[("blackwell_gpu_power_watts", ("0",))] > 0
    inits = backend.init_count
    clock.now += 10  # first re-init after one interval: GPU1 still gone
    s = samples(source.poll())
    assert backend.init_count == inits + 1
    assert s[("blackwell_gpu_up", ("1", GPU1))] == 0
    clock.now += 10  # backoff: the next attempt waits 2 intervals
    source.poll()
    assert backend.init_count == inits + 1
    backend.restore_gpu(1)
    clock.now += 10
    s = samples(source.poll())
    assert backend.init_count == inits + 2
    assert s[("blackwell_gpu_up", ("1", GPU1))] == 1
    assert s[("blackwell_gpu_power_watts", ("1",))] > 0


def test_hung_call_marks_the_gpu_stalled_without_stalling_the_poll(backend: ReplayBackend) -> None:
    source = make_source(backend, gpu_deadline=0.2)
    backend.hang(1, "power_usage_mw")  # the probe read it already; from now on it hangs
    started = time.monotonic()
    s = samples(source.poll())
    assert time.monotonic() - started < 1.0
    assert s[("blackwell_gpu_nvml_stalled", ("1", GPU1))] == 1
    assert s[("blackwell_gpu_up", ("1", GPU1))] == 0
    assert s[("blackwell_gpu_up", ("0", GPU0))] == 1
    assert ("blackwell_gpu_power_watts", ("0",)) in s
    assert ("blackwell_gpu_power_watts", ("1",)) not in s
    calls = backend.calls["power_usage_mw"]
    samples(source.poll())  # the stuck GPU is not asked again while its call hangs
    assert backend.calls["power_usage_mw"] == calls + 1
    backend.unhang(1, "power_usage_mw")
    deadline = time.monotonic() + 2
    while source._gpus[1].stalled and time.monotonic() < deadline:  # noqa: SLF001
        time.sleep(0.01)
    s = samples(source.poll())
    assert s[("blackwell_gpu_nvml_stalled", ("1", GPU1))] == 0
    assert ("blackwell_gpu_power_watts", ("1",)) in s


def test_every_gpu_hung_fails_the_poll_as_stalled(backend: ReplayBackend) -> None:
    source = make_source(backend, gpu_deadline=0.1)
    events = [backend.hang(i, "memory_info") for i in (0, 1)]
    with pytest.raises(PollError) as err:
        source.poll()
    assert err.value.reason == "stalled"
    del events
    for i in (0, 1):
        backend.unhang(i, "memory_info")


def test_xid_events_are_counted_per_code_and_survive_reinit(backend: ReplayBackend) -> None:
    clock = Clock()
    source = make_source(backend, clock, xid_events=True)
    backend.emit_xid(0, 79)
    backend.emit_xid(0, 79)
    backend.emit_xid(1, 48)
    deadline = time.monotonic() + 2
    s: dict = {}
    while time.monotonic() < deadline:
        s = samples(source.poll())
        if s.get(("blackwell_gpu_xid_errors_total", ("1", "48"))) == 1 and s.get(
                ("blackwell_gpu_xid_errors_total", ("0", "79"))) == 2:
            break
        time.sleep(0.02)
    assert s[("blackwell_gpu_xid_errors_total", ("0", "79"))] == 2
    assert s[("blackwell_gpu_xid_errors_total", ("1", "48"))] == 1
    backend.lose_gpu(1)
    source.poll()
    backend.restore_gpu(1)
    clock.now += 10
    s = samples(source.poll())
    assert s[("blackwell_gpu_xid_errors_total", ("0", "79"))] == 2  # counts carried over the re-init
    source.close()


def test_nvml_init_failure_is_a_clear_poll_error(backend: ReplayBackend) -> None:
    def fail() -> None:
        raise NvmlError(9, "nvmlInit")  # DriverNotLoaded

    backend.init = fail  # type: ignore[method-assign]
    source = NvmlSource(NvmlConfig(xid_events=False), backend=backend)
    with pytest.raises(PollError, match="nvmlInit failed.*driver"):
        source.probe()


def test_dcgm_exporter_compatible_names(backend: ReplayBackend) -> None:
    source = make_source(backend, dcgm_compat_names=True)
    s = samples(source.poll())
    labels = ("0", GPU0, "00000000:00:06.0", "nvidia0", "NVIDIA H200", exporter_hostname(), "580.159.04")
    assert s[("DCGM_FI_DEV_POWER_USAGE", labels)] == pytest.approx(81.447)
    assert s[("DCGM_FI_DEV_GPU_UTIL", labels)] == 0
    assert s[("DCGM_FI_DEV_SM_CLOCK", labels)] == 345
    assert s[("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", labels)] == pytest.approx(5456646, abs=1000)
    # DCGM fields 252/251: used and free without the driver's reserve, as nvidia-smi -q printed them
    assert s[("DCGM_FI_DEV_FB_USED", labels)] == 0
    assert s[("DCGM_FI_DEV_FB_FREE", labels)] == pytest.approx(150109880320 / 2**20)
    assert s[("DCGM_FI_DEV_XID_ERRORS", labels)] == 0
    plain = samples(make_source(backend).poll())
    assert not [k for k in plain if k[0].startswith("DCGM_FI_")]


def test_config_rejects_a_deadline_past_the_timeout() -> None:
    with pytest.raises(ValueError, match="gpu_deadline"):
        NvmlConfig(gpu_deadline=5, timeout=5)
    assert NvmlConfig().enabled is True


def test_close_stops_the_xid_thread_and_shuts_nvml_down(backend: ReplayBackend) -> None:
    source = make_source(backend, xid_events=True)
    source.poll()
    source.close()
    assert not [t for t in threading.enumerate() if t.name == "nvml-xid" and t.is_alive()]
    with pytest.raises(NvmlError):
        backend.device_count()  # NVML is shut down: Uninitialized


def test_a_binding_error_in_one_probe_path_costs_that_path_only(backend: ReplayBackend) -> None:
    def broken(handle):  # type: ignore[no-untyped-def]
        raise TypeError("string argument without an encoding")  # seen from a pynvml struct wrapper

    backend.platform_info = broken  # type: ignore[method-assign]
    source = make_source(backend)
    s = samples(source.poll())
    assert s[("blackwell_gpu_up", ("0", GPU0))] == 1
    assert not [k for k in s if k[0] == "blackwell_gpu_platform_info"]
    assert "platform_info" in source._gpus[0].state.caps.unsupported  # noqa: SLF001


def test_exposition_passes_promtool_lint(backend: ReplayBackend) -> None:
    import shutil
    import subprocess

    from exporter.snapshot import SnapshotStore

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing (Debian package prometheus)")
    backend.make_blackwell(1)

    def lint(compat: bool) -> list[str]:
        clock = Clock()
        source = make_source(backend, clock, dcgm_compat_names=compat)
        source.poll()
        clock.now += 10  # a second GPM sample, so GPM series are in the exposition too
        store = SnapshotStore()
        store.publish("nvml", Snapshot.of("nvml", source.poll()), lambda: Snapshot("exporter", {}))
        result = subprocess.run([promtool, "check", "metrics"], input=store.current().text, capture_output=True,
                                timeout=60)
        return [line for line in (result.stdout + result.stderr).decode().splitlines() if line.strip()]

    assert lint(compat=False) == []
    # dcgm-exporter's own names break Prometheus' naming advice (camelCase labels, "COUNTER" in a
    # name); they are kept as they are because dashboards query them by exactly these names.
    assert all(line.startswith("DCGM_FI_") for line in lint(compat=True))


def test_recorded_latencies_make_the_batched_poll_under_a_third_of_a_naive_one(backend: ReplayBackend) -> None:
    clock = Clock()
    source = make_source(backend, clock, gpm=False, legacy_nvlink_interval=3600)
    source.poll()
    clock.now += 10
    start = backend.elapsed_us
    source.poll()
    batched = backend.elapsed_us - start
    start = backend.elapsed_us
    for gpu in source._gpus:  # noqa: SLF001 - the same readings, one call per counter per link
        caps, h = gpu.state.caps, gpu.state.caps.handle
        for request in caps.field_requests:
            backend.field_values(h, [request])
        for read in (backend.memory_info, backend.utilization, backend.power_usage_mw, backend.power_limit_mw,
                     backend.total_energy_mj, backend.temperature_c, backend.performance_state,
                     backend.pcie_link_generation, backend.pcie_link_width, backend.clocks_event_reasons,
                     backend.fabric_info):
            read(h)
        backend.clock_mhz(h, 1)
        backend.clock_mhz(h, 2)
    naive = backend.elapsed_us - start
    assert batched <= naive / 3, (batched, naive)
    # Reading the legacy counters costs what the recording says: ~1 ms per link and counter.
    start = backend.elapsed_us
    clock.now += 3600
    source.poll()
    assert backend.elapsed_us - start - batched > 2 * 90 * 900


def test_scheduler_keeps_the_source_up_with_one_gpu_hung_and_marks_it_stalled_when_all_are(
        backend: ReplayBackend) -> None:
    from exporter.scheduler import SourceRunner
    from exporter.snapshot import SnapshotStore

    store = SnapshotStore()
    source = NvmlSource(NvmlConfig(xid_events=False, gpu_deadline=0.2, timeout=1.0, interval=2.0), backend=backend)
    runner = SourceRunner(source, store, lambda: Snapshot("exporter", {}))
    runner.run_once()
    assert runner.up
    backend.hang(1, "utilization")
    runner.run_once()
    assert runner.up
    body = store.current().text.decode()
    assert f'blackwell_gpu_nvml_stalled{{gpu="1",uuid="{GPU1}"}} 1' in body
    assert 'blackwell_gpu_power_watts{gpu="0"}' in body
    backend.hang(0, "utilization")
    runner._next_attempt = 0.0  # noqa: SLF001 - no need to wait out the interval
    runner.run_once()
    assert not runner.up and runner.errors["stalled"] == 1
    backend.unhang(0, "utilization")
    backend.unhang(1, "utilization")
