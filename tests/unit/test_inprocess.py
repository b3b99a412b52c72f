"""The in-process sampler: one call to start, never breaks the serving process, duty-cycled windows.

CUPTI needs a GPU, so these tests put a stand-in ``cupti`` module in ``sys.modules`` that follows
cupti-python's activity API as the sampler uses it (verified on an H200, see
bench/results/dispatch_h200.md): records exist only for kernels launched while the activity kind is
enabled, and reach the buffer-completed callback when the sampler flushes.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import sys
import threading
import time
import types

import pytest

import exporter.inprocess as inprocess
from exporter.dispatch_reader import StateReader
from exporter.inprocess.sampler import DispatchSampler
from exporter.inprocess.state import VERSION


class _Kind(enum.IntEnum):
    CONCURRENT_KERNEL = 10


class FakeCupti(types.SimpleNamespace):
    def __init__(self) -> None:
        super().__init__(ActivityKind=_Kind)
        self.enabled = False
        self.pending: list = []
        self.completed = None
        self.lock = threading.Lock()

    def activity_register_callbacks(self, requested, completed) -> None:
        assert requested() == (8 * 1024 * 1024, 0)
        self.completed = completed

    def activity_enable(self, kind) -> None:
        self.enabled = True

    def activity_disable(self, kind) -> None:
        self.enabled = False

    def launch(self, name: str, device: int = 0, ns: int = 1000) -> None:
        with self.lock:
            if self.enabled:
                t = time.time_ns()
                self.pending.append(types.SimpleNamespace(kind=_Kind.CONCURRENT_KERNEL, name=name, device_id=device,
                                                          start=t, end=t + ns))

    def activity_flush_all(self, flag: int) -> None:
        with self.lock:
            records, self.pending = self.pending, []
        if records:
            self.completed(records)

    def activity_get_num_dropped_records(self, context, stream, pointer) -> None:
        return None


@pytest.fixture
def fake_cupti(monkeypatch):
    monkeypatch.delenv("CUDA_INJECTION64_PATH", raising=False)
    fake = FakeCupti()
    package = types.ModuleType("cupti")
    package.cupti = fake
    monkeypatch.setitem(sys.modules, "cupti", package)
    monkeypatch.setitem(sys.modules, "cupti.cupti", fake)
    yield fake
    inprocess.stop_sampler()


def test_without_cupti_python_the_sampler_logs_how_to_install_it_and_its_state_file_says_why(
        monkeypatch, tmp_path, caplog):
    monkeypatch.delenv("CUDA_INJECTION64_PATH", raising=False)
    monkeypatch.setitem(sys.modules, "cupti", None)  # import cupti raises ImportError
    with caplog.at_level(logging.WARNING, logger="blackwell_exporter.inprocess"):
        sampler = inprocess.start_sampler(state_dir=tmp_path, process="rank0")
    state = json.loads((tmp_path / "rank0.json").read_text())
    inprocess.stop_sampler()
    assert not sampler.sampling
    assert "pip install 'blackwell-exporter[cupti]'" in caplog.text
    assert (state["version"], state["status"], state["reason"]) == (VERSION, "unavailable", "cupti_missing")
    assert "cupti-python is not importable" in state["detail"]


def test_an_unwritable_state_directory_is_a_log_line_and_the_sampler_runs_on(fake_cupti, tmp_path, caplog):
    (tmp_path / "a_file").write_text("")
    sampler = DispatchSampler(tmp_path / "a_file" / "dir" / "p.json", duty_cycle=0.5, period=0.05, process="p")
    with caplog.at_level(logging.WARNING):
        sampler.start()  # does not raise
        time.sleep(0.3)
        windows = sampler.accumulator.windows
        sampler.stop()
    assert windows >= 2  # it went on sampling, trying to write after each window
    assert "cannot write to" in caplog.text and "cannot write the final state to" in caplog.text


def test_the_process_name_follows_the_launchers_local_rank(monkeypatch):
    for variable in ("BLACKWELL_DISPATCH_PROCESS", "LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID",
                     "MPI_LOCALRANKID"):
        monkeypatch.delenv(variable, raising=False)
    assert inprocess.process_name().startswith("pid")
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "3")
    assert inprocess.process_name() == "rank3"
    monkeypatch.setenv("BLACKWELL_DISPATCH_PROCESS", "triton-llama")
    assert inprocess.process_name() == "triton-llama"


def test_one_call_starts_one_sampler_that_writes_its_state_file_at_once(fake_cupti, tmp_path):
    sampler = inprocess.start_sampler(state_dir=tmp_path, process="rank0")
    assert sampler is not None and inprocess.start_sampler() is sampler
    state = json.loads((tmp_path / "rank0.json").read_text())
    assert (state["windows"], state["duty_cycle"], state["period_seconds"]) == (0, 0.01, 30.0)


def test_kernels_are_recorded_only_inside_windows_and_the_coverage_matches_the_duty_cycle(fake_cupti, tmp_path):
    sampler = DispatchSampler(tmp_path / "p.json", duty_cycle=0.25, period=0.2, process="p", seed=7)
    sampler.start()
    launched = 0
    began = time.monotonic()
    while time.monotonic() - began < 2.0:
        fake_cupti.launch("nvjet_sm90_qqtst_128x128_128x6_2x1_v_bz_coopA_algo2_TNT")
        fake_cupti.launch("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT")
        launched += 2
        time.sleep(0.0005)
    elapsed = time.monotonic() - began
    last_written = json.loads((tmp_path / "p.json").read_text())
    sampler.stop()
    state = StateReader().read(tmp_path / "p.json")  # as the exporter reads it, its names from the names file
    assert (state["status"], state["reason"]) == ("exited", "exited"), "the final write tells the exporter it ended"
    assert state["windows"] >= last_written["windows"]
    names, counts = state["gpus"]["0"]["names"], state["gpus"]["0"]["counts"]
    gemms = {"fp8": counts[2 * names.index("nvjet_sm90_qqtst_128x128_128x6_2x1_v_bz_coopA_algo2_TNT")],
             "16bit": counts[2 * names.index("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT")]}
    assert gemms["fp8"] == gemms["16bit"] > 0
    assert state["windows"] >= 5
    coverage = state["sampled_seconds"] / elapsed
    assert 0.1 < coverage < 0.45  # duty 0.25 with jittered idle time
    assert sum(gemms.values()) < 0.6 * launched  # the idle time really was idle


def test_an_error_inside_cupti_stops_sampling_but_not_the_process(fake_cupti, tmp_path, caplog):
    def broken(kind):
        raise RuntimeError("CUPTI_ERROR_NOT_INITIALIZED")

    fake_cupti.activity_enable = broken
    sampler = DispatchSampler(tmp_path / "p.json", duty_cycle=0.5, period=0.05, process="p", seed=1)
    with caplog.at_level(logging.ERROR, logger="blackwell_exporter.inprocess"):
        sampler.start()
        wait = time.monotonic() + 2.0
        while sampler.sampling and time.monotonic() < wait:
            time.sleep(0.01)
        time.sleep(0.2)  # a few more periods: it keeps writing, without windows
    state = json.loads((tmp_path / "p.json").read_text())
    sampler.stop()
    assert "dispatch sampler paused after a CUPTI error" in caplog.text
    assert (state["status"], state["reason"]) == ("paused", "cupti_error")
    assert "CUPTI_ERROR_NOT_INITIALIZED" in state["detail"] and state["windows_skipped"] >= 1


def test_a_second_cupti_subscriber_is_reported_as_multiple_subscribers(fake_cupti, tmp_path):
    def taken(requested, completed):
        raise RuntimeError("CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED")

    fake_cupti.activity_register_callbacks = taken
    sampler = inprocess.start_sampler(state_dir=tmp_path, process="rank0")
    state = json.loads((tmp_path / "rank0.json").read_text())
    assert not sampler.sampling and (state["status"], state["reason"]) == ("unavailable", "multiple_subscribers")


def test_a_setting_that_does_not_parse_is_one_log_line_and_the_default(fake_cupti, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("BLACKWELL_DISPATCH_DUTY_CYCLE", "ten percent")
    with caplog.at_level(logging.WARNING, logger="blackwell_exporter.inprocess"):
        sampler = inprocess.start_sampler(state_dir=tmp_path, process="rank0")
    assert sampler.duty_cycle == inprocess.DEFAULT_DUTY_CYCLE
    assert "BLACKWELL_DISPATCH_DUTY_CYCLE='ten percent' is not a number" in caplog.text


def test_a_name_a_live_process_of_another_pid_writes_gets_this_pids_suffix(fake_cupti, tmp_path):
    (tmp_path / "rank0.json").write_text(json.dumps({"pid": 1, "status": "sampling", "updated_at": time.time()}))
    sampler = inprocess.start_sampler(state_dir=tmp_path, process="rank0")
    assert sampler.state_path.name == f"rank0-pid{os.getpid()}.json"


def test_bad_settings_are_refused_before_anything_starts(tmp_path):
    with pytest.raises(ValueError, match="duty_cycle"):
        DispatchSampler(tmp_path / "p.json", duty_cycle=1.5, period=10, process="p")
    with pytest.raises(ValueError, match="period"):
        DispatchSampler(tmp_path / "p.json", duty_cycle=0.1, period=-1, process="p")


def test_in_a_process_the_injection_library_samples_the_python_sampler_stands_aside_in_its_own_file(
        fake_cupti, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_INJECTION64_PATH", "/opt/blackwell/inject/libblackwell-inject.so")
    sampler = inprocess.start_sampler(state_dir=tmp_path, process="rank0")
    state = json.loads((tmp_path / "rank0-python.json").read_text())
    assert not sampler.sampling and fake_cupti.completed is None, "it never subscribed to CUPTI"
    assert (state["status"], state["reason"]) == ("unavailable", "disabled")
    assert "injection library" in state["detail"]
