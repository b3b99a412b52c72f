"""Preflight GPU and NVLink checks against the simulation profiles and hand-built facts."""

from __future__ import annotations

import pytest

from exporter.preflight.checks import gpu, nvlink
from exporter.preflight.facts import GpuFacts, HostFacts, LinkFacts
from exporter.preflight.result import Status
from exporter.preflight.settings import PreflightConfig
from tests.simulated_box import preflight_host

CFG = PreflightConfig()
BOX_CHECKS = (gpu.gpus_visible, gpu.driver_cuda_version, gpu.compute_capability, gpu.ecc_mode,
              gpu.persistence_mode, gpu.row_remaps, nvlink.nvlink_topology, nvlink.nvlink_links_active,
              nvlink.nvlink_errors)


def statuses(host: HostFacts) -> dict[str, Status]:
    return {(r := check(host, CFG)).check: r.status for check in BOX_CHECKS}


# NVLink5 symbol errors (corrected by FEC) count at a low rate on healthy Blackwell links: a warning.
@pytest.mark.parametrize("profile, capability, link_errors", [("hgx-b200", Status.PASS, Status.WARN),
                                                              ("gb200-tray", Status.PASS, Status.WARN),
                                                              ("h200x2", Status.WARN, Status.PASS)])
def test_healthy_simulated_boxes_pass_everything_the_simulation_models(profile: str, capability: Status,
                                                                      link_errors: Status) -> None:
    assert statuses(preflight_host(profile)) == {
        "gpus_visible": Status.PASS,
        "driver_cuda_version": Status.WARN,  # the catalog carries no CUDA version
        "compute_capability": capability,  # Hopper warns, Blackwell passes
        "ecc_mode": Status.SKIP,  # not a metric: the simulation cannot say
        "persistence_mode": Status.SKIP,
        "row_remaps": Status.PASS,
        "nvlink_topology": Status.PASS,
        "nvlink_links_active": Status.PASS,
        "nvlink_errors": link_errors,
    }


def test_hgx_b200_pairs_are_nv18_through_nvswitch() -> None:
    result = nvlink.nvlink_topology(preflight_host("hgx-b200"), CFG)
    assert result.evidence == "all 28 GPU pair(s) joined through NVSwitch, NV18 (expected NV18)"


def test_h200x2_profile_joins_its_pair_through_the_switch_like_the_real_box() -> None:
    result = nvlink.nvlink_topology(preflight_host("h200x2"), CFG)
    assert result.status is Status.PASS and "NV18" in result.evidence


@pytest.mark.parametrize("profile", ["hgx-b200", "gb200-tray", "h200x2"])
@pytest.mark.parametrize("scenario, check", [("nvlink-crc-burst", "nvlink_errors"), ("gpu-lost", "gpus_visible"),
                                             ("row-remap-failure", "row_remaps")])
def test_fault_scenarios_fail_their_check(profile: str, scenario: str, check: str) -> None:
    found = statuses(preflight_host(profile, scenario))
    assert found[check] is Status.FAIL
    assert [name for name, status in found.items() if status is Status.FAIL] == [check]


def test_expected_link_count_above_what_the_box_has_fails_topology() -> None:
    result = nvlink.nvlink_topology(preflight_host("hgx-b200"), PreflightConfig(expected_link_count=36))
    assert result.status is Status.FAIL
    assert "28 of 28 GPU pairs below NV36" in result.evidence


def test_expected_gpu_count_mismatch_fails() -> None:
    result = gpu.gpus_visible(preflight_host("h200x2"), PreflightConfig(expected_gpu_count=8))
    assert result.status is Status.FAIL and "expected 8" in result.evidence


# -- hand-built boxes: the rules one at a time ------------------------------------------------

def link(n: int, active: bool | None = True, remote: str = "switch", bus: str | None = None, **errors: float) -> LinkFacts:
    keyed = {tuple(k.split("__")): v for k, v in errors.items()}
    return LinkFacts(n, active, remote, bus, keyed)  # type: ignore[arg-type]


def box(*gpus: GpuFacts, driver: str = "580.95.05", cuda: str | None = "13.0") -> HostFacts:
    return HostFacts("test", driver, cuda, gpus)


def b200(index: int, links: tuple[LinkFacts, ...] | None = None, **kw: object) -> GpuFacts:
    base: dict = dict(index=index, name="NVIDIA B200", bus_id=f"0000:{index:02X}:00.0", compute_capability=(10, 0),
                      ecc_current=True, ecc_pending=True, persistence=True, remap_pending=False,
                      remap_failure=False, link_count=18, fabric_state="completed",
                      links=links if links is not None else tuple(
                          link(n, nvlink5__effective=0.0, nvlink5__symbol=0.0) for n in range(18)))
    base.update(kw)
    return GpuFacts(**base)


