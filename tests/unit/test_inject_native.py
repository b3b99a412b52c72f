"""The CUPTI injection library (native/) as a guest in a host process, without a GPU.

Each test starts a real Python process that loads the built library the way the CUDA driver
does (dlopen + InitializeInjection) with a stand-in libcupti (native/testing/fake_cupti.c,
compiled here) or none at all, and reads the state file and names files it writes with the
exporter's reader (docs/dispatch-state.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from exporter.dispatch_reader import StateReader
from exporter.inject import library_path
from exporter.inprocess.state import VERSION
from exporter.sources.dispatch import DispatchConfig, DispatchSource

ROOT = Path(__file__).resolve().parents[2]

HOST = textwrap.dedent("""
    import ctypes, json, os, sys, time
    ctypes.CDLL("libstdc++.so.6", mode=ctypes.RTLD_GLOBAL)  # a C++ host, as the serving runtimes are
    library = ctypes.CDLL(os.environ["INJECT_LIBRARY"])
    assert library.InitializeInjection() == 1
    state_file = os.path.join(os.environ["BLACKWELL_DISPATCH_STATE_DIR"], os.environ.get("EXPECT_FILE", ""))
    def read_state():
        with open(state_file, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
""")


@pytest.fixture(scope="module")
def fake_cupti(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fake") / "libcupti.so.13"
    subprocess.run(["gcc", "-std=c11", "-shared", "-fPIC", "-O1", str(ROOT / "native/testing/fake_cupti.c"),
                    "-o", str(out)], check=True)
    return out


def run_host(tmp_path: Path, body: str, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    state_dir = tmp_path / "dispatch"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("BLACKWELL_", "FAKE_CUPTI"))}
    environment.update({"INJECT_LIBRARY": str(library_path()), "BLACKWELL_DISPATCH_STATE_DIR": str(state_dir),
                        "BLACKWELL_DISPATCH_PROCESS": "host", "EXPECT_FILE": "host.json", **env})
    process = subprocess.run([sys.executable, "-c", HOST + textwrap.dedent(body)], env=environment,
                             capture_output=True, text=True, timeout=60)
    return process, state_dir


def names_file(tmp_path: Path, names: list[bytes]) -> str:
    path = tmp_path / "names"
    path.write_bytes(b"".join(name + b"\0" for name in names))
    return str(path)


def name_counts(gpu: dict) -> dict[str, list[int]]:
    """A GPU entry as the exporter reads it, as name -> [launches, gpu_ns]."""
    counts = gpu["counts"]
    return {name: counts[2 * i:2 * i + 2] for i, name in enumerate(gpu["names"])}


def final_state(state_dir: Path, name: str = "host.json") -> dict:
    return StateReader().read(state_dir / name)


def state_files(state_dir: Path) -> list[str]:
    """The files of the directory but the names files."""
    return sorted(p.name for p in state_dir.iterdir() if not p.name.endswith(".names"))


def test_without_cupti_the_host_runs_on_and_the_file_says_cupti_missing(tmp_path: Path) -> None:
    process, state_dir = run_host(tmp_path, "print(json.dumps(read_state()))",
                                  BLACKWELL_DISPATCH_CUPTI=str(tmp_path / "no/libcupti.so.13"))
    assert process.returncode == 0, process.stderr
    while_running = json.loads(process.stdout)
    assert (while_running["status"], while_running["reason"]) == ("unavailable", "cupti_missing")
    assert "no/libcupti.so.13" in while_running["detail"]
    assert while_running["writer"] == "inject" and while_running["version"] == VERSION
    assert process.stderr.count("no libcupti loadable") == 1
    assert final_state(state_dir)["status"] == "exited"


def test_kernel_names_are_demangled_escaped_and_counted_once_per_launch(tmp_path: Path, fake_cupti: Path) -> None:
    names = [b"_ZN7cutlass6KernelI4GemmEEvT_", b'quote"and\\backslash', b"tab\tnew\nline", "ünïcode".encode(),
             b"bad\xff\xfebytes", b"!incomplete"]
    process, state_dir = run_host(tmp_path, "time.sleep(1.0)", BLACKWELL_DISPATCH_CUPTI=str(fake_cupti),
                                  FAKE_CUPTI_NAMES=names_file(tmp_path, names), FAKE_CUPTI_DEVICE="3",
                                  BLACKWELL_DISPATCH_PERIOD="0.1", BLACKWELL_DISPATCH_DUTY_CYCLE="0.5")
    assert process.returncode == 0, process.stderr
    state = final_state(state_dir)
    windows = state["windows"]
    assert windows >= 3 and state["status"] == "exited" and state["dropped_records"] == 0
    gpu = state["gpus"]["3"]  # no CUDA here: the label falls back to the CUDA ordinal
    assert name_counts(gpu) == {
        "void cutlass::Kernel<Gemm>(Gemm)": [windows, 100 * windows],
        'quote"and\\backslash': [windows, 100 * windows],
        "tab\tnew\nline": [windows, 100 * windows],
        "ünïcode": [windows, 100 * windows],
        "bad\ufffd\ufffdbytes": [windows, 100 * windows],
    }
    assert gpu["kernels"] == 5 * windows and gpu["kernel_ns"] == 500 * windows
    assert state["records"] == 6 * windows and state["incomplete_records"] == windows


def test_the_exporter_classifies_what_the_library_wrote(tmp_path: Path, fake_cupti: Path) -> None:
    bf16, fp8 = b"nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT", b"nvjet_sm90_qqtst_128x128_128x6_2x1_v_bz_coopA_algo2_TNT"
    live = tmp_path / "live"  # the file as the exporter finds it while the process runs
    live.mkdir()
    process, _ = run_host(tmp_path, f"""
        time.sleep(0.6)
        import shutil
        shutil.copy(state_file, {str(live)!r})  # then its names files: appended to, they hold what it lists
        for name in os.listdir(os.path.dirname(state_file)):
            if name.endswith(".names"):
                shutil.copy(os.path.join(os.path.dirname(state_file), name), {str(live)!r})
    """,
                          BLACKWELL_DISPATCH_CUPTI=str(fake_cupti),
                          FAKE_CUPTI_NAMES=names_file(tmp_path, [bf16, bf16, bf16, fp8, b"softmax"]),
                          BLACKWELL_DISPATCH_PERIOD="0.1", BLACKWELL_DISPATCH_DUTY_CYCLE="0.5")
    assert process.returncode == 0, process.stderr
    windows = final_state(live)["windows"]
    assert windows >= 2
    families = DispatchSource(DispatchConfig(enabled=True, state_dir=live)).poll()
    got = {(f.metric.name, labels): value for f in families for labels, value in f.samples}
    assert got[("blackwell_gemm_kernel_launches_total", ("0", "16bit"))] == 3 * windows
    assert got[("blackwell_gemm_kernel_launches_total", ("0", "fp8"))] == windows
    assert got[("blackwell_dispatch_kernel_launches_total", ("0",))] == 5 * windows


def test_names_beyond_max_names_go_to_the_overflow_bucket(tmp_path: Path, fake_cupti: Path) -> None:
    names = [f"kernel_{i}".encode() for i in range(10)]
    process, state_dir = run_host(tmp_path, "time.sleep(0.6)", BLACKWELL_DISPATCH_CUPTI=str(fake_cupti),
                                  FAKE_CUPTI_NAMES=names_file(tmp_path, names), BLACKWELL_DISPATCH_MAX_NAMES="4",
                                  BLACKWELL_DISPATCH_PERIOD="0.1", BLACKWELL_DISPATCH_DUTY_CYCLE="0.5")
    assert process.returncode == 0, process.stderr
    state = final_state(state_dir)
    windows, gpu = state["windows"], state["gpus"]["0"]
    assert state["max_names"] == 4
    assert list(gpu["names"]) == ["kernel_0", "kernel_1", "kernel_2", "kernel_3"]  # in the order first seen
    assert len(gpu["counts"]) == 2 * len(gpu["names"])
    assert gpu["overflow"] == [6 * windows, 600 * windows]
    assert gpu["kernels"] == 10 * windows


def test_each_name_is_appended_to_the_names_file_once_and_the_state_lists_exactly_those_bytes(
        tmp_path: Path, fake_cupti: Path) -> None:
    names = [f"kernel_{i}".encode() for i in range(5)] + [b'quote"and\nnewline']
    process, state_dir = run_host(tmp_path, "time.sleep(0.8)", BLACKWELL_DISPATCH_CUPTI=str(fake_cupti),
                                  FAKE_CUPTI_NAMES=names_file(tmp_path, names), FAKE_CUPTI_DEVICE="2",
                                  BLACKWELL_DISPATCH_PERIOD="0.1", BLACKWELL_DISPATCH_DUTY_CYCLE="0.5")
    assert process.returncode == 0, process.stderr
    raw = json.loads((state_dir / "host.json").read_bytes())
    assert raw["version"] == VERSION and raw["windows"] >= 3  # many writes, each after more launches of the same names
    gpu = raw["gpus"]["2"]
    assert "names" not in gpu and gpu["names_file"].startswith(".host.2.") and gpu["names_file"].endswith(".names")
    lines = (state_dir / gpu["names_file"]).read_bytes()
    assert gpu["names_bytes"] == len(lines) and gpu["names_listed"] == 6 == lines.count(b"\n")
    assert [json.loads(line) for line in lines.splitlines()] == [name.decode() for name in names]
    assert os.stat(state_dir / gpu["names_file"]).st_mode & 0o777 == 0o644  # the exporter runs as another user


def test_bad_settings_fall_back_to_the_defaults_with_one_line_each(tmp_path: Path) -> None:
    process, state_dir = run_host(tmp_path, "pass", BLACKWELL_DISPATCH_DUTY_CYCLE="lots",
                                  BLACKWELL_DISPATCH_PERIOD="-5", BLACKWELL_DISPATCH_MAX_NAMES="0",
                                  BLACKWELL_DISPATCH_PROCESS="../escape", EXPECT_FILE="",
                                  BLACKWELL_DISPATCH_CUPTI=str(tmp_path / "none.so"))
    assert process.returncode == 0, process.stderr
    for variable in ("DUTY_CYCLE=lots", "PERIOD=-5", "MAX_NAMES=0", "PROCESS=../escape"):
        assert process.stderr.count(f"BLACKWELL_DISPATCH_{variable}") == 1, process.stderr
    (written,) = state_dir.iterdir()
    state = json.loads(written.read_text())
    assert written.name == f"pid{state['pid']}.json"
    assert (state["duty_cycle"], state["period_seconds"], state["max_names"]) == (0.1, 30, 2048)


def test_duty_cycle_zero_disables_sampling(tmp_path: Path) -> None:
    process, _ = run_host(tmp_path, "print(json.dumps(read_state()))", BLACKWELL_DISPATCH_DUTY_CYCLE="0")
    state = json.loads(process.stdout)
    assert (state["status"], state["reason"], state["duty_cycle"]) == ("unavailable", "disabled", 0)


def test_another_cupti_subscriber_skips_windows_and_says_why(tmp_path: Path, fake_cupti: Path) -> None:
    process, _ = run_host(tmp_path, "time.sleep(0.8); print(json.dumps(read_state()))",
                          BLACKWELL_DISPATCH_CUPTI=str(fake_cupti), FAKE_CUPTI_OTHER_SUBSCRIBER="1",
                          BLACKWELL_DISPATCH_PERIOD="0.1", BLACKWELL_DISPATCH_DUTY_CYCLE="0.5")
    assert process.returncode == 0, process.stderr
    state = json.loads(process.stdout)
    assert (state["status"], state["reason"], state["windows"]) == ("unavailable", "multiple_subscribers", 0)
    assert state["windows_skipped"] >= 3
    assert "MULTIPLE_SUBSCRIBERS" in state["detail"]
    assert process.stderr.count("window skipped") == 1


CUDA_CALLS = """
    cuda = ctypes.CDLL(os.environ["BLACKWELL_DISPATCH_CUPTI"])  # the same libcupti the library opened
    calls = [(getattr(cuda, name), int(cbid)) for name, cbid in
             (call.split(":") for call in os.environ["HOST_CALLS"].split())]
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        for call, cbid in calls:
            call(cbid)
        time.sleep(0.001)
    print(cuda.fake_finalize_count(), cuda.fake_launches_while_disabled())
"""
# Callback ids (cupti_runtime_cbid.h, cupti_driver_cbid.h): the calls a decode step makes.
CUDA_GET_LAST_ERROR, CUDA_LAUNCH_KERNEL, CUDA_GRAPH_LAUNCH, CU_CTX_SYNCHRONIZE = (
    "fake_runtime_call:10", "fake_runtime_call:211", "fake_runtime_call:311", "fake_driver_call:17")


def test_cupti_detaches_after_each_window_at_a_runtime_call_that_launches_nothing_and_attaches_again(
        tmp_path: Path, fake_cupti: Path) -> None:
    process, state_dir = run_host(tmp_path, CUDA_CALLS, HOST_CALLS=f"{CUDA_LAUNCH_KERNEL} {CUDA_GET_LAST_ERROR}",
                                  BLACKWELL_DISPATCH_CUPTI=str(fake_cupti), FAKE_CUPTI_NAMES=names_file(tmp_path, [b"gemm"]),
                                  BLACKWELL_DISPATCH_PERIOD="0.1", BLACKWELL_DISPATCH_DUTY_CYCLE="0.3")
    assert process.returncode == 0, process.stderr
    state = final_state(state_dir)
    windows, (finalized, launches_while_disabled) = state["windows"], map(int, process.stdout.split())
    assert windows >= 4 and state["windows_skipped"] == 0
    assert windows - 1 <= finalized <= windows and state["detaches"] == finalized
    assert launches_while_disabled == 0  # disabled and finalized in one callback: no launch in between
    assert name_counts(state["gpus"]["0"]) == {"gemm": [windows, 100 * windows]}  # each window attached afresh


def test_never_detached_at_a_launch_nor_a_driver_call_and_then_cupti_stays_attached(tmp_path: Path,
                                                                                      fake_cupti: Path) -> None:
    """Finalizing at a launch's exit breaks the launched work; a driver call may be nested in a runtime call."""
    process, state_dir = run_host(tmp_path, CUDA_CALLS,
                                  HOST_CALLS=f"{CUDA_LAUNCH_KERNEL} {CUDA_GRAPH_LAUNCH} {CU_CTX_SYNCHRONIZE}",
                                  BLACKWELL_DISPATCH_CUPTI=str(fake_cupti), FAKE_CUPTI_NAMES=names_file(tmp_path, [b"gemm"]),
                                  BLACKWELL_DISPATCH_PERIOD="0.1", BLACKWELL_DISPATCH_DUTY_CYCLE="0.3")
    assert process.returncode == 0, process.stderr
    state = final_state(state_dir)
    assert process.stdout.split()[0] == "0" and state["detaches"] == 0
    assert state["windows"] >= 3 and state["windows_skipped"] == 0  # each window unsubscribed, the next one opened
    assert name_counts(state["gpus"]["0"]) == {"gemm": [state["windows"], 100 * state["windows"]]}


def test_detach_0_keeps_cupti_attached_between_windows(tmp_path: Path, fake_cupti: Path) -> None:
    process, state_dir = run_host(tmp_path, CUDA_CALLS, HOST_CALLS=CUDA_GET_LAST_ERROR, BLACKWELL_DISPATCH_DETACH="0",
                                  BLACKWELL_DISPATCH_CUPTI=str(fake_cupti), FAKE_CUPTI_NAMES=names_file(tmp_path, [b"gemm"]),
                                  BLACKWELL_DISPATCH_PERIOD="0.1", BLACKWELL_DISPATCH_DUTY_CYCLE="0.3")
    assert process.returncode == 0, process.stderr
    state = final_state(state_dir)
    assert process.stdout.split()[0] == "0" and state["detaches"] == 0 and state["windows"] >= 3


def test_the_first_window_waits_for_the_start_delay(tmp_path: Path, fake_cupti: Path) -> None:
    process, _ = run_host(tmp_path, """
        time.sleep(0.4)
        before = read_state()["windows"]
        time.sleep(1.6)
        print(json.dumps([before, read_state()["windows"]]))
    """, BLACKWELL_DISPATCH_CUPTI=str(fake_cupti), FAKE_CUPTI_NAMES=names_file(tmp_path, [b"gemm"]),
                          BLACKWELL_DISPATCH_START_DELAY="1.0", BLACKWELL_DISPATCH_PERIOD="0.1",
                          BLACKWELL_DISPATCH_DUTY_CYCLE="0.5")
    assert process.returncode == 0, process.stderr
    before, after = json.loads(process.stdout)
    assert before == 0 and after >= 2


def test_readers_only_ever_see_whole_files(tmp_path: Path, fake_cupti: Path) -> None:
    names = [f"kernel_with_a_rather_long_name_{i}".encode() for i in range(300)]
    process, state_dir = run_host(tmp_path, """
        replaced, parsed, inode = 0, 0, None
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            now = os.stat(state_file).st_ino
            replaced += inode is not None and now != inode
            inode = now
            read_state()  # raises on a torn file
            parsed += 1
        print(json.dumps({"replaced": replaced, "parsed": parsed}))
    """, BLACKWELL_DISPATCH_CUPTI=str(fake_cupti), FAKE_CUPTI_NAMES=names_file(tmp_path, names),
                                  BLACKWELL_DISPATCH_PERIOD="0.02", BLACKWELL_DISPATCH_DUTY_CYCLE="0.5",
                                  # this host makes no CUDA call: each window would wait 100 ms for a detach site
                                  BLACKWELL_DISPATCH_DETACH="0")
    assert process.returncode == 0, process.stderr
    seen = json.loads(process.stdout)
    assert seen["replaced"] > 5 and seen["parsed"] > 100  # replaced by rename, many times
    assert state_files(state_dir) == ["host.json"]  # no temporary files left


def test_an_unwritable_state_directory_is_one_line_and_the_host_runs_on(tmp_path: Path, fake_cupti: Path) -> None:
    (tmp_path / "a_file").write_text("")
    process, _ = run_host(tmp_path, "time.sleep(0.5)", BLACKWELL_DISPATCH_STATE_DIR=str(tmp_path / "a_file/dir"),
                          BLACKWELL_DISPATCH_CUPTI=str(fake_cupti), BLACKWELL_DISPATCH_PERIOD="0.05")
    assert process.returncode == 0
    assert process.stderr.count("cannot write the state file") == 1, process.stderr


def test_a_forked_child_never_samples_nor_touches_the_parents_file(tmp_path: Path, fake_cupti: Path) -> None:
    process, state_dir = run_host(tmp_path, """
        before = open(state_file, "rb").read()
        child = os.fork()
        if child == 0:
            time.sleep(0.3)
            sys.exit(0)  # a normal exit: the child's atexit handlers run
        os.waitpid(child, 0)
        print(json.dumps({"unchanged": open(state_file, "rb").read() == before, "child": child}))
    """, BLACKWELL_DISPATCH_CUPTI=str(fake_cupti), BLACKWELL_DISPATCH_PERIOD="3600")
    assert process.returncode == 0, process.stderr
    seen = json.loads(process.stdout)
    assert seen["unchanged"]
    assert process.stderr.count("forked child: not sampled") == 1
    assert state_files(state_dir) == ["host.json"]
    assert not [p for p in state_dir.iterdir() if f".{seen['child']}-" in p.name]  # nor a names file of its own
    assert final_state(state_dir)["status"] == "exited"


def test_two_live_processes_with_one_name_write_two_files(tmp_path: Path, fake_cupti: Path) -> None:
    first, state_dir = run_host(tmp_path, """
        import subprocess
        subprocess.run([sys.executable, "-c", os.environ["SECOND"]], check=True)  # while this one lives
    """, BLACKWELL_DISPATCH_CUPTI=str(fake_cupti), BLACKWELL_DISPATCH_PERIOD="3600",
                                SECOND=HOST + "print(os.getpid())")
    assert first.returncode == 0, first.stderr
    files = state_files(state_dir)
    assert "host.json" in files and len(files) == 2
    assert any(name.startswith("host-pid") for name in files)


HEADER_WHEELS = {"12.8": ["nvidia-cuda-cupti-cu12==12.8.90", "nvidia-cuda-runtime-cu12==12.8.90"],
                 "13.0": ["nvidia-cuda-cupti==13.0.85", "nvidia-cuda-runtime==13.0.96"]}


@pytest.mark.parametrize("version", sorted(HEADER_WHEELS))
def test_the_library_compiles_against_cupti_headers_of_both_lines(version: str, tmp_path: Path) -> None:
    """The static assertions in native/inject.c pin the record offsets the library reads."""
    download = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(tmp_path),
                               *HEADER_WHEELS[version]], capture_output=True, text=True, timeout=300)
    if download.returncode != 0:
        pytest.skip(f"header wheels not downloadable here: {download.stderr[-300:]}")
    for wheel in tmp_path.glob("*.whl"):
        subprocess.run([sys.executable, "-m", "zipfile", "-e", str(wheel), str(tmp_path / "x")], check=True)
    includes = [f"-I{p.parent}" for name in ("cupti.h", "cuda.h") for p in (tmp_path / "x").glob(f"nvidia/*/include/{name}")]
    assert len(includes) == 2
    subprocess.run(["gcc", "-std=c11", "-fsyntax-only", "-Wall", "-Werror", f"-I{ROOT / 'native'}", *includes,
                    "-idirafter", str(ROOT / "native/shim"), str(ROOT / "native/inject.c")], check=True)
