"""A stand-in for DCGM's Python ``DcgmReader``, which cannot be installed here (it ships with DCGM).

It answers as ``DcgmReader.GetLatestGpuValuesAsFieldIdDict()`` does: DCGM GPU id -> field id ->
latest value, for the fields it was asked to watch and no others, with DCGM's blank sentinels
(dcgmvalue.py) where DCGM's cache holds one: a field the GPU does not support, or a driver call that
failed. ``FakeDcgm.error`` makes reads raise, as the bindings do when nv-hostengine goes away.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

INT32_BLANK = 0x7FFFFFF0
INT64_BLANK = 0x7FFFFFFFFFFFFFF0
INT64_NOT_SUPPORTED = INT64_BLANK + 2
FP64_BLANK = 140737488355328.0
FP64_NOT_SUPPORTED = FP64_BLANK + 2.0
MIB = 2**20

# One H200 as DCGM reports it, by field id: identity (50 name, 54 UUID, 57 PCI bus id, 85 VBIOS, 52 NVML
# index, 1 driver version), clocks in MHz (100, 101), temperatures (140, 150), power in W (155), energy in
# mJ (156), limits, P-state, PCIe replays (202), utilization in % (203, 204), framebuffer in MiB (250
# total, 251 free, 252 used, 253 reserved), last XID (230), clock-event mask (112), row remapping
# (393-396), profiling ratios (1001 graphics engine, 1004 tensor, 1005 DRAM) and C2C status (286).
H200: dict[int, Any] = {
    50: "NVIDIA H200", 54: "GPU-1b78982c-0e04-daa0-7189-44a219fa7d37", 57: "00000000:00:06.0",
    85: "96.00.A5.00.1A", 52: 0, 1: "580.159.04", 100: 1980, 101: 3201, 150: 36, 140: 37, 155: 81.4,
    156: 5_472_925, 164: 700.0, 190: 0, 202: 3, 203: 93, 204: 19, 250: 143771, 251: 142555, 252: 600, 253: 616,
    230: 0, 112: 0x4 | 0x1, 393: 0, 394: 2, 395: 0, 396: 0, 1001: 0.91, 1004: 0.54, 1005: 0.33,
    286: INT32_BLANK,
}


class FakeDcgm:
    """nv-hostengine with its GPUs (DCGM GPU id -> field id -> latest value in DCGM's cache).

    ``connect`` is the source's reader factory: it watches the given fields and returns a reader.
    Changing ``gpus`` or ``error`` later changes what every reader sees, as a host engine would.
    """

    def __init__(self, gpus: Mapping[int, Mapping[int, Any]]) -> None:
        self.gpus = gpus
        self.error: Exception | None = None
        self.readers: list[FakeDcgmReader] = []

    def connect(self, field_ids: Iterable[int]) -> FakeDcgmReader:
        reader = FakeDcgmReader(self, field_ids)
        self.readers.append(reader)
        return reader


class FakeDcgmReader:
    """Latest values of the watched fields, per GPU, as the bindings' DcgmReader returns them."""

    def __init__(self, engine: FakeDcgm, watched: Iterable[int]) -> None:
        self._engine = engine
        self.watched = frozenset(watched)
        self.closed = False

    def read(self) -> Mapping[int, Mapping[int, Any]]:
        if self._engine.error is not None:
            raise self._engine.error
        return {gpu: {field: value for field, value in fields.items() if field in self.watched}
                for gpu, fields in self._engine.gpus.items()}

    def close(self) -> None:
        self.closed = True