def test_a_healthy_hand_built_b200_box_passes_every_box_check() -> None:
    assert set(statuses(box(b200(0), b200(1))).values()) == {Status.PASS}


def test_driver_and_cuda_below_minimum_fail() -> None:
    assert gpu.driver_cuda_version(box(b200(0), driver="550.54.15"), CFG).status is Status.FAIL
    old_cuda = gpu.driver_cuda_version(box(b200(0), cuda="12.4"), CFG)
    assert old_cuda.status is Status.FAIL and "CUDA 12.4 < required CUDA 12.8" in old_cuda.evidence


def test_compute_capability_other_than_blackwell_or_hopper_fails() -> None:
    ampere = gpu.compute_capability(box(b200(0), b200(1, compute_capability=(8, 0), name="NVIDIA A100")), CFG)
    assert ampere.status is Status.FAIL and "GPU 1 NVIDIA A100 8.0" in ampere.evidence


def test_one_inactive_link_fails_links_active_and_lowers_the_pair_count() -> None:
    links = tuple(link(n, active=n != 7) for n in range(18))
    host = box(b200(0, links=links), b200(1))
    active = nvlink.nvlink_links_active(host, CFG)
    assert active.status is Status.FAIL and "GPU 0 links 7 inactive" in active.evidence
    topology = nvlink.nvlink_topology(host, CFG)
    assert topology.status is Status.FAIL and "GPU 0-1 NV17" in topology.evidence


def test_direct_links_count_per_peer_bus_id() -> None:
    a = b200(0, links=tuple(link(n, remote="gpu", bus="0000:01:00.0") for n in range(18)))
    b = b200(1, links=tuple(link(n, remote="gpu", bus="0000:00:00.0") for n in range(18)))
    c = b200(2, links=tuple(link(n, remote="gpu", bus="0000:00:00.0") for n in range(18)))
    result = nvlink.nvlink_topology(box(a, b, c), CFG)
    # GPU 2's links all go to GPU 0, whose links all go to GPU 1: 0-2 and 1-2 are not joined as expected.
    assert result.status is Status.FAIL
    assert "GPU 0-2 NV0" in result.evidence and "GPU 1-2 NV0" in result.evidence


def test_fabric_not_registered_fails_topology_on_switch_systems() -> None:
    result = nvlink.nvlink_topology(box(b200(0), b200(1, fabric_state="in_progress")), CFG)
    assert result.status is Status.FAIL and "GPU 1 in_progress" in result.evidence


def test_corrected_errors_warn_and_uncorrected_errors_fail() -> None:
    corrected = tuple(link(n, legacy__crc_data=20.0 if n == 0 else 0.0) for n in range(18))
    assert nvlink.nvlink_errors(box(b200(0, links=corrected)), CFG).status is Status.WARN
    failed_recovery = tuple(link(n, nvlink5__recovery_failed=1.0 if n == 3 else 0.0) for n in range(18))
    result = nvlink.nvlink_errors(box(b200(0, links=failed_recovery)), CFG)
    assert result.status is Status.FAIL and "nvlink5/recovery_failed on 1 link(s): GPU 0 link 3=1" in result.evidence


def test_no_error_counter_readable_skips() -> None:
    bare = tuple(link(n) for n in range(18))
    assert nvlink.nvlink_errors(box(b200(0, links=bare)), CFG).status is Status.SKIP


def test_ecc_off_fails_and_ecc_turning_off_at_reset_warns() -> None:
    assert gpu.ecc_mode(box(b200(0), b200(1, ecc_current=False)), CFG).status is Status.FAIL
    assert gpu.ecc_mode(box(b200(0, ecc_pending=False)), CFG).status is Status.WARN


def test_pending_row_remap_fails_and_persistence_off_fails() -> None:
    remap = gpu.row_remaps(box(b200(0, remap_pending=True)), CFG)
    assert remap.status is Status.FAIL and "pending on GPU 0" in remap.evidence
    assert gpu.persistence_mode(box(b200(0), b200(1, persistence=False)), CFG).status is Status.FAIL


def test_unreadable_nvml_fails_every_box_check_with_the_reason() -> None:
    host = HostFacts("NVML", error="nvmlInit failed: LibraryNotFound")
    for check in BOX_CHECKS:
        result = check(host, CFG)
        assert result.status is Status.FAIL and "LibraryNotFound" in result.evidence, result.check
