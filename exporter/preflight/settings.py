"""What the box is expected to look like: the preflight section of the config (sources.preflight)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from exporter.sources.base import SourceConfig

# GEMM families as the engine source names them (exporter.quant.algorithms); other = integer formats.
GemmFamily = Literal["fp4", "fp8", "16bit", "other"]
KvFamily = Literal["fp8", "mxfp8", "nvfp4", "int8", "16bit"]


class PreflightConfig(SourceConfig):
    interval: float = Field(300.0, gt=0, le=86400, description="seconds between preflight runs in the daemon")
    timeout: float = Field(60.0, gt=0, le=600)
    expected_gpu_count: int | None = Field(None, ge=1, description="GPUs the box must show; unset: any")
    expected_link_count: int = Field(18, ge=1, description="NVLinks joining every GPU pair (NV18 on HGX B200)")
    min_driver_version: str = Field("570.0", description="oldest driver that supports Blackwell serving")
    min_cuda_version: str = Field("12.8", description="oldest CUDA driver API version (sm_100 needs 12.8)")
    expected_gemm_quantization: list[GemmFamily] = Field(
        default_factory=lambda: ["fp4"], description="families the engine's GEMM quantization may be in")
    expected_kv_cache_quantization: list[KvFamily] = Field(
        default_factory=lambda: ["fp8", "mxfp8"], description="families the KV cache may be stored in")
    engine_dir: Path | None = Field(None, description="engine or checkpoint directory whose config to read")
    serving_pid: int | None = Field(None, ge=1, description="pid of the serving process")
    serving_process: str | None = Field(
        None, description="name of the serving process when no pid is given (tritonserver, trtllm-serve)")
    triton_url: str | None = Field(None, description="Triton HTTP endpoint, e.g. http://127.0.0.1:8000")
    trtllm_serve_url: str | None = Field(None, description="trtllm-serve endpoint, e.g. http://127.0.0.1:8000")
    warmup_min_requests: int = Field(10, ge=0, description="requests served since start that count as warmed up")
    prometheus_url: str | None = Field(None, description="Prometheus that should scrape this box")
    exporter_instance: str | None = Field(
        None, description="this exporter's instance label in Prometheus; unset: a target on this host and port")
    exporter_port: int = Field(9402, ge=1, le=65535, description="port Prometheus scrapes this exporter on")
    rules_dir: Path = Field(Path("alerts"), description="generated rule files whose rules must be loaded")
    http_timeout: float = Field(3.0, gt=0, le=60, description="seconds per HTTP request")
