"""Preflight's engine, serving-process and serving-endpoint checks, on real files, a real child
process and a local HTTP server answering as Triton and trtllm-serve do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.preflight import engine_config, process, serving_http
from exporter.preflight.checks import engine, serving
from exporter.preflight.checks import process as process_checks
from exporter.preflight.facts import GpuFacts, HostFacts, ProcessFacts
from exporter.preflight.result import Status
from exporter.preflight.settings import PreflightConfig
from tests.simulated_box import preflight_host
from tests.unit.upstream_server import Route, Upstream

CFG = PreflightConfig()


# -- engine ------------------------------------------------------------------------------------

ENGINES = Path(__file__).resolve().parents[1] / "fixtures" / "engines"  # the engine source's fixtures


def write(directory: Path, name: str, data: dict) -> Path:
    (directory / name).write_text(json.dumps(data))
    return directory


@pytest.mark.parametrize("fixture, status, gemm, kv", [
    ("trtllm_engine_nvfp4", Status.PASS, "NVFP4 (fp4)", "FP8 (fp8)"),
    ("hf_modelopt_nvfp4_flat", Status.PASS, "NVFP4 (fp4)", "FP8 (fp8)"),
    ("hf_modelopt_fp8_legacy", Status.FAIL, "FP8 (fp8)", "FP8 (fp8)"),
    ("trtllm_checkpoint_w4a8", Status.FAIL, "W4A8_MXFP4_FP8 (fp4)", "NO_QUANT (16bit)"),  # KV cache not quantized
    ("hf_gpt_oss_mxfp4", Status.FAIL, "MXFP4 (fp4)", "NO_QUANT (16bit)"),
])
def test_engine_fixtures_against_the_default_fp4_and_fp8_kv_expectation(fixture: str, status: Status, gemm: str,
                                                                       kv: str) -> None:
    result = engine.engine_quantization(engine_config.read(ENGINES / fixture), CFG)
    assert result.status is status, result.evidence
    assert f"GEMMs {gemm}, KV cache {kv}" in result.evidence


def test_a_built_engine_records_its_trtllm_version_and_a_checkpoint_does_not() -> None:
    built = engine.engine_trtllm_version(engine_config.read(ENGINES / "trtllm_engine_nvfp4"), CFG)
    assert (built.status, built.evidence) == (Status.PASS, f"{ENGINES / 'trtllm_engine_nvfp4'}: built by TensorRT-LLM 0.20.0")
    checkpoint = engine.engine_trtllm_version(engine_config.read(ENGINES / "hf_modelopt_fp8_legacy"), CFG)
    assert checkpoint.status is Status.WARN
    assert "(hf-quant-config-legacy, made by modelopt 0.19.0): no TensorRT-LLM version recorded" in checkpoint.evidence


def test_an_fp8_box_passes_when_fp8_is_what_it_expects() -> None:
    facts = engine_config.read(ENGINES / "hf_modelopt_fp8_legacy")
    assert engine.engine_quantization(facts, PreflightConfig(expected_gemm_quantization=["fp8"])).status is Status.PASS


def test_mixed_precision_judges_every_layer_and_names_unknown_algorithms() -> None:
    result = engine.engine_quantization(engine_config.read(ENGINES / "mixed_precision"), CFG)
    assert result.status is Status.FAIL
    assert "MIXED_PRECISION over 8 layers" in result.evidence
    assert "transformer.layers.1.mlp.proj=FP6_E3M2" in result.evidence


def test_mx_fp8_kv_cache_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, "hf_quant_config.json", {"quant_algo": "NVFP4", "kv_cache_quant_algo": "MXFP8"})
    assert engine.engine_quantization(engine_config.read(tmp_path), CFG).status is Status.PASS


def test_no_engine_dir_skips_and_an_empty_dir_fails(tmp_path: Path) -> None:
    assert engine.engine_quantization(None, CFG).status is Status.SKIP
    empty = engine.engine_quantization(engine_config.read(tmp_path), CFG)
    assert empty.status is Status.FAIL and "no config.json or hf_quant_config.json" in empty.evidence


# -- serving process environment ---------------------------------------------------------------

def sleeper(env: dict[str, str]) -> subprocess.Popen:
    """A child that sleeps, returned once it has started: until its exec, /proc/PID/environ is the forking
    parent's environment, not the one it was given."""
    child = subprocess.Popen([sys.executable, "-c", "import time; print(flush=True); time.sleep(60)"], env=env,
                             stdout=subprocess.PIPE)
    assert child.stdout is not None
    child.stdout.readline()
    return child


@pytest.fixture
def server_process() -> Iterator[subprocess.Popen]:
    child = sleeper({**os.environ, "NCCL_P2P_LEVEL": "NVL", "CUDA_VISIBLE_DEVICES": "1"})
    yield child
    child.kill()
    child.wait()


