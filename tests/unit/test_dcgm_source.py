"""The optional dcgm source: field ids mapped onto the catalog, blanks left out, lost GPUs and a dead host engine
reported as such, a missing DCGM explained.

DCGM is not installed here, so the bindings are ``tests.dcgm_fake.FakeDcgm(...).bindings``: modules with the
names and behaviour of DCGM's own (``pydcgm``, ``dcgm_agent.dcgmGetLatestValues`` with its ctypes callback
over ``c_dcgmFieldValue_v1`` records, ``DCGMError`` subclasses per ``DCGM_ST_*`` code, ``dcgmvalue``'s
sentinels), so the source runs the code it runs on a real installation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from exporter import promtext
from exporter.catalog.dcgm_compat import FIELDS as COMPAT_FIELDS
from exporter.snapshot import Snapshot
from exporter.sources.base import PollError
from exporter.sources.dcgm import FIELDS as DCGM_FIELDS
from exporter.sources.dcgm import DcgmConfig, DcgmSource
from tests.dcgm_fake import FP64_BLANK, H200, INT64_BLANK, INT64_NOT_SUPPORTED, ST_GPU_IS_LOST, FakeDcgm, ValueStatus
from tests.support import FakeClock, scheduled

GPU1 = {**H200, 52: 1, 54: "GPU-2c0ffee0-0e04-daa0-7189-44a219fa7d38", 57: "00000000:00:07.0", 156: 6_000_000}

Samples = dict[tuple[str, tuple[str, ...]], float]


def connected(dcgm: FakeDcgm, **config: Any) -> DcgmSource:
    source = DcgmSource(DcgmConfig(enabled=True, **config), bindings=dcgm.bindings)
    source.probe()
    return source


def samples(source: DcgmSource) -> Samples:
    families = source.poll()
    Snapshot.of("dcgm", families)
    return {(f.metric.name, labels): value for f in families for labels, value in f.samples}


def poll(gpus: Mapping[int, Mapping[int, Any]]) -> Samples:
    return samples(connected(FakeDcgm(gpus)))


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


def test_blank_values_and_error_statuses_are_left_out_not_exported_as_huge_numbers() -> None:
    s = poll({0: {**H200, 1005: FP64_BLANK, 253: ValueStatus(-14)}})  # DRAM activity blank, FB reserved no data
    assert ("blackwell_gpu_dram_bandwidth_utilization_ratio", ("0",)) not in s
    assert ("blackwell_gpu_memory_reserved_bytes", ("0",)) not in s
    assert ("blackwell_c2c_link_up", ("0",)) not in s, "not supported on this GPU"
    assert s[("blackwell_gpu_up", ("0", H200[54]))] == 1


def test_missing_bindings_are_a_clear_probe_error(tmp_path) -> None:
    source = DcgmSource(DcgmConfig(enabled=True, bindings_path=str(tmp_path)))
    with pytest.raises(PollError, match="DCGM Python bindings not found") as err:
        source.probe()
    assert err.value.reason == "import"


def test_a_host_engine_that_is_not_running_at_start_is_a_clear_probe_error() -> None:
    dcgm = FakeDcgm({0: H200})
    dcgm.stop()
    source = DcgmSource(DcgmConfig(enabled=True), bindings=dcgm.bindings)
    with pytest.raises(PollError, match="cannot connect to nv-hostengine at localhost: The connection") as err:
        source.probe()
    assert err.value.reason == "init"


def test_close_releases_the_connection_and_the_watches() -> None:
    dcgm = FakeDcgm({0: H200})
    source = connected(dcgm)
    assert dcgm.open_connections == 1 and 155 in dcgm.watched
    source.close()
    assert dcgm.open_connections == 0 and not dcgm.watched


def test_dcgm_is_off_by_default() -> None:
    assert DcgmConfig().enabled is False


# -- blackwell_gpu_up from what DCGM says about the GPU -----------------------------------------------

def test_a_gpu_that_falls_off_the_bus_is_down_while_the_others_keep_reporting() -> None:
    dcgm = FakeDcgm({0: H200, 1: GPU1})
    source = connected(dcgm)
    before = samples(source)
    dcgm.lose_gpu(0)  # every reading of GPU 0 turns into DCGM's plain blank, as its cache stores it
    s = samples(source)
    assert s[("blackwell_gpu_up", ("0", H200[54]))] == 0, "BlackwellGPULost fires on DCGM sites too"
    assert not [key for key in s if key[1][:1] == ("0",) and key[0] != "blackwell_gpu_up"], "no GPU 0 series left"
    assert s[("blackwell_gpu_up", ("1", GPU1[54]))] == 1
    assert s[("blackwell_gpu_energy_joules_total", ("1",))] == before[("blackwell_gpu_energy_joules_total", ("1",))]
    assert source.not_ready() == [f"GPU 0 ({H200[54]}): every reading DCGM holds for it is blank "
                                  "(the driver did not answer)"]


def test_a_gpu_whose_last_xid_is_79_is_down_and_readyz_says_so() -> None:
    dcgm = FakeDcgm({0: H200, 1: {**GPU1, 230: 48}})
    source = connected(dcgm)
    dcgm.lose_gpu(0, last_xid=79)
    s = samples(source)
    assert s[("blackwell_gpu_up", ("0", H200[54]))] == 0
    assert ("blackwell_gpu_power_watts", ("0",)) not in s
    assert s[("blackwell_gpu_up", ("1", GPU1[54]))] == 1, "another XID is not a lost GPU"
    assert source.not_ready() == [f"GPU 0 ({H200[54]}): last XID 79 (fallen off the bus)"]


def test_xid_79_alone_is_enough_to_report_the_gpu_down() -> None:
    assert poll({0: {**H200, 230: 79}})[("blackwell_gpu_up", ("0", H200[54]))] == 0


def test_a_gpu_is_lost_status_on_each_live_value_is_a_lost_gpu_too() -> None:
    lost = {**H200, **{field: ValueStatus(ST_GPU_IS_LOST) for field in (100, 101, 150, 155, 203, 204, 252)}}
    assert poll({0: lost})[("blackwell_gpu_up", ("0", H200[54]))] == 0


def test_not_supported_fields_are_not_a_failure() -> None:
    unsupported = {**H200, **{field: INT64_NOT_SUPPORTED for field in (100, 101, 150, 203, 204, 252)}}
    s = poll({0: {**unsupported, 155: ValueStatus(-6)}})
    assert s[("blackwell_gpu_up", ("0", H200[54]))] == 1
    assert ("blackwell_gpu_sm_clock_hertz", ("0",)) not in s


def test_a_lost_gpu_that_comes_back_resumes_its_counters_without_going_backwards() -> None:
    dcgm = FakeDcgm({0: H200})
    source = connected(dcgm)
    first = samples(source)[("blackwell_gpu_energy_joules_total", ("0",))]
    dcgm.lose_gpu(0)
    assert ("blackwell_gpu_energy_joules_total", ("0",)) not in samples(source)
    dcgm.gpus[0] = {**H200, 156: H200[156] + 1000}
    s = samples(source)
    assert s[("blackwell_gpu_up", ("0", H200[54]))] == 1
    assert s[("blackwell_gpu_energy_joules_total", ("0",))] == pytest.approx(first + 1.0)


def test_a_gpu_dcgm_stops_listing_stays_reported_down_under_its_uuid() -> None:
    dcgm = FakeDcgm({0: H200})
    source = connected(dcgm)
    source.poll()
    dcgm.gpus = {}
    s = samples(source)
    assert s[("blackwell_gpu_up", ("0", H200[54]))] == 0
    assert source.not_ready() == [f"GPU 0 ({H200[54]}): DCGM no longer lists it"]


def test_fb_reserved_field_253_is_exported_apart_from_used() -> None:
    s = poll({0: {**H200, 252: 0, 253: 616}})
    assert s[("blackwell_gpu_memory_used_bytes", ("0",))] == 0
    assert s[("blackwell_gpu_memory_reserved_bytes", ("0",))] == 616 * 2**20


# -- nv-hostengine dies and comes back ---------------------------------------------------------------------

def test_a_dead_host_engine_fails_the_poll_with_a_clear_message_not_every_gpu_down() -> None:
    dcgm = FakeDcgm({0: H200, 1: GPU1})
    source = connected(dcgm)
    samples(source)
    dcgm.stop()
    with pytest.raises(PollError, match=r"lost the connection to nv-hostengine at localhost \(The connection to "
                                        r"the host engine is not valid any longer\); is it running\?") as err:
        source.poll()
    assert err.value.reason == "unreachable"
    assert source.not_ready() == [], "no GPU is reported lost for a host engine that is down"
    with pytest.raises(PollError, match="lost the connection"):
        source.poll()  # still down: reconnecting fails the same way


def test_the_source_reconnects_when_the_host_engine_comes_back() -> None:
    dcgm = FakeDcgm({0: H200})
    source = connected(dcgm)
    first = samples(source)[("blackwell_gpu_energy_joules_total", ("0",))]
    dcgm.stop()
    with pytest.raises(PollError):
        source.poll()
    dcgm.start()
    dcgm.gpus[0][156] = H200[156] + 2000
    s = samples(source)
    assert s[("blackwell_gpu_up", ("0", H200[54]))] == 1
    assert s[("blackwell_gpu_energy_joules_total", ("0",))] == pytest.approx(first + 2.0)
    assert dcgm.connections == 2 and dcgm.open_connections == 1 and 155 in dcgm.watched, "watches set up again"


def test_under_the_scheduler_a_dead_host_engine_marks_the_source_down_and_keeps_the_last_counters() -> None:
    dcgm = FakeDcgm({0: H200})
    clock = FakeClock()
    runner, store = scheduled(DcgmSource(DcgmConfig(enabled=True, interval=10.0), bindings=dcgm.bindings), clock)

    def served() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        exposition = promtext.parse(store.current().text)
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in exposition.samples}

    energy = ("blackwell_gpu_energy_joules_total", (("gpu", "0"),))
    up = ("blackwell_exporter_source_up", (("source", "dcgm"),))
    runner.run_once()
    good = served()[energy]
    dcgm.stop()
    clock.advance(10)
    runner.run_once()
    now = served()
    assert now[up] == 0 and now[energy] == good, "the last good counters are served, not lost"
    assert now[("blackwell_exporter_source_errors_total", (("reason", "unreachable"), ("source", "dcgm")))] == 1
    dcgm.start()
    dcgm.gpus[0][156] = H200[156] + 500
    for _ in range(3):  # the backoff after one failure waits one interval
        clock.advance(10)
        runner.run_once()
    after = served()
    assert after[up] == 1 and after[energy] == pytest.approx(good + 0.5)


def test_other_dcgm_errors_are_a_poll_error_that_names_them() -> None:
    dcgm = FakeDcgm({0: H200})
    source = connected(dcgm)
    dcgm.bindings.dcgm_agent.dcgmGetLatestValues = _raises(dcgm, -3)
    with pytest.raises(PollError, match="DCGM read failed: DCGM Error with code -3") as err:
        source.poll()
    assert err.value.reason == "error"


def _raises(dcgm: FakeDcgm, code: int):
    def latest(*_: Any) -> int:
        raise dcgm.bindings.dcgm_structs.DCGMError(code)
    return latest


def test_int64_blank_sentinels_are_told_apart_from_values() -> None:
    s = poll({0: {**H200, 202: INT64_BLANK - 1}})  # the largest value that is not a sentinel is a value
    assert s[("blackwell_gpu_pcie_replay_total", ("0",))] == float(INT64_BLANK - 1)


def test_a_dcgm_field_the_compat_rows_also_read_means_the_same_reading_in_the_same_unit():
    # The source's field table and exporter/catalog/dcgm_compat.py both say what a DCGM field id holds;
    # the compat row scales our unit into DCGM's, the source's table DCGM's into ours.
    shared = [field for field in COMPAT_FIELDS if field.reading[0] and field.legacy_id in DCGM_FIELDS]
    assert shared, "the two tables share fields"
    for field in shared:
        metric, labels, scale = DCGM_FIELDS[field.legacy_id]
        assert (metric, labels) == field.reading, f"DCGM field {field.legacy_id}"
        assert scale * field.legacy_scale == pytest.approx(1.0), f"DCGM field {field.legacy_id} ({field.legacy_unit})"
