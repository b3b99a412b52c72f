"""The triton source against a real tritonserver (PyPI nvidia-pytriton, CPU) serving a streaming model.

One Triton runs for the whole session. The decoupled Python-backend model in ``triton_model/``
streams one response per token and registers the ``nv_trt_llm_*`` families the way the
TensorRT-LLM Python backend does. Real requests go in through tritonclient; the exporter's
numbers must equal what Triton's own /metrics and statistics API report.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter import promtext
from exporter.sources.triton import TritonConfig, TritonSource
from tests.support import free_port, http_get, running_exporter, wait_until
from tests.support import values_of_one_endpoint as values

pytriton = pytest.importorskip("pytriton", reason="nvidia-pytriton provides the tritonserver binary")
grpcclient = pytest.importorskip("tritonclient.grpc")
httpclient = pytest.importorskip("tritonclient.http")
np = pytest.importorskip("numpy")

pytestmark = pytest.mark.integration

MODEL_REPO = Path(__file__).parent / "triton_model"
MODEL = "llm_stream"


class TritonProcess:
    """A tritonserver on fixed free ports that can be killed and started again on the same ports."""

    def __init__(self, workdir: Path) -> None:
        package = Path(pytriton.__file__).parent / "tritonserver"
        self.binary = package / "bin" / "tritonserver"
        site_packages = Path(pytriton.__file__).parent.parent
        self.backends = workdir / "backends"
        shutil.copytree(package / "backends", self.backends)
        stub = package / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}"
        shutil.copy(stub / "triton_python_backend_stub", self.backends / "python")
        self.env = {
            **os.environ,
            "LD_LIBRARY_PATH": str(site_packages / "nvidia_pytriton.libs"),
            "LLM_STREAM_SYS_PATH": json.dumps([str(site_packages)]),
        }
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.log = workdir / "triton.log"
        self.proc: subprocess.Popen | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), f"--model-repository={MODEL_REPO}", f"--backend-directory={self.backends}",
                 f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}",
                 f"--metrics-port={self.metrics_port}", "--allow-gpu-metrics=false", "--log-verbose=0"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"tritonserver exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                return http_get(f"{self.api_url}/v2/health/ready", timeout=0.5)[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout=90, interval=0.2, what="tritonserver ready")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="session")
def triton(tmp_path_factory):
    server = TritonProcess(tmp_path_factory.mktemp("triton"))
    server.start()
    yield server
    server.kill()


def stream(server: TritonProcess, prompts: list[tuple[str, int]]) -> int:
    """Send each (prompt, max_tokens) over one gRPC stream; wait for every final response."""
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        for i, (text, max_tokens) in enumerate(prompts):
            text_input = grpcclient.InferInput("text_input", [1], "BYTES")
            text_input.set_data_from_numpy(np.array([text.encode()], dtype=np.object_))
            tokens = grpcclient.InferInput("max_tokens", [1], "INT32")
            tokens.set_data_from_numpy(np.array([max_tokens], dtype=np.int32))
            client.async_stream_infer(MODEL, [text_input, tokens], request_id=str(i),
                                      enable_empty_final_response=True)
        finals = tokens_seen = 0
        while finals < len(prompts):
            result, error = results.get(timeout=30)
            if error is not None:
                finals += 1
                continue
            response = result.get_response()
            if response.parameters["triton_final_response"].bool_param:
                finals += 1
            elif response.outputs:
                tokens_seen += 1
        return tokens_seen
    finally:
        client.stop_stream()
        client.close()


def test_exporter_numbers_equal_tritons_own(triton):
    prompts = [("the quick brown fox", 6), ("hello", 3), ("fail", 4), ("a b c d e f g h", 9), ("fail", 1)]
    tokens = stream(triton, prompts)
    ok = [(p, n) for p, n in prompts if p != "fail"]
    assert tokens == sum(n for _, n in ok)

    source = TritonSource(TritonConfig(enabled=True, interval=5, timeout=4, endpoints=[
        {"url": triton.metrics_url, "api_url": triton.api_url}]))
    got = values(source.poll())
    upstream = promtext.parse(http_get(triton.metrics_url)[1])
    stats_client = httpclient.InferenceServerClient(f"127.0.0.1:{triton.http_port}")
    [stats] = stats_client.get_inference_statistics(MODEL)["model_stats"]
    stats_client.close()
    inference = stats["inference_stats"]

    def metric(name: str, **labels: str) -> float:
        [value] = [s.value for s in upstream.named(name) if s.labels.get("model") == MODEL
                   and all(s.labels.get(k) == v for k, v in labels.items())]
        return value

    mv = (MODEL, "1")
    assert got[("blackwell_serving_request_success_total", mv)] == metric("nv_inference_request_success") \
        == int(inference["success"]["count"]) == len(ok)
    assert got[("blackwell_serving_request_failure_total", (*mv, "BACKEND"))] \
        == metric("nv_inference_request_failure", reason="BACKEND") == int(inference["fail"]["count"]) == 2
    assert got[("blackwell_serving_inference_count_total", mv)] == metric("nv_inference_count") \
        == int(stats["inference_count"])
    assert got[("blackwell_serving_execution_count_total", mv)] == metric("nv_inference_exec_count") \
        == int(stats["execution_count"])
    assert got[("blackwell_serving_request_duration_seconds_total", mv)] == pytest.approx(
        int(inference["success"]["ns"]) / 1e9, abs=1e-3)
    assert got[("blackwell_serving_queue_duration_seconds_total", mv)] == pytest.approx(
        int(inference["queue"]["ns"]) / 1e9, abs=1e-3)
    assert got[("blackwell_serving_compute_duration_seconds_total", (*mv, "infer"))] == pytest.approx(
        int(inference["compute_infer"]["ns"]) / 1e9, abs=1e-3)
    e2e = got[("blackwell_serving_e2e_latency_seconds", (MODEL,))]
    assert (e2e.count, e2e.sum) == (int(inference["success"]["count"]), int(inference["success"]["ns"]) / 1e9)
    queue_time = got[("blackwell_serving_queue_time_seconds", (MODEL,))]
    assert queue_time.count == int(inference["queue"]["count"])

    # What the model itself did: tokens streamed and prompt words, as counters.
    assert got[("blackwell_serving_generation_tokens_total", (MODEL,))] == sum(n for _, n in ok)
    assert got[("blackwell_serving_prompt_tokens_total", (MODEL,))] == sum(len(p.split()) for p, _ in ok)
    assert got[("blackwell_serving_iterations_total", (MODEL,))] == sum(n for _, n in ok)
    assert got[("blackwell_serving_batch_requests", (MODEL, "max"))] == 64
    assert got[("blackwell_serving_batch_requests", (MODEL, "active"))] == 0
    assert got[("blackwell_serving_kv_cache_blocks", (MODEL, "max"))] == 1000
    assert got[("blackwell_serving_kv_cache_reused_blocks", (MODEL,))] == len(ok)

    assert got[("blackwell_serving_up", ("triton", triton.metrics_url))] == 1
    assert got[("blackwell_serving_ready", ("triton", triton.metrics_url))] == 1
    assert got[("blackwell_serving_model_ready", mv)] == 1
    assert got[("blackwell_serving_runtime_info", ("triton", triton.metrics_url, "python-backend", "2.51.0"))] == 1


def scrape(base: str) -> promtext.Exposition:
    status, body, _ = http_get(base + "/metrics")
    assert status == 200
    return promtext.parse(body)


def sample(exposition: promtext.Exposition, name: str, **labels: str) -> float | None:
    found = [s.value for s in exposition.named(name) if all(s.labels.get(k) == v for k, v in labels.items())]
    return found[0] if found else None


def test_killing_triton_keeps_the_exporter_up_and_it_recovers(triton, tmp_path):
    config = tmp_path / "exporter.yaml"
    config.write_text(
        "sources:\n"
        "  nvml: {enabled: false}\n"
        "  triton:\n"
        "    enabled: true\n"
        "    interval: 1\n"
        "    timeout: 0.9\n"
        "    endpoints:\n"
        f"      - {{url: '{triton.metrics_url}', api_url: '{triton.api_url}'}}\n")
    with running_exporter("--config", str(config)) as (base, _):
        before = wait_until(lambda: sample(scrape(base), "blackwell_serving_request_success_total", model=MODEL),
                            what="serving counters in the exporter")
        assert before >= 1
        wait_until(lambda: http_get(base + "/readyz")[0] == 200, what="exporter ready")
        if shutil.which("promtool"):  # the exposition built from a real Triton is valid for Prometheus
            check = subprocess.run(["promtool", "check", "metrics"], input=http_get(base + "/metrics")[1],
                                   capture_output=True, timeout=30)
            assert check.returncode == 0, check.stdout + check.stderr

        triton.kill()
        started = time.monotonic()

        def triton_seen_down() -> bool:
            exp = scrape(base)  # the exporter keeps answering
            return sample(exp, "blackwell_exporter_source_up", source="triton") == 0
        wait_until(triton_seen_down, timeout=10, what="triton source down")
        exp = scrape(base)
        assert (sample(exp, "blackwell_exporter_source_errors_total", source="triton", reason="unreachable") or 0) >= 1
        # The failed poll still publishes what it knows: the server is down and not ready.
        wait_until(lambda: sample(scrape(base), "blackwell_serving_up", runtime="triton") == 0,
                   timeout=10, what="blackwell_serving_up 0")
        assert sample(scrape(base), "blackwell_serving_ready", runtime="triton") in (0, None)
        status, body, _ = wait_until(lambda: (r := http_get(base + "/readyz"))[0] == 503 and r, timeout=10,
                                     what="/readyz to report triton")
        assert b"triton" in body
        assert time.monotonic() - started < 20

        triton.start()  # same ports; a fresh server whose counters start at zero
        wait_until(lambda: sample(scrape(base), "blackwell_exporter_source_up", source="triton") == 1,
                   timeout=40, interval=0.2, what="triton source recovered")
        exp = scrape(base)
        assert sample(exp, "blackwell_serving_up", runtime="triton") == 1
        assert sample(exp, "blackwell_serving_ready", runtime="triton") == 1
        # The upstream counter reset passes through as a reset, not as a continuation.
        assert sample(exp, "blackwell_serving_request_success_total", model=MODEL) == 0
        stream(triton, [("back again", 2)])
        wait_until(lambda: sample(scrape(base), "blackwell_serving_request_success_total", model=MODEL) == 1,
                   what="a new request counted")
        wait_until(lambda: http_get(base + "/readyz")[0] == 200, what="exporter ready again")
