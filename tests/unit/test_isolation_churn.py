"""Upstream churn through the scheduler and the served exposition: a Triton process that restarts
(connection refused, then counters reset) and a GPU that falls off the bus and comes back.

The sources' own tests cover their parsing; these check what /metrics shows across the churn.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from exporter import promtext
from exporter.scheduler import SourceRunner
from exporter.snapshot import SnapshotStore
from exporter.sources.nvml.source import NvmlConfig, NvmlSource
from exporter.sources.triton import TritonConfig, TritonSource
from tests.nvml_replay import ReplayBackend
from tests.support import FakeClock as Clock
from tests.support import scheduled

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = (ROOT / "tests" / "fixtures" / "triton" / "cpp_backend_metrics.txt").read_text()
RECORDING = ROOT / "tests" / "fixtures" / "nvml" / "h200x2" / "nvml_probe.json"
OVERLAY = ROOT / "tests" / "fixtures" / "nvml" / "h200x2_overlay.json"


def runner(source, clock: Clock) -> tuple[SourceRunner, SnapshotStore]:
    return scheduled(source, clock)


def served(store: SnapshotStore) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    exposition = promtext.parse(store.current().text)  # strict: a duplicate series would fail here
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in exposition.samples}


class FakeTriton:
    """Triton's metrics endpoint as a server that can be stopped and started again on its port."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.body = FIXTURE
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib naming
                body = fake.body.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        self.server = None


@pytest.fixture
def triton() -> Iterator[FakeTriton]:
    fake = FakeTriton()
    fake.start()
    yield fake
    if fake.server is not None:
        fake.stop()


def test_triton_restart_shows_serving_down_then_reset_counters_and_recovers(triton: FakeTriton) -> None:
    clock = Clock()
    url = f"http://127.0.0.1:{triton.port}/metrics"
    source = TritonSource(TritonConfig(enabled=True, interval=1, timeout=1, endpoints=[{"url": url, "api": False}]),
                          clock=clock)
    run, store = runner(source, clock)
    success = ("blackwell_serving_request_success_total",
               (("endpoint", url), ("model", "tensorrt_llm"), ("version", "1")))
    up = ("blackwell_serving_up", (("endpoint", url), ("runtime", "triton")))
    source_up = ("blackwell_exporter_source_up", (("source", "triton"),))

    run.run_once()
    before = served(store)
    assert before[success] == 120 and before[up] == 1 and before[source_up] == 1

    triton.stop()  # the Triton process exits: connection refused
    clock.now += 1
    run.run_once()
    during = served(store)
    assert during[up] == 0, "serving_up 0 is published at once (BlackwellServingDown)"
    assert during[source_up] == 0
    assert success not in during, "no counters are served while the upstream is down"
    assert run.errors.get("unreachable") == 1

    triton.body = FIXTURE.replace('nv_inference_request_success{model="tensorrt_llm",version="1"} 120',
                                  'nv_inference_request_success{model="tensorrt_llm",version="1"} 3')
    triton.start()  # a fresh process: counters start over
    clock.now += 2  # one failure: the next attempt waits one interval
    run.run_once()
    after = served(store)
    assert after[up] == 1 and after[source_up] == 1
    assert after[success] == 3, "the reset passes through as is; Prometheus' rate() treats a drop as a reset"


@pytest.fixture
def nvml() -> ReplayBackend:
    return ReplayBackend(json.loads(RECORDING.read_text()), json.loads(OVERLAY.read_text())["calls"])


