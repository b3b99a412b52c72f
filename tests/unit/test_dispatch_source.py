"""The dispatch state-file protocol: sampler side (accumulator, atomic writes) and source side."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from exporter.dispatch_table import KernelClassifier
from exporter.inprocess.accumulator import Accumulator
from exporter.inprocess.state import FORMAT, write_atomic
from exporter.snapshot import Snapshot
from exporter.sources.base import PartialPollError, PollError
from exporter.sources.dispatch import DispatchConfig, DispatchSource

TABLE = KernelClassifier.load()
NOW = 1_800_000_000.0
BF16 = "nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT"
FP8 = "nvjet_sm90_qqtst_128x128_128x6_2x1_v_bz_coopA_algo2_TNT"
FP4 = "bmm_Bfloat16_E2m1E2m1_Fp32_t128x16x256u2_et128x16_m128x16x64_cga1x1x1_16dp256b_TN_transOut_schedS_bN_dynBatch_sm100a"
SOFTMAX = "void at::native::(anonymous namespace)::cunn_SoftMaxForwardReg<float>"


def accumulator(process: str = "rank0", clock=lambda: NOW) -> Accumulator:
    labels = {0: ("3", "GPU-aaaa"), 1: ("5", "GPU-bbbb")}
    return Accumulator(TABLE.classify, TABLE.explain, labels.__getitem__, process, 0.01, 30.0, clock=clock)


def source(directory: Path, now: float = NOW, stale_after: float = 120.0) -> DispatchSource:
    return DispatchSource(DispatchConfig(enabled=True, state_dir=directory, stale_after=stale_after),
                          clock=lambda: now)


def samples(families) -> dict[tuple[str, tuple[str, ...]], float]:
    return {(f.metric.name, labels): value for f in families for labels, value in f.samples}


def test_records_are_summed_per_nvml_gpu_and_precision_and_non_gemms_only_count_as_kernels():
    acc = accumulator()
    acc.add_records([(BF16, 0, 0, 2000), (FP8, 0, 0, 1000), (FP8, 1, 0, 1000), (FP4, 1, 0, 500),
                     (SOFTMAX, 0, 0, 100)])
    acc.add_window(0.3, dropped=2)
    state = acc.state()
    assert state["gpus"]["3"]["gemm_launches"] == {"fp4": 0, "fp8": 1, "16bit": 1, "other": 0}
    assert state["gpus"]["3"]["kernels"] == 3
    assert state["gpus"]["3"]["kernel_seconds"] == pytest.approx(3.1e-6)
    assert state["gpus"]["5"]["gemm_launches"]["fp4"] == 1
    assert state["gpus"]["5"]["uuid"] == "GPU-bbbb"
    assert (state["windows"], state["sampled_seconds"], state["dropped_records"]) == (1, 0.3, 2)


def test_records_flushed_before_the_kernel_ended_are_counted_as_incomplete_not_as_launches():
    acc = accumulator()
    acc.add_records([(BF16, 0, 500, 0)])
    state = acc.state()
    assert state["records"] == 1 and state["incomplete_records"] == 1 and state["gpus"] == {}


def test_gemms_the_table_does_not_know_are_listed_for_the_operator():
    acc = accumulator()
    acc.add_records([("my_custom_gemm_kernel", 0, 0, 10)] * 3)
    assert acc.state()["unrecognized_gemms"] == {"my_custom_gemm_kernel": 3}
    assert acc.state()["gpus"]["3"]["gemm_launches"]["other"] == 3


def test_the_source_exports_what_the_sampler_wrote(tmp_path):
    acc = accumulator()
    acc.add_records([(BF16, 0, 0, 2000), (FP8, 0, 0, 1000), (FP8, 0, 0, 1000)])
    acc.add_window(0.3, dropped=0)
    write_atomic(tmp_path / "rank0.json", acc.state())
    got = samples(source(tmp_path).poll())
    assert got[("blackwell_gemm_kernel_launches_total", ("3", "fp8"))] == 2
    assert got[("blackwell_gemm_kernel_launches_total", ("3", "16bit"))] == 1
    assert got[("blackwell_gemm_kernel_seconds_total", ("3", "fp8"))] == pytest.approx(2e-6)
    assert got[("blackwell_dispatch_kernel_launches_total", ("3",))] == 3
    assert got[("blackwell_dispatch_sampler_sampled_seconds_total", ("rank0",))] == 0.3
    assert got[("blackwell_dispatch_sampler_duty_cycle_ratio", ("rank0",))] == 0.01
    assert got[("blackwell_dispatch_sampler_state_age_seconds", ("rank0",))] == 0


def test_two_processes_on_one_gpu_are_summed_and_reported_separately(tmp_path):
    for name in ("rank0", "rank1"):
        acc = accumulator(name)
        acc.add_records([(FP4, 1, 0, 100)])
        write_atomic(tmp_path / f"{name}.json", acc.state())
    families = source(tmp_path).poll()
    got = samples(families)
    assert got[("blackwell_gemm_kernel_launches_total", ("5", "fp4"))] == 2
    assert ("blackwell_dispatch_sampler_windows_total", ("rank1",)) in got
    Snapshot.of("dispatch", families)  # every family is one the dispatch source may fill


def test_no_state_file_means_the_source_is_down_and_says_how_to_start_the_sampler(tmp_path):
    with pytest.raises(PollError, match="start_sampler") as err:
        source(tmp_path).poll()
    assert err.value.reason == "missing"
    with pytest.raises(PollError) as err:
        source(tmp_path / "absent").poll()
    assert err.value.reason == "missing"


def test_a_torn_state_file_is_refused_as_torn(tmp_path):
    acc = accumulator()
    text = json.dumps(acc.state())
    (tmp_path / "rank0.json").write_text(text[: len(text) // 2])
    with pytest.raises(PollError, match="torn or not JSON") as err:
        source(tmp_path).poll()
    assert err.value.reason == "torn"


def test_a_stale_state_file_is_refused_with_its_age_and_pid(tmp_path):
    acc = accumulator(clock=lambda: NOW - 600)
    write_atomic(tmp_path / "rank0.json", acc.state())
    with pytest.raises(PollError, match=rf"stale: last written 600s ago .*pid {os.getpid()}") as err:
        source(tmp_path).poll()
    assert err.value.reason == "stale"


def test_a_dead_processs_stale_file_does_not_hide_the_live_ones(tmp_path):
    write_atomic(tmp_path / "pid1.json", accumulator("dead", clock=lambda: NOW - 600).state())
    live = accumulator("live")
    live.add_records([(FP8, 0, 0, 1000)])
    write_atomic(tmp_path / "pid2.json", live.state())
    got = samples(source(tmp_path).poll())
    assert got[("blackwell_gemm_kernel_launches_total", ("3", "fp8"))] == 1


def test_a_torn_file_next_to_a_good_one_is_a_partial_result(tmp_path):
    good = accumulator("live")
    good.add_records([(FP8, 0, 0, 1000)])
    write_atomic(tmp_path / "pid2.json", good.state())
    (tmp_path / "pid3.json").write_text('{"format": "blackwell-dis')
    with pytest.raises(PartialPollError) as err:
        source(tmp_path).poll()
    assert err.value.reason == "torn"
    assert samples(err.value.families)[("blackwell_gemm_kernel_launches_total", ("3", "fp8"))] == 1


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda s: s.update(format="something-else"), "not a dispatch state file"),
    (lambda s: s.update(version=99), "state version 99"),
    (lambda s: s["gpus"]["3"]["gemm_launches"].update(fp8=-1), r"gemm_launches.fp8: expected a non-negative"),
    (lambda s: s.update(gpus=[]), "gpus must be a mapping"),
    (lambda s: s.update(windows="many"), "windows: expected a non-negative number"),
])
def test_a_state_file_with_wrong_contents_is_refused_as_invalid(tmp_path, mutate, message):
    acc = accumulator()
    acc.add_records([(FP8, 0, 0, 10)])
    state = acc.state()
    mutate(state)
    (tmp_path / "rank0.json").write_text(json.dumps(state))
    with pytest.raises(PollError, match=message) as err:
        source(tmp_path).poll()
    assert err.value.reason == "invalid"


def test_atomic_writes_never_show_a_reader_a_partial_file(tmp_path):
    acc = accumulator()
    acc.add_records([(BF16, 0, 0, 10)] * 2000)  # a state big enough to need several write() calls
    path = tmp_path / "rank0.json"
    write_atomic(path, acc.state())
    stop = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        while not stop.is_set():
            write_atomic(path, acc.state())

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
    assert [p.name for p in tmp_path.iterdir()] == ["rank0.json"]  # no temporary files left behind
