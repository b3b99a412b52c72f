"""The dispatch state file: the Python writer's accumulator, and the source that classifies raw names.

State files are real files in a temporary directory, written as the injection library and the
Python sampler write them (docs/dispatch-state.md): version 4 through ``StateWriter`` (the counts
in the state file, the names in a names file beside it), versions 3 and 2 as JSON as older
writers wrote them; the source is driven through poll().
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from exporter.dispatch_table import DEFAULT_TABLE
from exporter.inprocess.accumulator import Accumulator
from exporter.inprocess.state import FORMAT, VERSION, StateWriter, write_atomic
from exporter.snapshot import Snapshot
from exporter.sources.base import PartialPollError, PollError
from exporter.sources.dispatch import DispatchConfig, DispatchSource

NOW = 1_800_000_000.0
BF16 = "nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT"
FP8 = "nvjet_sm90_qqtst_128x128_128x6_2x1_v_bz_coopA_algo2_TNT"
FP4 = "bmm_Bfloat16_E2m1E2m1_Fp32_t128x16x256u2_et128x16_m128x16x64_cga1x1x1_16dp256b_TN_transOut_schedS_bN_dynBatch_sm100a"
SOFTMAX = "void at::native::(anonymous namespace)::cunn_SoftMaxForwardReg<float>"
CUSTOM_GEMM = "my_custom_gemm_kernel"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def state(names: dict[str, list[int]], pid: int = 100, started_at: float = NOW, updated_at: float | None = None,
          status: str = "sampling", reason: str = "", gpu: str = "0", overflow: tuple[int, int] = (0, 0),
          extra_kernels: int = 0, version: int = VERSION, **header) -> dict:
    """A state file as the writers hold it (names inline: ``write`` writes version 4 as the writers do, 3 and 2 as older
    ones did): all kernels counted, GEMMs among them."""
    launches = sum(p[0] for p in names.values()) + overflow[0] + extra_kernels
    nanoseconds = sum(p[1] for p in names.values()) + overflow[1]
    listed = {"names": names} if version == 2 else {"names": list(names), "counts": [n for p in names.values() for n in p]}
    return {"format": FORMAT, "version": version, "writer": "inject", "writer_version": "0.1.0", "pid": pid,
            "process": "rank0", "started_at": started_at, "updated_at": NOW if updated_at is None else updated_at,
            "status": status, "reason": reason, "detail": header.pop("detail", ""), "duty_cycle": 0.1,
            "period_seconds": 30.0, "windows": 3, "windows_skipped": 0, "sampled_seconds": 9.0, "records": launches,
            "incomplete_records": 0, "dropped_records": 0, "max_names": 2048,
            "gpus": {gpu: {"uuid": "GPU-aaaa", "kernels": launches, "kernel_ns": nanoseconds, **listed,
                           "overflow": list(overflow)}}, **header}


_writers: dict[tuple[Path, int, float], StateWriter] = {}  # one per process, as in a serving process


def write(directory: Path, name: str, content: dict) -> Path:
    path = directory / f"{name}.json"
    if content.get("version") == VERSION and all("names" in gpu for gpu in content["gpus"].values()):  # as held
        _writers.setdefault((path, content["pid"], content["started_at"]), StateWriter(path)).write(content)
    else:
        write_atomic(path, content)
    return path


def source(directory: Path, clock: Clock | None = None, table: Path = DEFAULT_TABLE,
           stale_after: float = 120.0, budget: float = 60.0) -> DispatchSource:
    return DispatchSource(DispatchConfig(enabled=True, state_dir=directory, stale_after=stale_after, table=table,
                                         classify_budget_seconds=budget), clock=clock or Clock())


def samples(families) -> dict[tuple[str, tuple[str, ...]], float]:
    return {(f.metric.name, labels): value for f in families for labels, value in f.samples}


def launches(got, precision: str, gpu: str = "0") -> float:
    return got[("blackwell_gemm_kernel_launches_total", (gpu, precision))]


def poll(src: DispatchSource) -> dict:
    families = src.poll()
    Snapshot.of("dispatch", families)  # every family is one the dispatch source may fill
    return samples(families)


# -- raw names to classified metrics ----------------------------------------------------------------

@pytest.mark.parametrize("version", [4, 3, 2])
def test_raw_names_are_classified_per_gpu_and_precision_and_non_gemms_count_only_as_kernels(tmp_path, version):
    write(tmp_path, "rank0", state({BF16: [2, 4000], FP8: [3, 3000], FP4: [1, 500], SOFTMAX: [7, 700]}, version=version))
    got = poll(source(tmp_path))
    assert (launches(got, "16bit"), launches(got, "fp8"), launches(got, "fp4"), launches(got, "other")) == (2, 3, 1, 0)
    assert got[("blackwell_gemm_kernel_seconds_total", ("0", "fp8"))] == pytest.approx(3e-6)
    assert got[("blackwell_dispatch_kernel_launches_total", ("0",))] == 13
    assert got[("blackwell_dispatch_kernel_seconds_total", ("0",))] == pytest.approx(8.2e-6)
    assert got[("blackwell_dispatch_sampler_sampled_seconds_total", ("rank0",))] == 9.0
    assert got[("blackwell_dispatch_sampler_status", ("rank0", "inject", "sampling", ""))] == 1
    assert got[("blackwell_dispatch_table_last_reload_successful", ())] == 1


def test_two_processes_on_one_gpu_are_summed_and_their_health_is_reported_apart(tmp_path):
    write(tmp_path, "rank0", state({FP4: [2, 100]}, pid=1))
    write(tmp_path, "rank1", state({FP4: [3, 100]}, pid=2))
    got = poll(source(tmp_path))
    assert launches(got, "fp4") == 5
    assert {labels for (name, labels) in got if name == "blackwell_dispatch_sampler_windows_total"} == {
        ("rank0",), ("rank1",)}


def test_gemms_no_rule_knows_are_counted_as_other_and_named_on_the_landing_page(tmp_path):
    write(tmp_path, "rank0", state({CUSTOM_GEMM: [4, 40], FP8: [1, 10]}))
    src = source(tmp_path)
    got = poll(src)
    assert launches(got, "other") == 4
    assert got[("blackwell_dispatch_unrecognized_gemm_launches_total", ("0",))] == 4
    assert got[("blackwell_dispatch_unrecognized_gemm_names", ("0",))] == 1
    assert any(CUSTOM_GEMM in note and "4 launches" in note for note in src.notes())


def test_overflow_counts_as_kernels_and_is_exported_but_never_as_a_gemm(tmp_path):
    write(tmp_path, "rank0", state({FP8: [1, 10]}, overflow=(50, 500)))
    got = poll(source(tmp_path))
    assert got[("blackwell_dispatch_overflow_kernel_launches_total", ("0",))] == 50
    assert got[("blackwell_dispatch_kernel_launches_total", ("0",))] == 51
    assert sum(launches(got, p) for p in ("fp4", "fp8", "16bit", "other")) == 1


def test_a_writer_that_cannot_sample_says_why_as_a_series_and_on_the_landing_page(tmp_path):
    write(tmp_path, "rank0", state({}, status="unavailable", reason="multiple_subscribers", windows_skipped=0,
                                   detail="CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED: torch.profiler holds CUPTI"))
    content = json.loads((tmp_path / "rank0.json").read_text())
    content["windows_skipped"] = 6
    write(tmp_path, "rank0", content)
    src = source(tmp_path)
    got = poll(src)
    assert got[("blackwell_dispatch_sampler_status", ("rank0", "inject", "unavailable", "multiple_subscribers"))] == 1
    assert got[("blackwell_dispatch_sampler_windows_skipped_total", ("rank0",))] == 6
    assert any("torch.profiler holds CUPTI" in note for note in src.notes())


# -- the table is data, re-read while the exporter runs -------------------------------------------

def test_a_table_change_applies_to_new_launches_without_a_restart_and_no_counter_goes_down(tmp_path):
    table = tmp_path / "table.yaml"
    shutil.copy(DEFAULT_TABLE, table)
    states = tmp_path / "states"
    write(states, "rank0", state({CUSTOM_GEMM: [10, 100]}))
    src = source(states, table=table)
    assert launches(poll(src), "other") == 10
    text = table.read_text().replace("precision:\n", "precision:\n  - name: custom-fp8\n    precision: fp8\n"
                                                  "    pattern: '^my_custom_gemm'\n", 1)
    table.write_text(text)
    os.utime(table, ns=(1, 2))  # a different modification time, whatever the file system's clock resolution
    write(states, "rank0", state({CUSTOM_GEMM: [15, 150]}))
    got = poll(src)
    assert (launches(got, "other"), launches(got, "fp8")) == (10, 5)  # the past stays, new launches follow the table
    assert got[("blackwell_dispatch_unrecognized_gemm_names", ("0",))] == 0


def custom_gemm_as_fp8(table: Path, stamp: int) -> None:
    text = DEFAULT_TABLE.read_text().replace("precision:\n", "precision:\n  - name: custom-fp8\n    precision: fp8\n"
                                                              "    pattern: '^my_custom_gemm'\n", 1)
    table.write_text(text)
    os.utime(table, ns=(stamp, stamp))


def test_a_table_change_reclassifies_names_already_seen_even_in_a_file_not_rewritten_since(tmp_path):
    table = tmp_path / "table.yaml"
    shutil.copy(DEFAULT_TABLE, table)
    states = tmp_path / "states"
    names = {CUSTOM_GEMM: [10, 100], f"{CUSTOM_GEMM}_2": [1, 10], FP8: [5, 50]}
    write(states, "rank0", state(names))
    src = source(states, table=table)
    got = poll(src)
    assert got[("blackwell_dispatch_unrecognized_gemm_names", ("0",))] == 2
    custom_gemm_as_fp8(table, 1)
    got = poll(src)  # the file is as it was: nothing new to count, but the names the table now knows are known
    assert (launches(got, "other"), launches(got, "fp8")) == (11, 5)
    assert got[("blackwell_dispatch_unrecognized_gemm_names", ("0",))] == 0
    assert not any("unrecognized GEMM" in note for note in src.notes())
    write(states, "rank0", state({**names, CUSTOM_GEMM: [14, 140], f"{CUSTOM_GEMM}_2": [3, 30]}))
    got = poll(src)  # only the launches since the change follow the new table
    assert (launches(got, "other"), launches(got, "fp8")) == (11, 11)
    shutil.copy(DEFAULT_TABLE, table)
    os.utime(table, ns=(2, 2))
    write(states, "rank0", state({**names, CUSTOM_GEMM: [20, 200], f"{CUSTOM_GEMM}_2": [3, 30]}))
    got = poll(src)  # back to the shipped table: the decision remembered under the fp8 table is not reused
    assert (launches(got, "other"), launches(got, "fp8")) == (17, 11)
    assert got[("blackwell_dispatch_unrecognized_gemm_names", ("0",))] == 2


@pytest.mark.parametrize("version", [4, 3, 2])
def test_a_poll_counts_only_what_moved_among_many_names_and_names_a_writer_appends(tmp_path, version):
    names = {f"{BF16}_{i}": [i, 10 * i] for i in range(500)}
    write(tmp_path, "rank0", state(names, version=version))
    src = source(tmp_path)
    assert launches(poll(src), "16bit") == sum(range(500))
    names[f"{BF16}_7"] = [7 + 3, 70 + 30]
    names[f"{BF16}_499"] = [499 + 1, 4990]
    names[FP8] = [4, 40]  # first seen since the last write: listed after the others
    write(tmp_path, "rank0", state(names, version=version))
    got = poll(src)
    assert (launches(got, "16bit"), launches(got, "fp8")) == (sum(range(500)) + 4, 4)
    assert got[("blackwell_gemm_kernel_seconds_total", ("0", "16bit"))] == pytest.approx((10 * sum(range(500)) + 30) / 1e9)


def test_a_writer_that_reorders_or_drops_names_is_matched_by_name_and_counts_nothing_twice(tmp_path):
    write(tmp_path, "rank0", state({BF16: [2, 20], FP8: [3, 30], FP4: [1, 10]}))
    src = source(tmp_path)
    poll(src)
    write(tmp_path, "rank0", state({FP4: [1, 10], FP8: [5, 50]}))  # BF16 dropped, the others reordered
    got = poll(src)
    assert (launches(got, "16bit"), launches(got, "fp8"), launches(got, "fp4")) == (2, 5, 1)
    write(tmp_path, "rank0", state({FP4: [1, 10], FP8: [5, 50], BF16: [6, 60]}))  # BF16 is back
    got = poll(src)
    assert (launches(got, "16bit"), launches(got, "fp8"), launches(got, "fp4")) == (6, 5, 1)


def test_a_bad_table_keeps_the_last_good_one_and_says_why(tmp_path):
    table = tmp_path / "table.yaml"
    shutil.copy(DEFAULT_TABLE, table)
    states = tmp_path / "states"
    write(states, "rank0", state({FP8: [1, 10]}))
    src = source(states, table=table)
    poll(src)
    table.write_text("version: 1\nprecision:\n  - {name: broken, precision: fp8, pattern: '(unclosed'}\n")
    write(states, "rank0", state({FP8: [3, 30]}))
    got = poll(src)
    assert launches(got, "fp8") == 3
    assert got[("blackwell_dispatch_table_last_reload_successful", ())] == 0
    assert any("broken" in note and "bad regular expression" in note for note in src.notes())


def test_without_any_good_table_the_source_is_down_naming_the_file(tmp_path):
    table = tmp_path / "table.yaml"
    table.write_text("version: 7\n")
    write(tmp_path, "rank0", state({FP8: [1, 10]}))
    with pytest.raises(PollError, match=f"{table}: expected a mapping with version: 1") as err:
        source(tmp_path, table=table).poll()
    assert err.value.reason == "table"


# -- counters never go backwards --------------------------------------------------------------------

def test_a_restarted_process_adds_to_the_totals_and_its_old_counts_stay(tmp_path):
    write(tmp_path, "rank0", state({FP8: [100, 1000]}, pid=1))
    src = source(tmp_path)
    assert launches(poll(src), "fp8") == 100
    write(tmp_path, "rank0", state({FP8: [7, 70]}, pid=2, started_at=NOW + 5))  # same name, a new process
    got = poll(src)
    assert launches(got, "fp8") == 107
    assert got[("blackwell_dispatch_kernel_launches_total", ("0",))] == 107


def test_an_exited_process_keeps_its_last_counts_loses_its_series_and_its_file_is_removed(tmp_path):
    write(tmp_path, "rank0", state({FP8: [10, 100]}))
    write(tmp_path, "rank1", state({BF16: [1, 10]}, pid=2))
    src = source(tmp_path)
    poll(src)
    write(tmp_path, "rank0", state({FP8: [12, 120]}, status="exited", reason="exited"))
    got = poll(src)
    assert launches(got, "fp8") == 12  # the final write's counts were added
    assert not (tmp_path / "rank0.json").exists()
    assert ("blackwell_dispatch_sampler_windows_total", ("rank0",)) not in got
    got = poll(src)
    assert launches(got, "fp8") == 12


def test_a_stale_file_is_folded_in_removed_and_its_process_series_end(tmp_path):
    clock = Clock()
    write(tmp_path, "rank0", state({FP8: [10, 100]}))
    write(tmp_path, "rank1", state({BF16: [1, 10]}, pid=2))
    src = source(tmp_path, clock)
    poll(src)
    write(tmp_path, "rank0", state({FP8: [11, 110]}))  # its last write, then it was killed
    clock.now += 600
    write(tmp_path, "rank1", state({BF16: [2, 20]}, pid=2, updated_at=clock.now))
    got = poll(src)
    assert launches(got, "fp8") == 11 and launches(got, "16bit") == 2
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".rank1.")] == ["rank1.json"]  # names too
    assert {labels for (name, labels) in got if name == "blackwell_dispatch_sampler_status"} == {
        ("rank1", "inject", "sampling", "")}


def test_names_files_are_removed_once_no_live_process_lists_them_and_no_waiting_name_needs_them(tmp_path):
    clock = Clock(os.stat(tmp_path).st_mtime)  # the files' own clock: a names file is as old as its last write
    write(tmp_path, "rank0", state({FP8: [1, 10]}, pid=1))
    names_file = next(tmp_path.glob(".rank0.*.names"))
    orphan = tmp_path / ".rank9.0.99-1.names"  # a writer killed between its first names and its first state file
    orphan.write_text('"x_gemm"\n')
    src = source(tmp_path, clock, stale_after=60.0)
    assert launches(poll(src), "fp8") == 1
    assert orphan.exists() and names_file.exists()  # both too recent
    clock.now += 61
    write(tmp_path, "rank0", state({FP8: [2, 20]}, pid=1, updated_at=clock.now, status="exited", reason="exited"))
    with pytest.raises(PartialPollError, match="no live dispatch state files") as err:
        src.poll()
    assert launches(samples(err.value.families), "fp8") == 2
    assert list(tmp_path.iterdir()) == []  # the state file, its names file and the orphan


def test_names_that_wait_keep_their_names_file_after_their_process_is_gone(tmp_path):
    clock = Clock(os.stat(tmp_path).st_mtime + 3600)
    write(tmp_path, "rank0", state(many_names(3000), pid=1, updated_at=clock.now))
    src = source(tmp_path, clock, budget=TIGHT)
    poll(src)
    write(tmp_path, "rank0", state(many_names(3000), pid=1, updated_at=clock.now, status="exited", reason="exited"))
    with pytest.raises(PartialPollError, match="no live dispatch state files"):
        src.poll()
    assert not (tmp_path / "rank0.json").exists() and list(tmp_path.glob(".rank0.*.names"))  # still needed
    got, whole = poll_until_classified(src), poll(source_of_all(tmp_path, many_names(3000)))
    assert {key: value for key, value in counters(got).items() if key[0].endswith("_total")} == {
        key: value for key, value in counters(whole).items() if key[0].endswith("_total")}
    assert list(tmp_path.glob(".rank0.*.names")) == []


def source_of_all(directory: Path, names: dict[str, list[int]]) -> DispatchSource:
    """A fresh source that classifies every name of ``names`` at its first poll."""
    other = directory / "all"
    other.mkdir()
    write(other, "rank0", state(names, pid=1))
    return source(other)


def test_a_process_taken_for_stale_that_writes_again_goes_on_from_what_was_counted(tmp_path):
    clock = Clock()
    write(tmp_path, "rank0", state({FP8: [10, 100]}))
    src = source(tmp_path, clock)
    poll(src)
    clock.now += 600  # stopped (SIGSTOP, a debugger) for longer than stale_after
    with pytest.raises(PartialPollError):
        src.poll()
    write(tmp_path, "rank0", state({FP8: [13, 130]}, updated_at=clock.now))  # the same process resumes
    assert launches(poll(src), "fp8") == 13


def test_a_file_removed_by_its_writer_takes_nothing_away(tmp_path):
    write(tmp_path, "rank0", state({FP8: [10, 100]}))
    write(tmp_path, "rank1", state({BF16: [1, 10]}, pid=2))
    src = source(tmp_path)
    poll(src)
    (tmp_path / "rank0.json").unlink()
    got = poll(src)
    assert launches(got, "fp8") == 10
    assert ("blackwell_dispatch_sampler_windows_total", ("rank0",)) not in got


def test_when_every_process_is_gone_the_totals_are_still_served_while_the_source_says_why(tmp_path):
    write(tmp_path, "rank0", state({FP8: [10, 100]}))
    src = source(tmp_path)
    poll(src)
    write(tmp_path, "rank0", state({FP8: [12, 120]}, status="exited", reason="exited"))
    for _ in range(2):
        with pytest.raises(PartialPollError, match="inject-path") as err:
            src.poll()
        assert err.value.reason == "missing"
        assert launches(samples(err.value.families), "fp8") == 12


def test_files_of_processes_that_ended_before_the_exporter_started_are_removed_uncounted(tmp_path):
    write(tmp_path, "old", state({FP8: [99, 990]}, pid=1, started_at=NOW - 900, updated_at=NOW - 600))
    write(tmp_path, "rank0", state({BF16: [1, 10]}, pid=2))
    got = poll(source(tmp_path))
    assert launches(got, "fp8") == 0 and launches(got, "16bit") == 1
    assert not (tmp_path / "old.json").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may remove files from a read-only directory")
def test_a_finished_file_that_cannot_be_removed_is_counted_once_and_then_ignored(tmp_path):
    write(tmp_path, "rank0", state({FP8: [10, 100]}))
    src = source(tmp_path)
    poll(src)
    write(tmp_path, "rank0", state({FP8: [12, 120]}, status="exited", reason="exited"))
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(PartialPollError):  # no live process left
            src.poll()
        with pytest.raises(PartialPollError) as err:
            src.poll()
    finally:
        tmp_path.chmod(0o755)
    assert launches(samples(err.value.families), "fp8") == 12
    assert any("rank0.json" in note and "ignored" in note for note in src.notes())


def test_a_corrupt_file_of_a_live_process_is_a_partial_error_naming_it_and_drops_no_counter(tmp_path):
    write(tmp_path, "rank0", state({FP8: [10, 100]}))
    write(tmp_path, "rank1", state({BF16: [5, 50]}, pid=2))
    src = source(tmp_path)
    poll(src)
    (tmp_path / "rank1.json").write_text('{"format": "blackwell-dis')
    write(tmp_path, "rank0", state({FP8: [11, 110]}))
    with pytest.raises(PartialPollError, match="rank1.json: torn or not JSON") as err:
        src.poll()
    got = samples(err.value.families)
    assert err.value.reason == "torn"
    assert launches(got, "fp8") == 11 and launches(got, "16bit") == 5
    assert got[("blackwell_dispatch_sampler_windows_total", ("rank1",))] == 3  # its last good series stay


@pytest.mark.parametrize(("version", "which"), [(4, r"\.rank0\.0\..*\.names line 2"), (3, "nvjet_sm90_tst.*")])
def test_a_bad_name_pair_adds_nothing_from_that_file(tmp_path, version, which):
    write(tmp_path, "rank0", state({FP8: [10, 100]}, version=version))
    src = source(tmp_path)
    poll(src)
    write(tmp_path, "rank0", state({FP8: [20, 200], BF16: [-1, 5]}, version=version))
    with pytest.raises(PartialPollError, match=rf"names\['{which}'\]: expected \[launches, gpu_ns\]") as err:
        src.poll()
    assert launches(samples(err.value.families), "fp8") == 10
    write(tmp_path, "rank0", state({FP8: [20, 200], BF16: [1, 5]}, version=version))
    assert launches(poll(src), "fp8") == 20


def test_a_version_1_file_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "rank0.json").write_text(json.dumps({"format": FORMAT, "version": 1, "pid": 1, "updated_at": NOW,
                                                     "gpus": {}}))
    with pytest.raises(PollError, match="older sampler.*restart the serving process") as err:
        source(tmp_path).poll()
    assert err.value.reason == "outdated"


def test_no_state_file_means_the_source_is_down_and_says_how_to_start_sampling(tmp_path):
    with pytest.raises(PollError, match="CUDA_INJECTION64_PATH.*start_sampler") as err:
        source(tmp_path).poll()
    assert err.value.reason == "missing"
    with pytest.raises(PollError) as err:
        source(tmp_path / "absent").poll()
    assert err.value.reason == "missing"


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda s: s.update(format="something-else"), "not a dispatch state file"),
    (lambda s: s.update(version=99), "state version 99"),
    (lambda s: s["gpus"]["0"].update(kernels=-1), r"kernels: expected a non-negative integer"),
    (lambda s: s["gpus"]["0"].update(names={}), "names: must be a list of kernel names"),
    (lambda s: s["gpus"]["0"].update(names=[7]), "names: must be a list of kernel names"),
    (lambda s: s["gpus"]["0"].update(counts=[1]), r"counts: expected a list of two integers per name \(2\), got 1 values"),
    (lambda s: s["gpus"]["0"].update(counts=[1, -10]), r"expected \[launches, gpu_ns\], got \[1, -10\]"),
    (lambda s: s.update(version=2), "names: must be a mapping"),
    (lambda s: s.update(version=2, gpus={"0": {"kernels": 1, "kernel_ns": 1, "names": {FP8: [1]}}}),
     r"names\['nvjet.*'\]: expected \[launches, gpu_ns\], got \[1\]"),
    (lambda s: s.update(version=2, gpus={"0": {"kernels": 1, "kernel_ns": 1, "names": {FP8: [1, 2, 3], BF16: [4]}}}),
     r"names\['nvjet.*'\]: expected \[launches, gpu_ns\], got \[1, 2, 3\]"),
    (lambda s: s["gpus"]["0"].update(overflow=[1]), r"overflow: expected \[launches, gpu_ns\]"),
    (lambda s: s.update(gpus=[]), "gpus must be a mapping"),
    (lambda s: s.update(status="sleeping"), "status 'sleeping'"),
    (lambda s: s.update(windows="many"), "windows: expected a non-negative number"),
])
def test_a_state_file_with_wrong_contents_is_refused_as_invalid(tmp_path, mutate, message):
    content = state({FP8: [1, 10]}, version=3)
    mutate(content)
    (tmp_path / "rank0.json").write_text(json.dumps(content))
    with pytest.raises(PollError, match=message) as err:
        source(tmp_path).poll()
    assert err.value.reason == "invalid"


# -- a bounded poll: names beyond the classification budget wait for the next polls -----------------

TIGHT = 1e-9  # each poll classifies one first batch of names, however fast the machine


def many_names(count: int) -> dict[str, list[int]]:
    """Distinct names of every kind: GEMMs of each precision, an unknown GEMM, a non-GEMM."""
    kinds = (BF16, FP8, FP4, SOFTMAX, CUSTOM_GEMM)
    return {f"{kinds[i % len(kinds)]}_{i}": [1 + i % 7, 10 * (1 + i % 7)] for i in range(count)}


def counters(got: dict) -> dict:
    return {key: value for key, value in got.items()
            if key[0].startswith(("blackwell_gemm", "blackwell_dispatch_kernel", "blackwell_dispatch_unrecognized"))
            and key[0] != "blackwell_dispatch_kernel_names_pending"}


def pending(got: dict) -> float:
    return got[("blackwell_dispatch_kernel_names_pending", ())]


def poll_until_classified(src: DispatchSource, before: dict | None = None, most: int = 100) -> dict:
    """Poll until no name waits; no counter (``*_total``) may go down on the way."""
    for _ in range(most):
        try:
            got = poll(src)
        except PartialPollError as err:
            got = samples(err.families)
        for key, value in (before or {}).items():
            assert not key[0].endswith("_total") or counters(got).get(key, value) >= value, key
        before = counters(got)
        if pending(got) == 0:
            return got
    raise AssertionError(f"names still pending after {most} polls")


def test_a_tight_budget_classifies_part_of_a_poll_and_the_rest_over_the_next_polls_to_the_same_totals(tmp_path):
    names = many_names(3000)
    write(tmp_path, "rank0", state(names))
    bounded, unbounded = source(tmp_path, budget=TIGHT), source(tmp_path)
    first = poll(bounded)
    assert 0 < pending(first) < 3000  # some classified, the rest waiting
    assert sum(launches(first, p) for p in ("fp4", "fp8", "16bit", "other")) < sum(
        launches(poll(unbounded), p) for p in ("fp4", "fp8", "16bit", "other"))
    assert first[("blackwell_dispatch_kernel_launches_total", ("0",))] == sum(p[0] for p in names.values())
    for key in list(names)[::3]:  # the writer goes on: waiting names and classified ones gain launches
        names[key] = [names[key][0] + 5, names[key][1] + 50]
    names[f"{FP8}_late"] = [3, 30]
    write(tmp_path, "rank0", state(names))
    got = poll_until_classified(bounded, counters(first))
    assert counters(got) == counters(poll(unbounded))
    assert got[("blackwell_dispatch_unrecognized_gemm_names", ("0",))] == 600
    assert not any("wait to be classified" in note for note in bounded.notes())


def test_names_two_processes_list_while_they_wait_end_up_in_both_lists_of_unrecognized_names(tmp_path):
    names = many_names(1500)
    write(tmp_path, "rank0", state(names, pid=1))
    write(tmp_path, "rank1", state({**{f"{CUSTOM_GEMM}_only_rank1": [2, 20]}, **names}, pid=2))
    bounded, unbounded = source(tmp_path, budget=TIGHT), source(tmp_path)
    got = poll_until_classified(bounded)
    assert counters(got) == counters(poll(unbounded))
    assert got[("blackwell_dispatch_unrecognized_gemm_names", ("0",))] == 300 + 301  # per process, summed
    assert bounded.notes() == unbounded.notes()


def test_names_waiting_when_their_process_exits_or_restarts_are_counted_all_the_same(tmp_path):
    names = many_names(2000)
    final = {key: [pair[0] + 1, pair[1] + 1] for key, pair in names.items()}
    bounded, unbounded = source(tmp_path / "bounded", budget=TIGHT), source(tmp_path / "unbounded")
    for directory in ("bounded", "unbounded"):  # each source removes the files of finished processes it reads
        write(tmp_path / directory, "rank0", state(names, pid=1))
        write(tmp_path / directory, "rank1", state(names, pid=2))
    poll(unbounded)
    assert pending(poll(bounded)) > 0
    assert any("wait to be classified" in note for note in bounded.notes())
    for directory in ("bounded", "unbounded"):
        write(tmp_path / directory, "rank0", state(final, pid=1, status="exited", reason="exited"))  # then gone
        write(tmp_path / directory, "rank1", state({FP8: [4, 40]}, pid=3, started_at=NOW + 9))  # a new process
    poll(unbounded)
    got = poll_until_classified(bounded)
    assert not (tmp_path / "bounded" / "rank0.json").exists()
    assert counters(got) == counters(poll(unbounded))
    fp8 = sum(pair[0] for key, pair in names.items() if key.startswith(FP8))
    assert launches(got, "fp8") == 2 * fp8 + 400 + 4  # both processes, rank0's last write, the new process


def test_a_writer_that_reorders_and_drops_names_while_they_wait_counts_nothing_twice(tmp_path):
    names = many_names(1500)
    keys = list(names)
    reordered = {key: [names[key][0] + 2, names[key][1] + 20] for key in reversed(keys[500:])}  # the first 500 dropped
    back = {**reordered, **{key: [names[key][0] + 4, names[key][1] + 40] for key in keys[:500]}}  # and back, advanced
    bounded, unbounded = source(tmp_path / "bounded", budget=TIGHT), source(tmp_path / "unbounded")
    for content in (names, reordered, back):
        for directory in ("bounded", "unbounded"):
            write(tmp_path / directory, "rank0", state(content))
        poll(unbounded)
        got = poll(bounded)
    assert pending(got) > 0
    got = poll_until_classified(bounded)
    assert counters(got) == counters(poll(unbounded))
    assert launches(got, "fp8") == sum(pair[0] for key, pair in back.items() if key.startswith(FP8))


def test_a_table_change_while_names_wait_loses_nothing_and_the_waiting_names_follow_the_new_table(tmp_path):
    table = tmp_path / "table.yaml"
    shutil.copy(DEFAULT_TABLE, table)
    states = tmp_path / "states"
    names = many_names(2000)
    write(states, "rank0", state(names))
    bounded = source(states, table=table, budget=TIGHT)
    first = poll(bounded)
    custom_gemm_as_fp8(table, 1)
    got = poll_until_classified(bounded, counters(first))
    gemm = sum(pair[0] for key, pair in names.items() if not key.startswith(SOFTMAX))
    assert sum(launches(got, p) for p in ("fp4", "fp8", "16bit", "other")) == gemm  # each launch counted once
    custom = sum(pair[0] for key, pair in names.items() if key.startswith(CUSTOM_GEMM))
    assert launches(got, "fp8") >= custom  # the custom GEMMs still waiting were classified by the new table
    assert got[("blackwell_dispatch_unrecognized_gemm_names", ("0",))] == 0


def test_after_a_table_change_every_name_waits_for_the_new_table_and_the_unrecognized_list_fills_again(tmp_path):
    table = tmp_path / "table.yaml"
    shutil.copy(DEFAULT_TABLE, table)
    states = tmp_path / "states"
    write(states, "rank0", state(many_names(2000)))
    bounded = source(states, table=table, budget=TIGHT)
    before = poll_until_classified(bounded)
    assert before[("blackwell_dispatch_unrecognized_gemm_names", ("0",))] == 400
    os.utime(table, ns=(5, 5))  # the same rules, a new modification time: read again, nothing decided yet
    changed = poll(bounded)  # the file is as it was: nothing to count, every name to classify again
    assert 0 < pending(changed) < 2000
    assert counters(changed) == {key: value for key, value in counters(before).items()
                                 if key[0] != "blackwell_dispatch_unrecognized_gemm_names"} | {
        key: value for key, value in counters(changed).items() if key[0] == "blackwell_dispatch_unrecognized_gemm_names"}
    got = poll_until_classified(bounded)
    assert counters(got) == counters(before)


def test_the_classification_budget_is_a_positive_number_of_seconds():
    with pytest.raises(ValueError, match="classify_budget_seconds"):
        DispatchConfig(enabled=True, classify_budget_seconds=0)
    assert DispatchConfig(enabled=True).classify_budget_seconds > 0


# -- the Python writer ------------------------------------------------------------------------------

def accumulator(max_names: int = 2048) -> Accumulator:
    labels = {0: ("3", "GPU-aaaa"), 1: ("5", "GPU-bbbb")}
    return Accumulator(labels.__getitem__, "rank0", 0.01, 30.0, max_names=max_names, clock=lambda: NOW)


def test_the_python_accumulator_writes_raw_names_that_the_source_classifies(tmp_path):
    acc = accumulator()
    acc.add_records([(BF16, 0, 0, 2000), (FP8, 0, 0, 1000), (FP8, 1, 0, 1000), (FP4, 1, 0, 500),
                     (SOFTMAX, 0, 0, 100), (FP8, 0, 500, 0)])
    acc.add_window(0.3, dropped=2)
    written = acc.state()
    assert (written["version"], written["writer"], written["status"]) == (VERSION, "python", "sampling")
    assert written["gpus"]["3"]["names"] == [BF16, FP8, SOFTMAX]  # in the order first seen
    assert written["gpus"]["3"]["counts"] == [1, 2000, 1, 1000, 1, 100]
    assert (written["records"], written["incomplete_records"], written["dropped_records"]) == (6, 1, 2)
    StateWriter(tmp_path / "rank0.json").write(written)
    got = poll(source(tmp_path))
    assert launches(got, "fp8", "3") == 1 and launches(got, "16bit", "3") == 1 and launches(got, "fp4", "5") == 1
    assert got[("blackwell_dispatch_kernel_launches_total", ("3",))] == 3


def test_the_python_accumulator_bounds_names_per_gpu_with_an_overflow_bucket():
    acc = accumulator(max_names=2)
    acc.add_records([("a_gemm", 0, 0, 10), ("b_gemm", 0, 0, 10), ("c_gemm", 0, 0, 10), ("a_gemm", 0, 0, 10),
                     ("d_gemm", 0, 0, 5)])
    gpu = acc.state()["gpus"]["3"]
    assert (gpu["names"], gpu["counts"]) == (["a_gemm", "b_gemm"], [2, 20, 1, 10])
    assert gpu["overflow"] == [2, 15] and gpu["kernels"] == 5


def test_atomic_writes_never_show_a_reader_a_partial_file(tmp_path):
    acc = accumulator()
    acc.add_records([(f"{BF16}_{i}", 0, 0, 10) for i in range(2000)])  # big enough to need several write() calls
    path = tmp_path / "rank0.json"
    state_writer = StateWriter(path)
    state_writer.write(acc.state())
    stop = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        while not stop.is_set():
            state_writer.write(acc.state())

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(300):
            assert json.loads(path.read_text())["format"] == FORMAT
    except json.JSONDecodeError as exc:
        errors.append(str(exc))
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".names")] == ["rank0.json"]  # no temporary files


def test_a_file_unreadable_and_unchanged_for_longer_than_stale_after_is_removed(tmp_path):
    clock = Clock()
    write(tmp_path, "rank0", state({FP8: [1, 10]}))
    (tmp_path / "broken.json").write_text("{not json")
    src = source(tmp_path, clock)
    with pytest.raises(PartialPollError, match="broken.json"):
        src.poll()
    clock.now += 121
    write(tmp_path, "rank0", state({FP8: [2, 20]}, updated_at=clock.now))
    assert launches(poll(src), "fp8") == 2
    assert not (tmp_path / "broken.json").exists()


def test_no_exported_counter_ever_decreases_through_restarts_exits_stale_files_and_table_changes(tmp_path):
    """A long random life of three ranks: every counter of every poll is >= the one before."""
    import random

    rng = random.Random(5)
    clock = Clock()
    table = tmp_path / "table.yaml"
    shutil.copy(DEFAULT_TABLE, table)
    states = tmp_path / "states"
    src = source(states, clock, table=table, stale_after=60)
    pool = [BF16, FP8, FP4, SOFTMAX, CUSTOM_GEMM]
    ranks = {name: {"pid": i, "names": {}} for i, name in enumerate(("rank0", "rank1", "rank2"))}
    before: dict = {}
    for step in range(300):
        clock.now += 10
        for name, rank in ranks.items():
            event = rng.random()
            if event < 0.03:  # restart: a new process under the same name
                rank["pid"] += 10
                rank["names"] = {}
            elif event < 0.05:  # killed: its file stops changing
                continue
            for kernel in rng.sample(pool, 2):
                pair = rank["names"].setdefault(kernel, [0, 0])
                pair[0] += rng.randint(0, 5)
                pair[1] += rng.randint(0, 500)
            status = "exited" if event > 0.98 else "sampling"
            write(states, name, state({k: list(v) for k, v in rank["names"].items()}, pid=rank["pid"],
                                      started_at=NOW + rank["pid"], updated_at=clock.now, status=status))
            if status == "exited":  # what comes next under this name is another process
                rank["pid"] += 10
                rank["names"] = {}
        if step % 50 == 25:  # the table moves the custom GEMM between precisions
            fp8_rule = "precision:\n  - {name: custom, precision: fp8, pattern: '^my_custom'}\n"
            text = DEFAULT_TABLE.read_text()
            table.write_text(text.replace("precision:\n", fp8_rule, 1) if step % 100 == 25 else text)
            os.utime(table, ns=(step, step))
        try:
            got = samples(src.poll())
        except PartialPollError as err:
            got = samples(err.families)
        counters = {key: value for key, value in got.items() if key[0].endswith("_total") and "sampler" not in key[0]}
        for key, value in before.items():
            assert counters.get(key, value) >= value, f"{key} went from {value} to {counters.get(key)} at step {step}"
            assert key in counters, f"{key} disappeared at step {step}"
        before = counters


def test_the_landing_page_lists_unrecognized_gemms_and_why_a_writer_is_not_sampling(tmp_path):
    import urllib.request

    from exporter.scheduler import Scheduler
    from exporter.server import ExporterHTTPServer
    from exporter.snapshot import SnapshotStore

    write(tmp_path, "rank0", state({CUSTOM_GEMM: [9, 90]}))
    write(tmp_path, "rank1", state({}, pid=2, status="unavailable", reason="cupti_missing",
                                   detail="no libcupti.so.13 found in /usr/local/cuda/lib64"))
    scheduler = Scheduler([source(tmp_path)], SnapshotStore(), "hardware")
    scheduler.runners["dispatch"].run_once()
    server = ExporterHTTPServer(("127.0.0.1", 0), scheduler)
    server.serve_in_thread()
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/", timeout=5).read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert "<h2>dispatch</h2>" in page
    assert f"unrecognized GEMM on gpu 0 (9 launches): {CUSTOM_GEMM}" in page
    assert "rank1.json (pid 2, inject): unavailable, reason cupti_missing: no libcupti.so.13 found" in page