def test_gpu_lost_and_back_through_the_scheduler(nvml: ReplayBackend) -> None:
    from exporter.sources.nvml.backend import GPU_IS_LOST

    clock = Clock()
    source = NvmlSource(NvmlConfig(enabled=True, interval=10, timeout=5, xid_events=False, gpu_deadline=0.5),
                        backend=nvml, clock=clock)
    run, store = runner(source, clock)
    run.run_once()
    gpus = {labels for name, labels in served(store) if name == "blackwell_gpu_up"}
    assert len(gpus) == 2
    gpu1 = next(labels for labels in gpus if ("gpu", "1") in labels)

    nvml.lose_gpu(1)
    nvml.fail(1, None, GPU_IS_LOST)
    clock.now += 10
    run.run_once()
    lost = served(store)
    assert lost[("blackwell_gpu_up", gpu1)] == 0, "BlackwellGPULost fires on gpu_up == 0"
    assert lost[("blackwell_exporter_source_up", (("source", "nvml"),))] == 1, "one lost GPU is not a source failure"
    assert not [k for k in lost if k[0].startswith("blackwell_gpu_") and ("gpu", "1") in k[1]
                and k[0] != "blackwell_gpu_up"], "the lost GPU's other series are gone, not frozen"
    assert lost[("blackwell_gpu_power_watts", (("gpu", "0"),))] > 0

    nvml.restore_gpu(1)
    for _ in range(4):  # re-init follows the source's own backoff
        clock.now += 10
        run.run_once()
    back = served(store)
    assert back[("blackwell_gpu_up", gpu1)] == 1
    assert back[("blackwell_gpu_power_watts", (("gpu", "1"),))] > 0


# -- log files rotated, truncated, deleted ---------------------------------------------------------

def _autotune_count(store: SnapshotStore) -> float:
    return served(store).get(("blackwell_engine_cold_start_events_total", (("event", "autotune"),)), 0)


def test_log_rotation_and_truncation_lose_no_line_and_count_none_twice(tmp_path: Path) -> None:
    from exporter.sources.logs import LogsConfig, LogsSource

    log = tmp_path / "server.log"
    log.write_text("")
    clock = Clock()
    run, store = runner(LogsSource(LogsConfig(enabled=True, interval=1, timeout=1, paths=[str(log)])), clock)
    run.run_once()
    with log.open("a") as f:
        f.write("autotuning kernels 1\nautotuning kernels 2\n")
    clock.now += 1
    run.run_once()
    assert _autotune_count(store) == 2

    with log.open("a") as f:
        f.write("autotuning kernels 3\n")  # written just before logrotate renames the file
    log.rename(tmp_path / "server.log.1")
    log.write_text("autotuning kernels 4\n")
    clock.now += 1
    run.run_once()
    assert _autotune_count(store) == 4, "the old file is read to its end, then the new one from its start"
    assert served(store)[("blackwell_log_reopens_total", (("path", str(log)), ("reason", "rotated")))] == 1

    log.write_text("")  # copytruncate; seen because the file is shorter than the read offset at the next poll
    clock.now += 1
    run.run_once()
    with log.open("a") as f:
        f.write("autotuning kernels 5\n")
    clock.now += 1
    run.run_once()
    assert _autotune_count(store) == 5
    assert served(store)[("blackwell_log_reopens_total", (("path", str(log)), ("reason", "truncated")))] == 1
    assert run.up


def test_a_deleted_log_file_is_followed_again_when_it_reappears(tmp_path: Path) -> None:
    from exporter.sources.logs import LogsConfig, LogsSource

    log = tmp_path / "server.log"
    log.write_text("")
    clock = Clock()
    run, store = runner(LogsSource(LogsConfig(enabled=True, interval=1, timeout=1, paths=[str(log)])), clock)
    run.run_once()
    log.unlink()
    clock.now += 1
    run.run_once()
    assert run.up, "a missing log file is not a failure: the serving process may not have started yet"
    log.write_text("autotuning kernels again\n")
    clock.now += 1
    run.run_once()
    assert _autotune_count(store) == 1


def test_a_deleted_log_file_is_released(tmp_path: Path) -> None:
    import os

    from exporter.sources.logs import LogsConfig, LogsSource

    log = tmp_path / "server.log"
    log.write_text("x\n")
    source = LogsSource(LogsConfig(enabled=True, interval=1, timeout=1, paths=[str(log)]))
    source.poll()
    log.unlink()
    source.poll()
    source.poll()
    held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")]
    assert not [p for p in held if p.startswith(str(log))], held


