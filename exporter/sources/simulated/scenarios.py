"""Named failure modes of the simulated box, each with the alert it exists to trigger.

A scenario is a set of knobs over the healthy model; the model reads them every poll, so a
switch at run time takes effect on the next poll and counters keep counting across it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    alerts: tuple[str, ...]  # alert names this scenario should fire (the drill table's source)
    needs_c2c: bool = False
    load: float = 0.85  # offered load as a fraction of the box's saturation throughput
    util_override: dict[int, float] = field(default_factory=dict)  # gpu -> utilization
    util_shortfall: dict[int, float] = field(default_factory=dict)  # gpu -> how far under its peers it runs
    lost_gpus: tuple[int, ...] = ()
    nvlink_error_gpu: int | None = None  # this GPU's first links count errors
    nvlink_error_links: int = 6
    nvlink_errors_per_second: float = 0.0
    kv_occupancy: float = 0.55
    ttft_factor: float = 1.0
    long_prompt_ttft_factor: float = 1.0  # TTFT of the longest prompts only
    long_prompt_share: float = 0.05
    fp4_share: float = 0.93  # of GEMM launches; the rest is fp8 fallback and 16-bit
    fp8_share: float = 0.0
    te_promotion_layer: int | None = None
    te_promotions_per_second: float = 0.0005  # background rate, spread over all layers
    c2c_read_share: float = 0.02  # of GPU memory reads served from Grace (C2C profiles only)
    c2c_share_growth_per_second: float = 0.0
    xid: int | None = None  # one XID every 30 s on GPU 0
    nvml_read_error_gpu: int | None = None  # this GPU's memory-info call fails every poll (NVML Timeout)
    ecc_uncorrectable: bool = False
    row_remap_failure: bool = False
    thermal_throttle_gpu: int | None = None
    power_cap_gpu: int | None = None
    serving_ready: bool = True
    cold_start: bool = False  # first requests after a deploy: engine and kernel caches cold
    requests_queued: int = 0  # extra requests waiting
    backend_failure_share: float = 0.0  # of requests failing inside the server (reason BACKEND)
    # Rack scenarios: only this tray of an NVL72 rack (profile nvl72-tray) has the fault; the other
    # 17 trays, given the same scenario, run healthy.
    fault_tray: int | None = None
    rack_wide: bool = False  # a rack scenario every tray of the rack plays (no fault_tray)
    nvlink_bandwidth_factor: float = 1.0  # NVLink traffic of the faulty GPUs' tray, against healthy
    gpu_power_share: float | None = None  # every GPU draws this share of its power limit, under its cap
    ttft_buckets: tuple[float, ...] = ()  # the runtime redeployed with these TTFT buckets (empty: its own)

    @property
    def rack(self) -> bool:
        """Played on the trays of an NVL72 rack: one tray breaks, or the whole rack does."""
        return self.fault_tray is not None or self.rack_wide


_HEALTHY = "healthy"

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(_HEALTHY, "Saturated but healthy serving: the baseline no alert fires on.", ()),
        Scenario(
            "nvlink-crc-burst",
            "GPU 3's first six NVLink links count data-link errors (CRC on Hopper; on Blackwell uncorrectable "
            "FEC codewords as effective errors, the FEC history shifting to its high bins, and link recoveries).",
            ("BlackwellNVLinkErrors",),
            nvlink_error_gpu=3,
            nvlink_errors_per_second=4.0,
        ),
        Scenario(
            "straggler-gpu",
            "GPU 5 runs at 60% utilization while its peers sit at 80%: a tensor-parallel straggler.",
            ("BlackwellGPUStraggler",),
            util_override={5: 0.60},
        ),
        Scenario(
            "gpu-lost",
            "GPU 2 falls off the bus (NVML GpuIsLost): gpu_up 0, its series disappear, the others keep reporting.",
            ("BlackwellGPULost",),
            lost_gpus=(2,),
        ),
        Scenario(
            "kv-pressure",
            "KV cache 97% full: requests wait for blocks, the queue grows and TTFT rises.",
            ("BlackwellKVCacheNearFull",),
            kv_occupancy=0.97,
            requests_queued=40,
            ttft_factor=2.0,
        ),
        Scenario(
            "ttft-regression",
            "TTFT p95 is 10x its healthy value at unchanged load (a bad engine build or scheduler change).",
            ("BlackwellTTFTSLOViolation", "BlackwellTTFTBudgetBurn"),
            ttft_factor=25.0,
        ),
        Scenario(
            "long-prompt-ttft",
            "Only the longest prompts see TTFT spikes (p99 far above p50): chunked prefill off or too small.",
            ("BlackwellTTFTLongPromptSpikes",),
            long_prompt_ttft_factor=60.0,
            long_prompt_share=0.06,  # ~2% of requests: clearly above p99, not on its edge
        ),
        Scenario(
            "cold-start",
            "Right after a deploy: engine load and kernel autotuning push first requests' TTFT over 10 s.",
            ("BlackwellColdStartTTFT",),
            cold_start=True,
        ),
        Scenario(
            "nvml-read-errors",
            "GPU 5 still answers NVML but its memory-info call times out every poll: its memory series are missing.",
            ("BlackwellNVMLReadErrors",),
            nvml_read_error_gpu=5,
        ),
        Scenario(
            "fp8-fallback",
            "MX-FP4 GEMM hit rate falls to 70%; a quarter of GEMMs run on the FP8 fallback path.",
            ("BlackwellMXFP4HitRateLow", "BlackwellFP8FallbackHigh"),
            fp4_share=0.70,
            fp8_share=0.25,
        ),
        Scenario(
            "te-promotion-storm",
            "Transformer Engine promotes layer 47's tensors to higher precision about once a second.",
            ("BlackwellTEPromotionStorm", "BlackwellTEPromotionLayerSpike"),
            te_promotion_layer=47,
            te_promotions_per_second=1.0,
        ),
        Scenario(
            "grace-kv-spill",
            "KV cache spills to Grace memory: the share of GPU reads served over NVLink-C2C climbs past 10%.",
            ("BlackwellGraceC2CReadShareHigh",),
            needs_c2c=True,
            c2c_read_share=0.12,
            c2c_share_growth_per_second=0.0005,
        ),
        Scenario(
            "underutilized",
            "Requests queue while the GPUs draw under 800 W: the batcher is starved (max batch or tokens too low).",
            ("BlackwellGPUUnderutilizedWhileQueued",),
            load=0.45,
            requests_queued=30,
        ),
        Scenario(
            "throughput-drop",
            "Offered load and output tokens/s fall by half against the same hour yesterday.",
            ("BlackwellThroughputDrop",),
            load=0.40,
        ),
        Scenario("xid-error", "GPU 0 reports XID 79 (fell off the bus) events.", ("BlackwellXIDCritical",), xid=79),
        Scenario(
            "ecc-uncorrectable",
            "GPU 1 counts uncorrectable ECC errors (one every few seconds).",
            ("BlackwellECCUncorrectable",),
            ecc_uncorrectable=True,
        ),
        Scenario(
            "row-remap-failure",
            "GPU 1 failed to remap an HBM row: it needs service.",
            ("BlackwellRowRemapFailure",),
            row_remap_failure=True,
        ),
        Scenario(
            "thermal-throttle",
            "GPU 4's clocks are held down by thermal slowdown.",
            ("BlackwellThermalThrottling",),
            thermal_throttle_gpu=4,
        ),
        Scenario(
            "power-throttle",
            "GPU 6's clocks are held down by the software power cap.",
            ("BlackwellPowerThrottling",),
            power_cap_gpu=6,
        ),
        Scenario(
            "backend-errors",
            "2% of requests fail inside the server (reason BACKEND): the availability error budget burns at 20x.",
            ("BlackwellAvailabilityBudgetBurn",),
            backend_failure_share=0.02,
        ),
        Scenario(
            "serving-not-ready",
            "The serving runtime answers but reports not ready (engine failed to load).",
            ("BlackwellServingNotReady",),
            serving_ready=False,
            load=0.0,
        ),
        Scenario(
            "ttft-buckets-without-bound",
            "The serving runtime was redeployed with custom TTFT buckets (0.05, 0.1, 0.25, 1, 2.5, 5, 10 s) that "
            "lack the 0.5 s bound its TTFT SLO is judged at: the SLO and its burn-rate alerts go blind.",
            ("BlackwellTTFTSLOBucketMissing",),
            ttft_buckets=(0.05, 0.1, 0.25, 1.0, 2.5, 5.0, 10.0),
        ),
        Scenario(
            "rack-straggler-gpu",
            "Rack: GPU 2 of tray 7 runs 10 points of utilization under the other 71 GPUs of the NVLink domain: "
            "under the per-instance straggler's 15-point gap against its three tray peers, over the domain "
            "straggler's gap against the median of 72 GPUs.",
            ("BlackwellDomainGPUStraggler",),
            util_shortfall={2: 0.10},
            fault_tray=7,
        ),
        Scenario(
            "rack-tray-links-degrading",
            "Rack: tray 11's NVLink traffic falls to half of the other trays' while its GPU 3's first six links "
            "count NVLink5 effective errors, their FEC history shifting to its high bins.",
            ("BlackwellDomainTrayLinksBehind",),
            nvlink_error_gpu=3,
            nvlink_errors_per_second=4.0,
            nvlink_bandwidth_factor=0.5,
            fault_tray=11,
        ),
        Scenario(
            "rack-tray-lost",
            "Rack: all four GPUs of tray 4 fall off the bus: the NVLink domain is short of four of its 72 GPUs.",
            ("BlackwellDomainFabricDegraded",),
            lost_gpus=(0, 1, 2, 3),
            fault_tray=4,
        ),
        Scenario(
            "rack-power-near-budget",
            "Rack: every GPU of the NVLink domain draws 99% of its 1200 W limit (a heavier prefill mix) without "
            "holding its clocks at the cap: the 72 GPUs draw 85.5 kW, 99% of the rack's 86.4 kW GPU budget.",
            ("BlackwellDomainPowerNearBudget",),
            gpu_power_share=0.99,
            rack_wide=True,
        ),
    )
}

DEFAULT_SCENARIO = _HEALTHY