def host_with(pids: dict[int, tuple[int, ...]]) -> HostFacts:
    return HostFacts("test", "580", "13.0", tuple(
        GpuFacts(index=i, uuid=f"GPU-{i}000000-aaaa", processes=pids.get(i, ())) for i in range(2)))


def test_environment_of_a_real_process_is_read_from_proc(server_process: subprocess.Popen) -> None:
    facts = process.read(server_process.pid)
    assert facts.environ is not None and facts.environ["NCCL_P2P_LEVEL"] == "NVL"
    assert process_checks.nccl_p2p_level(facts, CFG).status is Status.PASS
    host = host_with({1: (server_process.pid,)})
    visible = process_checks.cuda_visible_devices(facts, host, CFG)
    assert visible.status is Status.PASS, visible.evidence
    assert visible.evidence.endswith("running on GPU 1 as named")


def test_a_process_running_on_gpus_it_did_not_name_fails(server_process: subprocess.Popen) -> None:
    facts = process.read(server_process.pid)
    result = process_checks.cuda_visible_devices(facts, host_with({0: (server_process.pid,)}), CFG)
    assert result.status is Status.FAIL and "but it runs on GPU 0" in result.evidence


def test_devices_named_by_uuid_prefix_resolve_and_unknown_ones_fail() -> None:
    host = host_with({0: (42,), 1: (42,)})
    by_uuid = ProcessFacts(42, "tritonserver", {"CUDA_VISIBLE_DEVICES": "GPU-0000000,GPU-1000000"})
    assert process_checks.cuda_visible_devices(by_uuid, host, CFG).status is Status.PASS
    bad = ProcessFacts(42, "tritonserver", {"CUDA_VISIBLE_DEVICES": "0,7"})
    result = process_checks.cuda_visible_devices(bad, host, CFG)
    assert result.status is Status.FAIL and "names no GPU of this box: 7" in result.evidence


def test_nccl_levels_other_than_nvl_fail_and_unset_warns() -> None:
    assert process_checks.nccl_p2p_level(ProcessFacts(1, "x", {"NCCL_P2P_LEVEL": "SYS"}), CFG).status is Status.FAIL
    assert process_checks.nccl_p2p_level(ProcessFacts(1, "x", {"NCCL_P2P_DISABLE": "1"}), CFG).status is Status.FAIL
    assert process_checks.nccl_p2p_level(ProcessFacts(1, "x", {}), CFG).status is Status.WARN


def test_permission_denied_on_environ_skips_with_the_reason(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "comm").write_text("trtllm-serve\n")
    (tmp_path / "77" / "environ").write_bytes(b"A=1\0")
    real_read_bytes = Path.read_bytes

    def denied(self: Path) -> bytes:
        # root reads any file: stand in for the kernel's ptrace-mode check on another user's environ
        if self.name == "environ":
            raise PermissionError(13, "Permission denied")
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    facts = process.read(77, proc=tmp_path)
    result = process_checks.nccl_p2p_level(facts, CFG)
    assert result.status is Status.SKIP and "permission denied reading" in result.evidence


def test_find_matches_comm_and_scripts_run_by_an_interpreter(tmp_path: Path) -> None:
    for pid, comm, argv in ((10, "tritonserver", b"/opt/tritonserver/bin/tritonserver\0--model-repo=/m\0"),
                            (11, "python3", b"python3\0/usr/local/bin/trtllm-serve\0serve\0"),
                            (12, "bash", b"bash\0")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "comm").write_text(comm + "\n")
        (tmp_path / str(pid) / "cmdline").write_bytes(argv)
    assert process.find("tritonserver", tmp_path) == [10]
    assert process.find("trtllm-serve", tmp_path) == [11]


# -- serving endpoints -------------------------------------------------------------------------

@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


def triton_stats(*counts: int) -> bytes:
    return json.dumps({"model_stats": [
        {"name": f"m{i}", "version": "1", "inference_stats": {
            "success": {"count": c, "ns": 1000}, "fail": {"count": 1, "ns": 10}, "queue": {"count": c, "ns": 10}}}
        for i, c in enumerate(counts)]}).encode()


def test_triton_ready_and_warmed_up(upstream: Upstream) -> None:
    upstream.routes["/v2/health/ready"] = Route(b"")
    upstream.routes["/v2/models/stats"] = Route(triton_stats(7, 5), content_type="application/json")
    facts = serving_http.triton(upstream.url(""), 2.0)
    assert serving.serving_health([facts], CFG).status is Status.PASS
    warm = serving.serving_warmup([facts], CFG)
    assert warm.status is Status.PASS and warm.evidence.startswith("12 requests served since start")