# -- an engine directory replaced during a deploy --------------------------------------------------

def test_engine_directory_swapped_during_a_deploy(tmp_path: Path) -> None:
    import os
    import shutil

    from exporter.sources.engine import EngineConfig, EngineSource

    engines = ROOT / "tests" / "fixtures" / "engines"
    shutil.copytree(engines / "hf_modelopt_fp8_legacy", tmp_path / "v1")
    shutil.copytree(engines / "hf_modelopt_nvfp4_flat", tmp_path / "v2")
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "v1")
    clock = Clock()
    run, store = runner(EngineSource(EngineConfig(enabled=True, interval=30, timeout=5,
                                                  engines=[{"path": str(current), "name": "llama"}])), clock)

    def quant_algo() -> str | None:
        infos = [dict(labels) for name, labels in served(store) if name == "blackwell_engine_info"]
        return infos[0]["quant_algo"] if infos else None

    run.run_once()
    assert quant_algo() == "FP8"

    current.unlink()  # mid-deploy: the path is briefly missing
    clock.now += 30
    run.run_once()
    assert not run.up and run.errors.get("invalid") == 1
    assert quant_algo() == "FP8", "the last good description is served while the deploy is in flight"

    os.symlink(tmp_path / "v2", current)  # the new engine is in place
    clock.now += 30
    run.run_once()
    assert run.up and quant_algo() == "NVFP4"

    (tmp_path / "v2" / "hf_quant_config.json").write_text('{"quant_algo": ')  # a half-written file
    clock.now += 30
    run.run_once()
    assert not run.up and quant_algo() == "NVFP4"
    clock.now += 4 * 30
    run.run_once()
    assert quant_algo() is None, "after 3 intervals without a good read the engine's series are dropped"


# -- the serving process (dispatch sampler) restarts ------------------------------------------------

def test_dispatch_writer_restart_adds_to_the_totals_and_a_dead_writers_counts_stay(tmp_path: Path) -> None:
    from exporter.inprocess.state import FORMAT, VERSION, StateWriter
    from exporter.sources.dispatch import DispatchConfig, DispatchSource

    def state(pid: int, launches: int, at: float) -> dict:
        return {"format": FORMAT, "version": VERSION, "pid": pid, "started_at": at - 1, "updated_at": at,
                "status": "sampling", "windows": 1, "sampled_seconds": 1.0, "records": launches,
                "dropped_records": 0, "duty_cycle": 0.1,
                "gpus": {"0": {"kernels": launches, "kernel_ns": 10**9,
                               "names": ["bmm_E2m1_E2m1E2m1_Fp32_t128x16x512"], "counts": [launches, 5 * 10**8]}}}

    wall = [1_800_000_000.0]
    clock = Clock()
    source = DispatchSource(DispatchConfig(enabled=True, interval=10, timeout=5, state_dir=tmp_path, stale_after=60),
                            clock=lambda: wall[0])
    run, store = runner(source, clock)
    fp4 = ("blackwell_gemm_kernel_launches_total", (("gpu", "0"), ("precision", "fp4")))
    StateWriter(tmp_path / "serving.json").write(state(100, 5000, wall[0]))
    run.run_once()
    assert served(store)[fp4] == 5000

    wall[0] += 90  # the serving process died: its file stops changing
    clock.now += 10
    run.run_once()
    assert not run.up and run.errors.get("missing") == 1, "no live writer left"
    assert served(store)[fp4] == 5000, "its counts stay in the totals"
    assert not (tmp_path / "serving.json").exists(), "its stale file is removed"

    StateWriter(tmp_path / "serving.json").write(state(200, 40, wall[0]))  # restarted: counting from zero
    clock.now += 20
    run.run_once()
    assert run.up and served(store)[fp4] == 5040
