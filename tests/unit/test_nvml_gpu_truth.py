"""Every GPU's true state from the nvml source, over the H200 recording (tests/nvml_replay.py).

A GPU lost before the exporter starts is reported down and /readyz says so; a failed call that is
not "lost" costs only its own series and is counted; only NotSupported and FunctionNotFound are
permanent at probe; NVML is never shut down under a thread inside it; memory used and reserved
are what nvidia-smi printed on the same machine.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from exporter.scheduler import Scheduler
from exporter.snapshot import Family, Snapshot, SnapshotStore
from exporter.sources.base import PartialPollError
from exporter.sources.dcgm_exporter_names import exporter_hostname
from exporter.sources.nvml.backend import GPU_IS_LOST, NO_PERMISSION, NOT_SUPPORTED, TIMEOUT
from exporter.sources.nvml.source import NvmlConfig, NvmlSource
from tests.nvml_replay import ReplayBackend
from tests.support import FakeClock as Clock

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nvml"
GPU0 = "GPU-1b78982c-0e04-daa0-7189-44a219fa7d37"
GPU1 = "GPU-0b6b0347-d03c-3e57-476c-d9a8e64fd5a6"
MIB = 2**20


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def backend(clock: Clock) -> ReplayBackend:
    recording = json.loads((FIXTURES / "h200x2" / "nvml_probe.json").read_text())
    overlay = json.loads((FIXTURES / "h200x2_overlay.json").read_text())["calls"]
    return ReplayBackend(recording, overlay, clock=clock)


def source_for(backend: ReplayBackend, clock: Clock, **config: object) -> NvmlSource:
    settings: dict[str, object] = {"xid_events": False, "gpu_deadline": 0.3, "timeout": 2.0, "interval": 10,
                                   **config}
    return NvmlSource(NvmlConfig(**settings), backend=backend, clock=clock)


def series(families: list[Family]) -> dict[tuple[str, tuple[str, ...]], float]:
    Snapshot.of("nvml", families)  # every family is declared and may be filled by the nvml source
    return {(family.metric.name, labels): value for family in families for labels, value in family.samples}


# -- 1. GPUs that are down when the exporter starts --------------------------------------------------

def test_a_gpu_lost_before_start_is_reported_down_and_readyz_names_it(backend: ReplayBackend, clock: Clock) -> None:
    backend.lose_gpu(1)  # XID 79 before the exporter started: NVML still counts it, its handle answers GpuIsLost
    source = source_for(backend, clock)
    scheduler = Scheduler([source], SnapshotStore(), "hardware", clock=clock)  # its jobs not started:
    runner = scheduler.runners[source.name]  # each run_once below is one scheduler tick
    runner.run_once()
    s = series(source.poll())
    assert s[("blackwell_gpu_up", ("0", GPU0))] == 1
    assert s[("blackwell_gpu_up", ("1", ""))] == 0, "down, under the index NVML counts; its UUID was never read"
    ready, reasons = scheduler.ready()
    assert not ready
    assert any("nvml: GPU 1" in reason and "GpuIsLost" in reason for reason in reasons), reasons

    backend.restore_gpu(1)
    for _ in range(3):  # re-init with the source's backoff finds it
        clock.now += 20
        runner.run_once()
    assert scheduler.ready() == (True, [])
    assert series(source.poll())[("blackwell_gpu_up", ("1", GPU1))] == 1


def test_a_gpu_seen_before_keeps_its_uuid_when_it_is_down_at_the_next_probe(backend: ReplayBackend,
                                                                            clock: Clock) -> None:
    source = source_for(backend, clock)
    source.probe()
    source.poll()
    source.close()  # what the scheduler does before a re-probe
    backend.detach_gpu(1)  # fell off the bus and the driver no longer lists it
    source.probe()
    s = series(source.poll())
    assert backend.device_count() == 1
    assert s[("blackwell_gpu_up", ("1", GPU1))] == 0
    assert s[("blackwell_gpu_up", ("0", GPU0))] == 1
    assert any(GPU1 in why for why in source.not_ready())


def test_a_known_gpus_file_keeps_a_dead_gpu_down_across_a_restart(backend: ReplayBackend, clock: Clock,
                                                                   tmp_path: Path) -> None:
    known = tmp_path / "known-gpus.json"
    first = source_for(backend, clock, known_gpus_file=str(known))
    first.probe()
    first.poll()
    first.close()
    assert {entry["uuid"] for entry in json.loads(known.read_text())["gpus"]} == {GPU0, GPU1}

    backend.detach_gpu(1)  # the pod restarts while GPU 1 is off the bus: a new process, a fresh NVML session
    restarted = source_for(backend, clock, known_gpus_file=str(known))
    restarted.probe()
    s = series(restarted.poll())
    assert s[("blackwell_gpu_up", ("1", GPU1))] == 0, "BlackwellGPULost keeps firing for the same GPU"
    assert s[("blackwell_gpu_up", ("0", GPU0))] == 1
    known.write_text("{not json")
    unreadable = source_for(backend, clock, known_gpus_file=str(known))
    unreadable.probe()  # logged, not fatal
    assert series(unreadable.poll())[("blackwell_gpu_up", ("0", GPU0))] == 1


def test_expected_gpus_reports_the_ones_nvml_does_not_list(backend: ReplayBackend, clock: Clock) -> None:
    source = source_for(backend, clock, expected_gpus=4)
    source.probe()
    s = series(source.poll())
    assert [labels for (name, labels), value in s.items() if name == "blackwell_gpu_up" and value == 0] == [
        ("2", ""), ("3", "")]
    assert len(source.not_ready()) == 2 and "4 expected" in source.not_ready()[0]


# -- 2. a failed call that is not "lost" ----------------------------------------------------------

def test_a_timeout_on_one_call_keeps_the_gpus_other_series_and_is_counted(backend: ReplayBackend,
                                                                          clock: Clock) -> None:
    source = source_for(backend, clock)
    source.probe()
    backend.fail(1, "power_usage_mw", TIMEOUT)
    for _ in range(2):
        clock.now += 10
        s = series(source.poll())
    assert s[("blackwell_gpu_up", ("1", GPU1))] == 1
    assert ("blackwell_gpu_power_watts", ("1",)) not in s
    assert s[("blackwell_gpu_temperature_celsius", ("1",))] > 0, "the series that did read are kept"
    assert ("blackwell_nvlink_link_up", ("1", "0")) in s
    assert s[("blackwell_gpu_nvml_read_errors_total", ("1", GPU1, "power_usage"))] == 2
    assert s[("blackwell_gpu_nvml_partial_read", ("1", GPU1))] == 1
    assert s[("blackwell_gpu_nvml_partial_read", ("0", GPU0))] == 0

    backend.restore_gpu(1)  # clears the injected failure
    clock.now += 10
    s = series(source.poll())
    assert s[("blackwell_gpu_power_watts", ("1",))] > 0
    assert s[("blackwell_gpu_nvml_partial_read", ("1", GPU1))] == 0
    assert s[("blackwell_gpu_nvml_read_errors_total", ("1", GPU1, "power_usage"))] == 2, "a counter never drops"


def test_a_bindings_error_on_a_read_costs_that_call_only(backend: ReplayBackend, clock: Clock) -> None:
    source = source_for(backend, clock)
    source.probe()

    def broken(handle):  # type: ignore[no-untyped-def]
        raise TypeError("unsupported operand type(s)")  # a wrapper that does not match the driver

    backend.temperature_c = broken  # type: ignore[method-assign]
    s = series(source.poll())
    assert s[("blackwell_gpu_up", ("0", GPU0))] == 1
    assert s[("blackwell_gpu_power_watts", ("0",))] > 0
    assert s[("blackwell_gpu_nvml_read_errors_total", ("0", GPU0, "temperature"))] == 1


# -- 3. only NotSupported and FunctionNotFound are permanent -------------------------------------------

def test_transient_probe_errors_are_retried_and_not_supported_is_not(backend: ReplayBackend, clock: Clock) -> None:
    backend.fail(0, "power_usage_mw", TIMEOUT)  # a per-cycle call
    backend.fail(0, "platform_info", NO_PERMISSION)  # read at probe only
    backend.fail(0, "c2c_enabled", NOT_SUPPORTED)
    source = source_for(backend, clock)
    source.probe()
    s = series(source.poll())
    assert ("blackwell_gpu_power_watts", ("0",)) not in s
    assert not [k for k in s if k[0] == "blackwell_gpu_platform_info" and k[1][0] == "0"]
    c2c_calls = backend.calls["c2c_enabled"]

    backend.restore_gpu(0)  # the timeouts and the permission problem clear; NotSupported would not
    backend.fail(0, "c2c_enabled", NOT_SUPPORTED)
    for _ in range(8):  # the probe-only path is retried with backoff
        clock.now += 40
        s = series(source.poll())
    assert s[("blackwell_gpu_power_watts", ("0",))] > 0
    assert [k for k in s if k[0] == "blackwell_gpu_platform_info" and k[1][0] == "0"]
    assert backend.calls["c2c_enabled"] == c2c_calls + 1, "probed once more with the GPU, not every poll"
    clock.now += 1000
    source.poll()
    assert backend.calls["c2c_enabled"] == c2c_calls + 1, "once everything answered, no more probes"


# -- 4. NVML is never shut down under a thread inside it --------------------------------------------

def wait_for(predicate, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert predicate()


def test_reinit_waits_for_a_stalled_read_to_leave_nvml(backend: ReplayBackend, clock: Clock) -> None:
    source = source_for(backend, clock)
    source.probe()
    backend.hang(1, "power_usage_mw")
    backend.lose_gpu(0)
    backend.fail(0, None, GPU_IS_LOST)
    with pytest.raises(PartialPollError) as failed:  # no GPU answered: one lost, one stalled
        source.poll()
    s = series(failed.value.families)
    assert s[("blackwell_gpu_up", ("0", GPU0))] == 0 and s[("blackwell_gpu_nvml_stalled", ("1", GPU1))] == 1
    inits = backend.init_count
    clock.now += 10  # a re-init is due, but GPU1's thread is inside NVML
    with pytest.raises(PartialPollError):
        source.poll()
    assert backend.init_count == inits and backend.initialised
    backend.unhang(1, "power_usage_mw")
    backend.restore_gpu(0)
    wait_for(lambda: backend.calls["power_usage_mw"] and not backend.violations and _quiet(source, clock))
    assert backend.init_count > inits
    assert backend.violations == []


def _quiet(source: NvmlSource, clock: Clock) -> bool:
    """Poll until both GPUs are up again (the re-init ran after the stalled read returned)."""
    clock.now += 40
    try:
        s = series(source.poll())
    except PartialPollError:
        return False  # the released read has not returned yet
    return s.get(("blackwell_gpu_up", ("0", GPU0))) == 1 and s.get(("blackwell_gpu_up", ("1", GPU1))) == 1


def test_close_leaves_nvmlshutdown_to_the_last_thread_out(backend: ReplayBackend, clock: Clock) -> None:
    source = source_for(backend, clock)
    source.probe()
    release = backend.hang(1, "power_usage_mw")
    source.poll()
    source.close()
    assert backend.initialised, "nvmlShutdown must wait: GPU1's read is still inside NVML"
    release.set()
    wait_for(lambda: not backend.initialised)
    assert backend.violations == []


def test_a_stuck_xid_wait_keeps_nvml_up_until_it_returns(backend: ReplayBackend, clock: Clock) -> None:
    source = source_for(backend, clock, xid_events=True)
    source.probe()
    source.poll()
    release = backend.hang_event_waits()
    time.sleep(0.1)  # the XID thread is now inside nvmlEventSetWait
    backend.lose_gpu(1)
    backend.fail(1, None, GPU_IS_LOST)
    source.poll()
    inits = backend.init_count
    clock.now += 10
    source.poll()  # the re-init stops the XID thread, which does not return within its 2 s
    assert backend.init_count == inits, "no shutdown and re-init under the waiting XID thread"
    source.close()
    assert backend.initialised
    release.set()
    wait_for(lambda: not backend.initialised)
    assert backend.violations == []


# -- 6. memory as nvidia-smi prints it ---------------------------------------------------------------

def nvidia_smi_fb_memory() -> dict[str, int]:
    """GPU 0's "FB Memory Usage" block of the capture's nvidia-smi -q, MiB."""
    text = (FIXTURES / "h200x2" / "smi_q.txt").read_text()
    block = text.split("FB Memory Usage", 1)[1].split("BAR1 Memory Usage", 1)[0]
    return {key: int(value) for key, value in re.findall(r"(\w+)\s+:\s+(\d+) MiB", block)}


def test_memory_used_and_reserved_are_what_nvidia_smi_printed(backend: ReplayBackend, clock: Clock) -> None:
    smi = nvidia_smi_fb_memory()
    assert smi == {"Total": 143771, "Reserved": 616, "Used": 0, "Free": 143156}
    source = source_for(backend, clock, dcgm_compat_names=True)
    source.probe()
    s = series(source.poll())
    assert s[("blackwell_gpu_memory_used_bytes", ("0",))] // MIB == smi["Used"]
    assert abs(s[("blackwell_gpu_memory_reserved_bytes", ("0",))] / MIB - smi["Reserved"]) < 1
    assert s[("blackwell_gpu_memory_total_bytes", ("0",))] // MIB == smi["Total"]
    labels = ("0", GPU0, "00000000:00:06.0", "nvidia0", "NVIDIA H200", exporter_hostname(), "580.159.04")
    assert s[("DCGM_FI_DEV_FB_USED", labels)] == smi["Used"], "DCGM field 252 excludes the reserve too"
    assert round(s[("DCGM_FI_DEV_FB_FREE", labels)]) == smi["Free"]  # nvidia-smi rounds each line on its own
