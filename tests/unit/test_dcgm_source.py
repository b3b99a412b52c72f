"""The optional dcgm source: field ids mapped onto the catalog, blanks skipped, a missing DCGM explained.

DCGM is not installed here, so the reader is a stand-in with the shape of the bindings'
``DcgmReader.GetLatestGpuValuesAsFieldIdDict()``: GPU id -> field id -> value (blank sentinels
included, as DCGM sends them for fields a GPU does not support).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from exporter.snapshot import Snapshot
from exporter.sources.base import PollError
from exporter.sources.dcgm import DcgmConfig, DcgmSource, is_blank

INT_BLANK = 0x7FFFFFF0
FP_BLANK = 140737488355328.0


class Reader:
    def __init__(self, values: Mapping[int, Mapping[int, Any]]) -> None:
        self.values = values
        self.closed = False

    def read(self) -> Mapping[int, Mapping[int, Any]]:
        return self.values

    def close(self) -> None:
        self.closed = True


H200 = {50: "NVIDIA H200", 54: "GPU-1b78982c-0e04-daa0-7189-44a219fa7d37", 57: "00000000:00:06.0",
        85: "96.00.A5.00.1A", 52: 0, 100: 1980, 101: 3201, 150: 36, 140: 37, 155: 81.4, 156: 5_472_925,
        164: 700.0, 203: 93, 204: 19, 250: 143771, 252: 600, 112: 0x4 | 0x1, 396: 0,
        1004: 0.54, 1005: FP_BLANK, 286: INT_BLANK}


def poll(values: Mapping[int, Mapping[int, Any]]) -> dict[tuple[str, tuple[str, ...]], float]:
    source = DcgmSource(DcgmConfig(enabled=True), reader_factory=lambda: Reader(values))
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
    reader = Reader({})

    def broken() -> Mapping[int, Mapping[int, Any]]:
        raise RuntimeError("DCGM_ST_CONNECTION_NOT_VALID")

    reader.read = broken  # type: ignore[method-assign]
    source = DcgmSource(DcgmConfig(enabled=True), reader_factory=lambda: reader)
    source.probe()
    with pytest.raises(PollError, match="CONNECTION_NOT_VALID"):
        source.poll()
    source.close()
    assert reader.closed


def test_dcgm_is_off_by_default() -> None:
    assert DcgmConfig().enabled is False


# -- blackwell_gpu_up from what DCGM says about the GPU -----------------------------------------------

INT64_BLANK = 0x7FFFFFFFFFFFFFF0
INT64_NOT_SUPPORTED = INT64_BLANK + 2
LOST = {**H200, 100: INT_BLANK, 101: INT_BLANK, 150: INT64_BLANK, 155: FP_BLANK, 203: INT_BLANK, 204: INT_BLANK,
        252: INT_BLANK}  # what DCGM's cache holds once every NVML call on the GPU fails


def test_a_gpu_whose_last_xid_is_79_is_down_and_readyz_says_so() -> None:
    reader = Reader({0: {**H200, 230: 79}, 1: {**H200, 54: "GPU-other", 52: 1, 230: 48}})
    source = DcgmSource(DcgmConfig(enabled=True), reader_factory=lambda: reader)
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
    reader = Reader({0: H200})
    source = DcgmSource(DcgmConfig(enabled=True), reader_factory=lambda: reader)
    source.probe()
    source.poll()
    reader.values = {}
    s = {(f.metric.name, labels): value for f in source.poll() for labels, value in f.samples}
    assert s[("blackwell_gpu_up", ("0", H200[54]))] == 0
    assert source.not_ready()


def test_fb_reserved_field_253_is_exported_apart_from_used() -> None:
    s = poll({0: {**H200, 252: 0, 253: 616}})
    assert s[("blackwell_gpu_memory_used_bytes", ("0",))] == 0
    assert s[("blackwell_gpu_memory_reserved_bytes", ("0",))] == 616 * 2**20
