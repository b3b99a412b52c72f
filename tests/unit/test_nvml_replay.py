"""The NVML replay (tests/nvml_replay.py) behaves as NVML's documentation says NVML does.

Every other nvml test trusts it, so the ways it can differ from the library are pinned here.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from exporter.sources.nvml.backend import GPU_IS_LOST, INVALID_ARGUMENT, NOT_SUPPORTED, UNINITIALIZED, NvmlError
from tests.nvml_replay import NVL72_CLUSTER_UUID, ReplayBackend, error_codes, recorded_error
from tests.support import FakeClock as Clock

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nvml"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def nvml(clock: Clock) -> ReplayBackend:
    recording = json.loads((FIXTURES / "h200x2" / "nvml_probe.json").read_text())
    overlay = json.loads((FIXTURES / "h200x2_overlay.json").read_text())["calls"]
    backend = ReplayBackend(recording, overlay, clock=clock)
    backend.init()
    return backend


def code_of(call) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(NvmlError) as failed:
        call()
    return failed.value.code


def test_init_and_shutdown_are_reference_counted(nvml: ReplayBackend) -> None:
    nvml.init()  # a second user (preflight) inits while the source holds NVML
    nvml.shutdown()
    assert nvml.device_count() == 2, "one shutdown of two inits leaves NVML up"
    nvml.shutdown()
    assert code_of(nvml.device_count) == UNINITIALIZED


def test_a_lost_gpu_fails_its_lookups_too(nvml: ReplayBackend) -> None:
    nvml.lose_gpu(1)
    assert nvml.device_count() == 2, "NVML still counts a GPU that fell off the bus"
    assert code_of(lambda: nvml.handle_by_index(1)) == GPU_IS_LOST
    assert code_of(lambda: nvml.handle_by_uuid("GPU-0b6b0347-d03c-3e57-476c-d9a8e64fd5a6")) == GPU_IS_LOST
    nvml.detach_gpu(1)
    nvml.shutdown()
    nvml.init()
    assert nvml.device_count() == 1, "a fresh NVML session no longer enumerates a detached GPU"


def test_gpm_needs_two_live_samples_and_averages_over_their_gap(nvml: ReplayBackend, clock: Clock) -> None:
    handle = nvml.handle_by_index(0)
    hmma = 7  # NVML_GPM_METRIC_HMMA_TENSOR_UTIL
    first = nvml.gpm_sample(handle)
    assert code_of(lambda: nvml.gpm_metrics(first, first, [hmma])) == INVALID_ARGUMENT
    clock.now += 5
    nvml.phase = "load"
    clock.now += 5
    second = nvml.gpm_sample(handle)
    idle = nvml.gpm_metrics(first, second, [hmma])[hmma]
    clock.now += 10
    third = nvml.gpm_sample(handle)
    loaded = nvml.gpm_metrics(second, third, [hmma])[hmma]
    assert loaded == pytest.approx(54.1693, abs=1e-3)
    assert idle == pytest.approx(loaded / 2, abs=1e-3), "half the gap under load: half the load's activity"
    nvml.gpm_free(first)
    assert code_of(lambda: nvml.gpm_metrics(first, second, [hmma])) == INVALID_ARGUMENT
    assert code_of(lambda: nvml.gpm_free(first)) == INVALID_ARGUMENT, "a double free is refused"


def test_energy_advances_by_power_times_time(nvml: ReplayBackend, clock: Clock) -> None:
    handle = nvml.handle_by_index(0)
    before = nvml.total_energy_mj(handle)
    clock.now += 10
    assert nvml.total_energy_mj(handle) - before == pytest.approx(81447 * 10, rel=1e-6)  # mW x s = mJ


def test_xid_events_reach_only_sets_their_gpu_is_registered_on(nvml: ReplayBackend) -> None:
    event_set, registered = nvml.xid_event_set([nvml.handle_by_index(0)])
    assert len(registered) == 1
    nvml.emit_xid(1, 79)
    assert nvml.xid_wait(event_set, 10) is None, "GPU 1 never registered on this set"
    nvml.emit_xid(0, 48)
    event = nvml.xid_wait(event_set, 10)
    assert event is not None and event.xid == 48
    nvml.xid_free(event_set)
    assert code_of(lambda: nvml.xid_wait(event_set, 10)) == INVALID_ARGUMENT


def test_fabric_cluster_uuid_is_the_gpus_own(nvml: ReplayBackend) -> None:
    smi = (FIXTURES / "h200x2" / "smi_q.txt").read_text()
    printed = smi.split("ClusterUUID", 1)[1].split(":", 1)[1].split()[0]
    assert nvml.fabric_info(nvml.handle_by_index(0))["cluster_uuid"] == printed
    nvml.make_blackwell(0)
    nvml.make_blackwell(1)
    domain = {nvml.fabric_info(nvml.handle_by_index(i))["cluster_uuid"] for i in (0, 1)}
    assert domain == {NVL72_CLUSTER_UUID}, "GPUs of one NVL72 domain share a real cluster UUID"


def test_recorded_errors_replay_with_the_code_or_exception_they_were(nvml: ReplayBackend) -> None:
    handle = nvml.handle_by_index(0)
    recorded = json.loads((FIXTURES / "h200x2" / "nvml_probe.json").read_text())
    assert recorded["devices"][0]["calls"]["nvmlDeviceGetPcieThroughput"]["err"].startswith("PY:TypeError")
    assert code_of(lambda: nvml.nvlink_error_counter(handle, 99, 0)) == INVALID_ARGUMENT
    nvml.fail(0, "temperature_c", NOT_SUPPORTED)
    assert code_of(lambda: nvml.temperature_c(handle)) == NOT_SUPPORTED
    codes = error_codes()  # the bindings' own names and codes, which every recorded error goes through
    assert codes["NotSupported"] == 3 and codes["NoData"] == 21 and codes["InsufficientSize"] == 7
    assert isinstance(recorded_error('PY:TypeError("missing 1 required positional argument")', "x", codes), TypeError)
    timeout = recorded_error("NVMLError_Timeout:Timeout", "x", codes)
    assert isinstance(timeout, NvmlError) and timeout.code == 10 and not timeout.lost


def test_shutting_nvml_down_under_a_blocked_call_is_recorded(nvml: ReplayBackend) -> None:
    handle = nvml.handle_by_index(1)
    release = nvml.hang(1, "power_usage_mw")
    caller = threading.Thread(target=lambda: pytest.raises(NvmlError, nvml.power_usage_mw, handle), daemon=True)
    caller.start()
    while not nvml.calls["power_usage_mw"]:
        time.sleep(0.001)
    time.sleep(0.05)  # let the call reach its wait inside NVML
    nvml.shutdown()
    release.set()
    caller.join(2)
    assert nvml.violations and "inside" in nvml.violations[0]
