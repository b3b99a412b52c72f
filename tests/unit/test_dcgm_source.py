"""The optional dcgm source: field ids mapped onto the catalog, blanks skipped, a missing DCGM explained.

DCGM is not installed here, so the reader is ``tests.dcgm_fake.FakeDcgmReader``, with the shape of the
bindings' ``DcgmReader.GetLatestGpuValuesAsFieldIdDict()``: GPU id -> field id -> value, the watched
fields only (blank sentinels included, as DCGM holds them for fields a GPU does not support).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from exporter.snapshot import Snapshot
from exporter.sources.base import PollError
from exporter.sources.dcgm import DcgmConfig, DcgmSource, is_blank
from tests.dcgm_fake import FP64_BLANK as FP_BLANK
from tests.dcgm_fake import H200 as FULL_H200
from tests.dcgm_fake import INT32_BLANK as INT_BLANK
from tests.dcgm_fake import INT64_BLANK, INT64_NOT_SUPPORTED, FakeDcgm

H200 = {**FULL_H200, 1005: FP_BLANK}  # DRAM activity blank, as DCGM holds it while profiling is unavailable


def poll(values: Mapping[int, Mapping[int, Any]]) -> dict[tuple[str, tuple[str, ...]], float]:
    source = DcgmSource(DcgmConfig(enabled=True), reader_factory=FakeDcgm(values).connect)
    source.probe()
    families = source.poll()
    Snapshot.of("dcgm", families)
    return {(f.metric.name, labels): value for f in families for labels, value in f.samples}


def test_fields_are_mapped_by_id_into_catalog_units() -> None:
    s = poll({0: H200})
    assert s[("blackwell_gpu_up", ("0", H200[54]))] == 1
    assert s[("blackwell_gpu_sm_clock_hertz", ("0",))] == 1980e6
    assert s[("blackwell_gpu_power_watts", ("0",))] == pytest.approx(81.4)
    assert s[("blackwell_gpu_energy_joules_total", ("0",))] == pytest.approx(5472.925)
    assert s[("blackwell_gpu_utilization_ratio", ("0",))] == pytest.approx(0.93)
    assert s[("blackwell_gpu_memory_total_bytes", ("0",))] == 143771 * 2**20
    assert s[("blackwell_gpu_tensor_active_ratio", ("0", "any"))] == pytest.approx(0.54)
    assert s[("blackwell_gpu_clock_event_active", ("0", "sw_power_cap"))] == 1
    assert s[("blackwell_gpu_clock_event_active", ("0", "hw_thermal"))] == 0


def test_blank_values_are_left_out_not_exported_as_huge_numbers() -> None:
    s = poll({0: H200})
    assert ("blackwell_gpu_dram_bandwidth_utilization_ratio", ("0",)) not in s
    assert ("blackwell_c2c_link_up", ("0",)) not in s
    assert is_blank(INT_BLANK) and is_blank(FP_BLANK) and is_blank(None) and not is_blank(0)


def test_missing_bindings_are_a_clear_probe_error(tmp_path) -> None:
    source = DcgmSource(DcgmConfig(enabled=True, bindings_path=str(tmp_path)))
    with pytest.raises(PollError, match="DCGM Python bindings not found") as err:
        source.probe()
    assert err.value.reason == "import"


def test_read_failure_is_a_poll_error_and_close_releases_the_reader() -> None:
    dcgm = FakeDcgm({})
    dcgm.error = RuntimeError("DCGM_ST_CONNECTION_NOT_VALID")
    source = DcgmSource(DcgmConfig(enabled=True), reader_factory=dcgm.connect)
    source.probe()
    with pytest.raises(PollError, match="CONNECTION_NOT_VALID"):
        source.poll()
    source.close()
    assert dcgm.readers[0].closed


def test_dcgm_is_off_by_default() -> None:
    assert DcgmConfig().enabled is False


# -- blackwell_gpu_up from what DCGM says about the GPU -----------------------------------------------

LOST = {**H200, 100: INT_BLANK, 101: INT_BLANK, 150: INT64_BLANK, 155: FP_BLANK, 203: INT_BLANK, 204: INT_BLANK,
        252: INT_BLANK}  # what DCGM's cache holds once every NVML call on the GPU fails


def test_a_gpu_whose_last_xid_is_79_is_down_and_readyz_says_so() -> None:
    gpus = {0: {**H200, 230: 79}, 1: {**H200, 54: "GPU-other", 52: 1, 230: 48}}
    source = DcgmSource(DcgmConfig(enabled=True), reader_factory=FakeDcgm(gpus).connect)
    source.probe()
    s = {(f.metric.name, labels): value for f in source.poll() for labels, value in f.samples}
    assert s[("blackwell_gpu_up", ("0", H200[54]))] == 0, "BlackwellGPULost fires on DCGM sites too"
    assert ("blackwell_gpu_power_watts", ("0",)) not in s
    assert s[("blackwell_gpu_up", ("1", "GPU-other"))] == 1, "another XID is not a lost GPU"
    assert source.not_ready() == [f"GPU 0 ({H200[54]}): last XID 79 (fallen off the bus)"]


def test_a_gpu_dcgm_cannot_read_is_down_but_not_supported_fields_are_not_a_failure() -> None:
    assert poll({0: LOST})[("blackwell_gpu_up", ("0", H200[54]))] == 0
    unsupported = {**H200, **{field: INT64_NOT_SUPPORTED for field in (100, 101, 150, 155, 203, 204, 252)}}
    assert poll({0: unsupported})[("blackwell_gpu_up", ("0", H200[54]))] == 1


def test_a_gpu_dcgm_stops_listing_stays_reported_down_under_its_uuid() -> None:
    dcgm = FakeDcgm({0: H200})
    source = DcgmSource(DcgmConfig(enabled=True), reader_factory=dcgm.connect)
    source.probe()
    source.poll()
    dcgm.gpus = {}
    s = {(f.metric.name, labels): value for f in source.poll() for labels, value in f.samples}
    assert s[("blackwell_gpu_up", ("0", H200[54]))] == 0
    assert source.not_ready()


def test_fb_reserved_field_253_is_exported_apart_from_used() -> None:
    s = poll({0: {**H200, 252: 0, 253: 616}})
    assert s[("blackwell_gpu_memory_used_bytes", ("0",))] == 0
    assert s[("blackwell_gpu_memory_reserved_bytes", ("0",))] == 616 * 2**20
