"""Gather the facts once, run every check on them, return the results in checklist order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from exporter.mixin.config import MixinConfig
from exporter.preflight import engine_config, process, serving_http
from exporter.preflight.checks import engine, gpu, nvlink, prometheus, serving
from exporter.preflight.checks import process as process_checks
from exporter.preflight.facts import EngineFacts, HostFacts, ProcessFacts, ServingFacts
from exporter.preflight.result import CheckResult, Status, failed, skipped
from exporter.preflight.settings import PreflightConfig

# Reads the box: its GPUs, and serving facts it knows without HTTP (the simulation does).
BoxReader = Callable[[], tuple[HostFacts, list[ServingFacts]]]


@dataclass(frozen=True)
class Inputs:
    host: HostFacts | None
    servers: list[ServingFacts] = field(default_factory=list)
    engine: EngineFacts | None = None
    process: ProcessFacts | None = None


def gather(cfg: PreflightConfig, read_box: BoxReader | None) -> Inputs:
    host, servers = read_box() if read_box is not None else (None, [])
    servers = list(servers)
    if cfg.triton_url:
        servers.append(serving_http.triton(cfg.triton_url, cfg.http_timeout))
    if cfg.trtllm_serve_url:
        servers.append(serving_http.trtllm_serve(cfg.trtllm_serve_url, cfg.http_timeout))
    return Inputs(
        host=host,
        servers=servers,
        engine=engine_config.read(cfg.engine_dir) if cfg.engine_dir is not None else None,
        process=_serving_process(cfg),
    )


def _serving_process(cfg: PreflightConfig) -> ProcessFacts | None:
    if cfg.serving_pid is not None:
        return process.read(cfg.serving_pid)
    if cfg.serving_process is None:
        return None
    pids = process.find(cfg.serving_process)
    if not pids:
        return ProcessFacts(None, cfg.serving_process, reason=f"no process named {cfg.serving_process!r} is running")
    # Several matches are a server and its workers: the lowest pid is the one started first.
    return process.read(pids[0])


def run_checks(inputs: Inputs, cfg: PreflightConfig, job: str | None = None) -> list[CheckResult]:
    """``job``: the Prometheus job the mixin's rules select (mixin.job); the default config's when None."""
    host = inputs.host
    job = job or MixinConfig().job
    no_box = "GPUs not read (no NVML and no simulation)"

    def on_host(fn: Callable[[HostFacts, PreflightConfig], CheckResult], name: str) -> Callable[[], CheckResult]:
        return lambda: fn(host, cfg) if host is not None else skipped(name, no_box)

    checks: list[tuple[str, Callable[[], CheckResult]]] = [
        ("gpus_visible", on_host(gpu.gpus_visible, "gpus_visible")),
        ("driver_cuda_version", on_host(gpu.driver_cuda_version, "driver_cuda_version")),
        ("compute_capability", on_host(gpu.compute_capability, "compute_capability")),
        ("nvlink_topology", on_host(nvlink.nvlink_topology, "nvlink_topology")),
        ("nvlink_links_active", on_host(nvlink.nvlink_links_active, "nvlink_links_active")),
        ("nvlink_errors", on_host(nvlink.nvlink_errors, "nvlink_errors")),
        ("ecc_mode", on_host(gpu.ecc_mode, "ecc_mode")),
        ("row_remaps", on_host(gpu.row_remaps, "row_remaps")),
        ("persistence_mode", on_host(gpu.persistence_mode, "persistence_mode")),
        ("engine_quantization", lambda: engine.engine_quantization(inputs.engine, cfg)),
        ("engine_trtllm_version", lambda: engine.engine_trtllm_version(inputs.engine, cfg)),
        ("serving_nccl_p2p_level", lambda: process_checks.nccl_p2p_level(inputs.process, cfg)),
        ("serving_cuda_visible_devices", lambda: process_checks.cuda_visible_devices(inputs.process, host, cfg)),
        ("serving_health", lambda: serving.serving_health(inputs.servers, cfg)),
        ("serving_warmup", lambda: serving.serving_warmup(inputs.servers, cfg)),
        ("prometheus_scrapes_exporter", lambda: prometheus.prometheus_scrapes_exporter(cfg, job)),
        ("prometheus_scrapes_serving", lambda: prometheus.prometheus_scrapes_serving(cfg)),
        ("prometheus_rules_loaded", lambda: prometheus.prometheus_rules_loaded(cfg)),
    ]
    results = []
    for name, check in checks:
        try:
            results.append(check())
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others' results
            results.append(failed(name, f"the check itself failed: {type(exc).__name__}: {exc}",
                                  "Report this as a blackwell-exporter bug, with --json output."))
    return results


def exit_code(results: list[CheckResult]) -> int:
    return 1 if any(r.status is Status.FAIL for r in results) else 0
