"""What NVML says about where a simulated GPU sits: its NVLink fabric registration, its platform
(chassis, slot, tray), its PCIe error counters, and whether an NVML call on it is stalled.

Fabric membership, per profile (``Profile.multi_node_nvlink``): every board here sits behind
NVSwitches run by the fabric manager, so ``nvmlDeviceGetGpuFabricInfoV`` answers state completed
on all of them. Only the GPUs of a multi-node NVLink domain (the trays of a GB200 NVL72) get a
cluster UUID and clique id shared across nodes; a single-node HGX board (B200, and the H200 pair as
captured in tests/fixtures/nvml/h200x2) reports an all-zero cluster UUID and clique 0, which the
NVLink-domain rules leave out, as NCCL does when it looks for multi-node NVLink peers.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.snapshot import Family
from exporter.sources.simulated.profiles import Profile

# NVIDIA's mock GB200 reports this state; NVML_GPU_FABRIC_STATE_COMPLETED once the fabric manager registered the GPU.
FABRIC_STATE_COMPLETED = "completed"
NO_CLUSTER = "00000000-0000-0000-0000-000000000000"
# NVML_FI_DEV_PCIE_COUNT_* kinds in the nvml source's order. The capture's H200s had counted receiver,
# bad TLP, NAK-sent and lane errors since boot (15-55 each) and none of the others.
PCIE_ERROR_KINDS = ("correctable", "naks_received", "receiver", "bad_tlp", "naks_sent", "bad_dllp", "non_fatal",
                    "fatal", "unsupported_request", "lcrc", "lane")
_PCIE_NOISY = {"receiver": 17.0, "bad_tlp": 18.0, "naks_sent": 15.0, "lane": 40.0}
PCIE_NOISE_PER_SECOND = 1 / 3600  # each noisy kind, per GPU: about one an hour


@dataclass(frozen=True)
class RackPlace:
    """Where a tray sits: its index in the NVL72 rack and the rack's name (the fabric cluster UUID derives from it)."""

    tray: int = 0
    rack: str = "rack-0"

    @property
    def cluster_uuid(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"nvl72/{self.rack}"))

    @property
    def clique_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"nvl72/{self.rack}").int % 32767 + 1)

    @property
    def chassis_serial_number(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"nvl72/{self.rack}/chassis").int % 10**13).zfill(13)


@dataclass(frozen=True)
class BoardGpu:
    """One answering GPU as the board families need it."""

    index: int
    uuid: str
    module_id: str
    pcie_errors: dict[str, float]


def pcie_errors_since_boot(seed: int) -> dict[str, float]:
    """Counts a GPU starts with: the noisy kinds near what the capture showed, the others 0."""
    rng = random.Random(seed)
    return {kind: float(int(_PCIE_NOISY[kind] * rng.uniform(0.5, 1.5))) if kind in _PCIE_NOISY else 0.0
            for kind in PCIE_ERROR_KINDS}


def advance_pcie_errors(errors: dict[str, float], dt: float) -> None:
    for kind in _PCIE_NOISY:
        errors[kind] += PCIE_NOISE_PER_SECOND * dt


def board_families(profile: Profile, place: RackPlace, gpus: Iterable[BoardGpu]) -> list[Family]:
    """Fabric, platform, PCIe errors and stall state of the GPUs that answer (a lost GPU has none)."""
    names = ("blackwell_gpu_fabric_info", "blackwell_gpu_fabric_health_mask", "blackwell_gpu_platform_info",
             "blackwell_gpu_pcie_errors_total", "blackwell_gpu_nvml_stalled")
    f = {name: Family(name) for name in names}
    nvl72 = profile.multi_node_nvlink
    cluster, clique = (place.cluster_uuid, place.clique_id) if nvl72 else (NO_CLUSTER, "0")
    for gpu in gpus:
        i = str(gpu.index)
        f["blackwell_gpu_fabric_info"].add((i, clique, cluster, FABRIC_STATE_COMPLETED, "0"), 1)
        f["blackwell_gpu_fabric_health_mask"].add((i,), 0)
        # nvmlDeviceGetPlatformInfo: an HGX board as captured (no chassis serial, slot and tray 0);
        # a GB200 tray names its rack's chassis and its slot in it.
        serial, slot, tray = (place.chassis_serial_number, str(place.tray), str(place.tray)) if nvl72 else ("", "0", "0")
        f["blackwell_gpu_platform_info"].add((i, serial, slot, tray, "1", "0", gpu.module_id), 1)
        for kind in PCIE_ERROR_KINDS:
            f["blackwell_gpu_pcie_errors_total"].add((i, kind), int(gpu.pcie_errors[kind]))
        f["blackwell_gpu_nvml_stalled"].add((i, gpu.uuid), 0)
    return list(f.values())