def test_triton_not_ready_fails_and_too_few_requests_fail_warmup(upstream: Upstream) -> None:
    upstream.routes["/v2/health/ready"] = Route(b"", status=400)
    upstream.routes["/v2/models/stats"] = Route(triton_stats(3), content_type="application/json")
    facts = serving_http.triton(upstream.url(""), 2.0)
    health = serving.serving_health([facts], CFG)
    assert health.status is Status.FAIL and "/v2/health/ready: HTTP 400" in health.evidence
    warm = serving.serving_warmup([facts], PreflightConfig(warmup_min_requests=3))
    assert warm.status is Status.FAIL and "need more than 3" in warm.evidence


def test_trtllm_serve_health_and_request_counter(upstream: Upstream) -> None:
    upstream.routes["/health"] = Route(b"")
    upstream.routes["/prometheus/metrics"] = Route(
        b"# TYPE trtllm_request_success counter\n"
        b'trtllm_request_success_total{model_name="m",engine_type="trtllm",finished_reason="stop"} 40\n'
        b'trtllm_request_success_total{model_name="m",engine_type="trtllm",finished_reason="length"} 2\n')
    facts = serving_http.trtllm_serve(upstream.url(""), 2.0)
    assert (facts.ready, facts.requests_served) == (True, 42.0)
    assert serving.serving_warmup([facts], CFG).status is Status.PASS


def test_an_endpoint_that_does_not_answer_fails_health(upstream: Upstream) -> None:
    url = upstream.url("")
    upstream.close()
    facts = serving_http.trtllm_serve(url, 1.0)
    result = serving.serving_health([facts], CFG)
    assert result.status is Status.FAIL and "no answer from" in result.evidence
    assert serving.serving_warmup([facts], CFG).status is Status.SKIP


def test_recorded_triton_statistics_count_successful_requests_only(upstream: Upstream) -> None:
    """The body a real Triton 2.51 returned: 2 successes and 1 failure of the llm_stream model."""
    recorded = Path(__file__).resolve().parents[1] / "fixtures" / "triton" / "python_backend_stats.json"
    upstream.routes["/v2/health/ready"] = Route(b"")
    upstream.routes["/v2/models/stats"] = Route(recorded.read_bytes(), content_type="application/json")
    facts = serving_http.triton(upstream.url(""), 2.0)
    assert facts.requests_served == 2
    warm = serving.serving_warmup([facts], CFG)
    assert warm.status is Status.FAIL and warm.evidence.startswith("2 requests served since start")


def test_malformed_triton_statistics_leave_warmup_unknown(upstream: Upstream) -> None:
    upstream.routes["/v2/health/ready"] = Route(b"")
    upstream.routes["/v2/models/stats"] = Route(b'{"model_stats": [{"name": "m"}]}', content_type="application/json")
    facts = serving_http.triton(upstream.url(""), 2.0)
    result = serving.serving_warmup([facts], CFG)
    assert result.status is Status.SKIP and "m has no inference_stats" in result.evidence


# -- the same checks against the simulation profiles -------------------------------------------

@pytest.mark.parametrize("profile", ["hgx-b200", "gb200-tray", "h200x2"])
def test_serving_environment_against_each_simulated_box(profile: str) -> None:
    """CUDA_VISIBLE_DEVICES naming every GPU of the box passes; one past the last fails."""
    from exporter.sources.simulated.profiles import PROFILES

    count = PROFILES[profile].gpu_count
    host = preflight_host(profile)
    env = {**os.environ, "NCCL_P2P_LEVEL": "NVL", "CUDA_VISIBLE_DEVICES": ",".join(map(str, range(count)))}
    child = sleeper(env)
    try:
        facts = process.read(child.pid)
        assert process_checks.nccl_p2p_level(facts, CFG).status is Status.PASS
        ok = process_checks.cuda_visible_devices(facts, host, CFG)
        # The simulation does not list per-GPU processes: the names are checked, placement is not.
        assert ok.status is Status.PASS and "per-GPU processes not readable" in ok.evidence
        past = ProcessFacts(child.pid, "x", {"CUDA_VISIBLE_DEVICES": str(count)})
        assert process_checks.cuda_visible_devices(past, host, CFG).status is Status.FAIL
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("profile, quant, expected", [
    ("hgx-b200", "W4A8_MXFP4_FP8", Status.PASS),  # qwen2.5-72b-mxfp4: MX-FP4 weights, FP8 activations
    ("gb200-tray", "W4A8_MXFP4_FP8", Status.PASS),
    ("h200x2", "FP8", Status.FAIL),  # llama-3.1-70b-fp8 on Hopper: not FP4, as Hopper cannot run FP4
])
def test_each_profiles_model_against_the_default_expectations(tmp_path: Path, profile: str, quant: str,
                                                               expected: Status) -> None:
    write(tmp_path, "config.json", {"version": "1.0.0", "pretrained_config": {
        "quantization": {"quant_algo": quant, "kv_cache_quant_algo": "FP8"}}})
    assert engine.engine_quantization(engine_config.read(tmp_path), CFG).status is expected
