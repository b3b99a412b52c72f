"""Preflight over NVML: the recorded 2x H200 answers (nvml source's ReplayBackend), Blackwell
answers injected on top of them, and a GPU that falls off the bus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exporter.preflight import boxes
from exporter.preflight.checks import gpu, nvlink
from exporter.preflight.facts import HostFacts
from exporter.preflight.result import Status
from exporter.preflight.settings import PreflightConfig
from exporter.sources.nvml.backend import FUNCTION_NOT_FOUND, INVALID_ARGUMENT, NvmlError
from tests.nvml_replay import ReplayBackend

# The real 2x H200 recording (tests/fixtures/nvml/h200x2), as for the nvml source's tests.
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "nvml" / "h200x2" / "nvml_probe.json"
CFG = PreflightConfig()


class RecordedExtraCalls:
    """The four calls preflight adds to the Backend, answered from the same recording.

    The capture did not ask nvmlSystemGetCudaDriverVersion, so it answers FunctionNotFound, as a
    driver older than the bindings would."""

    def __init__(self, recording: dict[str, Any], replay: ReplayBackend) -> None:
        self._devices = recording["devices"]
        self._replay = replay

    def _device(self, handle: Any) -> dict[str, Any]:
        self._replay.index(handle)  # raises GpuIsLost like every other call on a lost GPU
        return self._devices[handle.index]

    def cuda_driver_version(self) -> int:
        raise NvmlError(FUNCTION_NOT_FOUND, "nvmlSystemGetCudaDriverVersion")

    def persistence_mode(self, handle: Any) -> bool:
        return bool(self._device(handle)["calls"]["nvmlDeviceGetPersistenceMode"]["value"])

    def nvlink_active(self, handle: Any, link: int) -> bool:
        links = self._device(handle)["links"]
        if link >= len(links) or links[link]["state_err"]:
            raise NvmlError(INVALID_ARGUMENT, "nvmlDeviceGetNvLinkState")
        return bool(links[link]["state"])

    def compute_pids(self, handle: Any) -> list[int]:
        return [int(p["pid"]) for p in self._device(handle)["calls"]["nvmlDeviceGetComputeRunningProcesses"]["value"]]


@pytest.fixture
def replay() -> tuple[ReplayBackend, RecordedExtraCalls]:
    recording = json.loads(FIXTURE.read_text())
    backend = ReplayBackend(recording)
    return backend, RecordedExtraCalls(recording, backend)


def read(replay: tuple[ReplayBackend, RecordedExtraCalls]) -> HostFacts:
    return boxes.read_backend(replay[0], replay[1], "replay of 2x H200")


def test_the_h200_capture_warns_on_hopper(replay) -> None:
    result = gpu.compute_capability(read(replay), CFG)
    assert result.status is Status.WARN
    assert result.evidence == "GPU 0 NVIDIA H200 9.0; GPU 1 NVIDIA H200 9.0"
    assert "no FP4 tensor cores" in result.fix


def test_the_h200_capture_reads_ecc_persistence_and_remaps_from_nvml(replay) -> None:
    host = read(replay)
    assert host.driver_version == "580.159.04"
    assert gpu.ecc_mode(host, CFG).status is Status.PASS
    assert gpu.persistence_mode(host, CFG).status is Status.PASS
    assert gpu.row_remaps(host, CFG).status is Status.PASS
    cuda = gpu.driver_cuda_version(host, CFG)
    assert cuda.status is Status.WARN and "FunctionNotFound" in cuda.evidence


def test_the_h200_capture_is_nv18_through_the_switch_with_every_link_active(replay) -> None:
    host = read(replay)
    assert [g.fabric_state for g in host.gpus] == ["completed", "completed"]
    topology = nvlink.nvlink_topology(host, CFG)
    assert topology.status is Status.PASS
    assert topology.evidence == "all 1 GPU pair(s) joined through NVSwitch, NV18 (expected NV18)"
    active = nvlink.nvlink_links_active(host, CFG)
    assert (active.status, active.evidence) == (Status.PASS, "36 of 36 links active on 2 GPU(s)")


def test_the_h200_capture_counts_legacy_crc_data_that_nvidia_smi_does_not(replay) -> None:
    """GPU0 link 0: legacy CRC_DATA=20, ECC_DATA=28, while field 163 (nvidia-smi nvlink -e) says 0."""
    host = read(replay)
    link0 = host.gpus[0].links[0]
    assert link0.errors[("legacy", "crc_data")] == 20
    assert link0.errors[("legacy", "ecc_data")] == 28
    assert link0.errors[("dl", "crc")] == 0
    result = nvlink.nvlink_errors(host, CFG)
    assert result.status is Status.WARN
    assert "legacy/crc_data on 36 link(s): GPU 0 link 0=20" in result.evidence


def test_a_replay_turned_blackwell_passes_capability_and_reads_nvlink5_counters(replay) -> None:
    backend, _ = replay
    for index in (0, 1):
        backend.make_blackwell(index)
    host = read(replay)
    assert gpu.compute_capability(host, CFG).status is Status.PASS
    errors = nvlink.nvlink_errors(host, CFG)
    # The synthetic NVLink5 answers carry 3 symbol errors per link: corrected by FEC, so a warning.
    assert errors.status is Status.WARN and "nvlink5/symbol on 36 link(s)" in errors.evidence
    assert "legacy" not in errors.evidence


def test_nvlink5_recovery_failure_fails(replay) -> None:
    backend, _ = replay
    backend.make_blackwell(0)
    backend.make_blackwell(1)
    backend.set_field(1, 214, 2, scope=5)  # LINK_RECOVERY_FAILED_EVENTS on link 5
    result = nvlink.nvlink_errors(read(replay), CFG)
    assert result.status is Status.FAIL and "nvlink5/recovery_failed on 1 link(s): GPU 1 link 5=2" in result.evidence


def test_ecc_pending_off_and_remap_pending_come_from_field_values(replay) -> None:
    backend, _ = replay
    backend.set_field(0, 2, 0)  # ECC_PENDING: off after the next reset
    backend.set_field(1, 144, 1)  # REMAPPED_PENDING
    host = read(replay)
    assert gpu.ecc_mode(host, CFG).status is Status.WARN
    remap = gpu.row_remaps(host, CFG)
    assert remap.status is Status.FAIL and remap.evidence == "row remap pending on GPU 1"


def test_a_lost_gpu_is_down_and_the_other_is_still_read(replay) -> None:
    backend, _ = replay
    backend.lose_gpu(1)
    host = read(replay)
    assert [g.up for g in host.gpus] == [True, False]
    assert "GpuIsLost" in host.gpus[1].down_reason
    assert gpu.gpus_visible(host, CFG).status is Status.FAIL
    assert nvlink.nvlink_topology(host, CFG).status is Status.SKIP  # one GPU left: no pair
    assert gpu.compute_capability(host, CFG).evidence == "GPU 0 NVIDIA H200 9.0"
