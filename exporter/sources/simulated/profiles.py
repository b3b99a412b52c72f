"""The boxes the simulation models, and, for h200x2, the real capture in tests/fixtures/nvml/h200x2.

The other figures are the product brief's: a B200 has 192 GB HBM3e at 8 TB/s, 18 NVLink-5 links
(1.8 TB/s), draws about 1000 W at saturation and is compute capability 10.0; an HGX B200 joins 8 of them
over NVSwitch (NV18 between every pair); a GB200 NVL72 compute tray holds 4 B200 + 2 Grace, joined by
NVLink-C2C at 900 GB/s. Its healthy serving numbers, the loads here: an HGX B200 at TP=8 running
Qwen2.5-72B MX-FP4 sits at 70-85% utilization and 950-1000 W per GPU, decodes about 32k tokens/s at
batch 128, and answers the first token of a 2k-token prompt in about 25 ms.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

GB = 1_000_000_000
MIB = 1024 * 1024


@dataclass(frozen=True)
class GpuModel:
    name: str
    architecture: str
    compute_capability: str
    memory_bytes: int
    power_limit_watts: float
    idle_power_watts: float
    sm_clock_max_mhz: int
    memory_clock_mhz: int
    hbm_peak_bytes_per_second: float
    nvlink_version: int
    nvlink_links: int
    nvlink_link_bytes_per_second: float  # per direction, as NVML reports the line rate (field NVLINK_GET_SPEED)
    nvlink5_counters: bool  # Blackwell COUNT_* fields answer; Hopper answers the legacy/DL paths


B200 = GpuModel(
    name="NVIDIA B200",
    architecture="blackwell",
    compute_capability="10.0",
    memory_bytes=192 * GB,
    power_limit_watts=1000.0,
    idle_power_watts=140.0,
    sm_clock_max_mhz=1965,
    memory_clock_mhz=3996,
    hbm_peak_bytes_per_second=8.0e12,
    nvlink_version=5,
    nvlink_links=18,
    nvlink_link_bytes_per_second=53.125 * GB,  # 50 GB/s of data; nvidia-smi nvlink -s shows 53.125 on GB200
    nvlink5_counters=True,
)

GB200 = GpuModel(
    name="NVIDIA GB200",
    architecture="blackwell",
    compute_capability="10.0",
    memory_bytes=186 * GB,
    power_limit_watts=1200.0,
    idle_power_watts=160.0,
    sm_clock_max_mhz=2062,
    memory_clock_mhz=3996,
    hbm_peak_bytes_per_second=8.0e12,
    nvlink_version=5,
    nvlink_links=18,
    nvlink_link_bytes_per_second=53.125 * GB,  # 50 GB/s of data; nvidia-smi nvlink -s shows 53.125 on GB200
    nvlink5_counters=True,
)

H200 = GpuModel(
    name="NVIDIA H200",
    architecture="hopper",
    compute_capability="9.0",
    memory_bytes=143771 * MIB,
    power_limit_watts=700.0,
    idle_power_watts=75.0,
    sm_clock_max_mhz=1980,
    memory_clock_mhz=3201,
    hbm_peak_bytes_per_second=4.8e12,
    nvlink_version=4,
    nvlink_links=18,
    nvlink_link_bytes_per_second=26.562 * GB,
    nvlink5_counters=False,
)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    gpu: GpuModel
    gpu_count: int
    grace_count: int
    model: str
    tensor_parallel: int
    # Load at saturation for the whole box (the brief's healthy serving numbers).
    peak_output_tokens_per_second: float
    output_tokens_per_request: float
    prompt_tokens_per_request: float
    ttft_median_seconds: float
    itl_median_seconds: float
    kv_cache_max_blocks: int
    max_batch_size: int
    # One tray of an NVL72 rack, where the rack scenarios play (Scenario.rack: fault_tray or rack_wide).
    nvlink_domain: bool = False
    # GPUs of a multi-node NVLink domain (a GB200 NVL72): fabric info carries the rack's cluster UUID
    # and clique id, platform info its chassis and slot (board.py).
    multi_node_nvlink: bool = False

    @property
    def c2c(self) -> bool:
        return self.grace_count > 0


_GB200_TRAY = Profile(
    name="gb200-tray",
    description="GB200 NVL72 compute tray: 4x B200 + 2 Grace, NVLink-C2C on, NVLink5 to the NVL72 switch tray",
    gpu=GB200,
    gpu_count=4,
    grace_count=2,
    model="qwen2.5-72b-mxfp4",
    tensor_parallel=4,
    peak_output_tokens_per_second=17_000.0,
    output_tokens_per_request=300.0,
    prompt_tokens_per_request=2000.0,
    ttft_median_seconds=0.030,
    itl_median_seconds=0.0045,
    kv_cache_max_blocks=49_152,
    max_batch_size=128,
    multi_node_nvlink=True,
)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="hgx-b200",
            description="HGX B200: 8x B200 over NVSwitch (NV18 all-to-all), Qwen2.5-72B MX-FP4 at TP=8",
            gpu=B200,
            gpu_count=8,
            grace_count=0,
            model="qwen2.5-72b-mxfp4",
            tensor_parallel=8,
            peak_output_tokens_per_second=32_000.0,
            output_tokens_per_request=300.0,
            prompt_tokens_per_request=2000.0,
            ttft_median_seconds=0.025,
            itl_median_seconds=0.004,
            kv_cache_max_blocks=65_536,
            max_batch_size=128,
        ),
        _GB200_TRAY,
        Profile(
            name="h200x2",
            # As captured (tests/fixtures/nvml/h200x2): every link reports an NVSwitch at its far end
            # (a 2-GPU slice of an HGX board); nvidia-smi topo still shows NV18 between the two GPUs.
            description="2x H200 SXM, NV18 between them through NVSwitch, Llama-3.1-70B FP8 at TP=2",
            gpu=H200,
            gpu_count=2,
            grace_count=0,
            model="llama-3.1-70b-fp8",
            tensor_parallel=2,
            peak_output_tokens_per_second=5_200.0,
            output_tokens_per_request=300.0,
            prompt_tokens_per_request=2000.0,
            ttft_median_seconds=0.060,
            itl_median_seconds=0.012,
            kv_cache_max_blocks=16_384,
            max_batch_size=64,
        ),
        # 18 such trays share one NVLink domain; a TP=72 group spans them all.
        replace(_GB200_TRAY, name="nvl72-tray", model="deepseek-r1-mxfp4", tensor_parallel=72, nvlink_domain=True,
                description="One of the 18 compute trays of a GB200 NVL72 rack: 4x B200 + 2 Grace, 18 NVLink5 "
                            "links per GPU, fabric cluster UUID and clique id shared by the rack's 72 GPUs"),
    )
}

NVL72_TRAYS = 18
