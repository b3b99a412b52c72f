"""What the checks read, gathered once per run by an adapter (NVML, a simulated box, HTTP, /proc).

Checks never talk to hardware themselves: they judge these plain values, so the same check runs
against a live NVML, the recorded H200 answers and the simulation profiles. A value the adapter
could not read is ``None`` and its reason sits in ``unknown`` under the same key, so a check can
say why it skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Error counters an NVLink can report, keyed (path, counter). The path names the NVML call:
#   legacy  - nvmlDeviceGetNvLinkErrorCounter (replay, recovery, crc_flit, crc_data, ecc_data)
#   dl      - field values 161-163 NVLINK_ERROR_DL_* (what nvidia-smi nvlink -e prints on Hopper)
#   nvlink5 - Blackwell NVLINK_COUNT_* fields (error kinds and link recovery events)
ErrorKey = tuple[str, str]

# Counters that count errors the link corrected on its own. Non-zero values are reported as a
# warning, not a failure: on a real H200 the legacy CRC_DATA/ECC_DATA counters read 20-40 per link
# while nvidia-smi and the DL fields report zero (the capture in tests/fixtures/nvml/h200x2, its README).
CORRECTED_ERRORS: frozenset[ErrorKey] = frozenset({
    ("legacy", "crc_data"), ("legacy", "ecc_data"), ("nvlink5", "symbol"), ("nvlink5", "recovery_successful"),
})


@dataclass(frozen=True)
class LinkFacts:
    link: int
    active: bool | None
    remote_type: str | None = None  # "gpu", "switch", "npu", "unknown"
    remote_bus_id: str | None = None
    errors: Mapping[ErrorKey, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GpuFacts:
    index: int
    up: bool = True
    down_reason: str = ""
    uuid: str | None = None
    name: str | None = None
    bus_id: str | None = None
    compute_capability: tuple[int, int] | None = None
    ecc_current: bool | None = None
    ecc_pending: bool | None = None
    persistence: bool | None = None
    remap_pending: bool | None = None
    remap_failure: bool | None = None
    link_count: int | None = None  # links the GPU has (NVML field NVLINK_LINK_COUNT)
    links: tuple[LinkFacts, ...] = ()
    fabric_state: str | None = None  # NVSwitch fabric registration: completed, in_progress, ...
    processes: tuple[int, ...] | None = None  # pids with a compute context on this GPU
    unknown: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HostFacts:
    """The GPUs of one box. ``error`` is set when none could be read at all."""

    origin: str  # where the facts came from, printed with the results
    driver_version: str | None = None
    cuda_version: str | None = None
    gpus: tuple[GpuFacts, ...] = ()
    error: str | None = None
    unknown: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServingFacts:
    runtime: str  # triton or trtllm-serve
    endpoint: str
    ready: bool | None
    detail: str  # what the health endpoint answered, or why it could not be asked
    requests_served: float | None = None  # completed requests since the server started
    requests_detail: str = ""


@dataclass(frozen=True)
class EngineFacts:
    """Algorithm names as the engine source normalises them (upper case, NO_QUANT for none)."""

    path: str
    quant_algo: str | None
    kv_cache_quant_algo: str | None
    trtllm_version: str | None
    layer_algos: Mapping[str, str] = field(default_factory=dict)  # MIXED_PRECISION: layer -> algorithm
    error: str | None = None
    format: str = ""  # trtllm-engine, trtllm-checkpoint, hf-quant-config-legacy/-flat, hf
    producer: str = ""  # e.g. "modelopt 0.33.0" for a ModelOpt checkpoint


@dataclass(frozen=True)
class ProcessFacts:
    """The serving process. ``environ`` is None when it could not be read, with ``reason``."""

    pid: int | None
    name: str = ""
    environ: Mapping[str, str] | None = None
    reason: str = ""
