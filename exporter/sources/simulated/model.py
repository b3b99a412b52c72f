"""A simulated serving box: GPUs, NVLink, Grace C2C and a Triton + TensorRT-LLM server under load.

The model keeps cumulative state (counters, histograms) and advances it by the wall time
between polls, so rates come out right whatever the poll interval. Gauges are drawn around the
operating point the profile and scenario set. Random draws use a seeded generator: two runs
with the same seed and the same poll times produce the same numbers.
"""

from __future__ import annotations

import math
import random
import uuid
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.dispatch_table import PRECISIONS
from exporter.inprocess import DEFAULT_DUTY_CYCLE
from exporter.snapshot import Family, HistogramValue
from exporter.sources.simulated.board import (
    BoardGpu,
    RackPlace,
    advance_pcie_errors,
    board_families,
    pcie_errors_since_boot,
)
from exporter.sources.simulated.fec import BINS, LinkFec
from exporter.sources.simulated.precision_extras import PrecisionExtras
from exporter.sources.simulated.profiles import Profile
from exporter.sources.simulated.scenarios import DEFAULT_SCENARIO, SCENARIOS, Scenario

# Bucket boundaries of the simulated Triton's latency histograms (seconds); a simulation standing in for
# another runtime draws into that runtime's own (runtime_view.runtime_buckets).
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075,
               0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
               120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
PROMPT_BUCKETS = (128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0)
CLOCK_REASONS = ("sw_power_cap", "hw_slowdown", "sw_thermal", "hw_thermal", "hw_power_brake", "sync_boost",
                 "display_clock")
# The reasons NVML also counts durations of (fields CLOCKS_EVENT_REASON_*); the others are bitmask bits only.
TIMED_CLOCK_REASONS = ("sw_power_cap", "sw_thermal", "hw_thermal", "hw_power_brake", "sync_boost")
NVLINK5_ERROR_KINDS = ("malformed_packet", "buffer_overrun", "rcv", "rcv_remote", "rcv_general",
                       "local_link_integrity", "xmit_discards", "effective", "symbol")
LAYERS = 80
# Mean bytes per NVLink packet, headers included: a tensor-parallel all-reduce moves mostly full
# 256-byte data packets with their 16-byte request and response packets (an assumption: no capture
# of a Blackwell under load).
NVLINK_PACKET_BYTES = 128
# At most this many individual requests are drawn per poll; larger volumes are scaled up.
MAX_DRAWS_PER_POLL = 2000


class Histogram:
    """A cumulative histogram that observes draws, kept by the simulation itself."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0.0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float, weight: float = 1.0) -> None:
        # The first bound >= value (a value above every bound lands in +Inf), found by bisection.
        self.counts[bisect_left(self.bounds, value)] += weight
        self.sum += value * weight

    def value(self) -> HistogramValue:
        cumulative = []
        running = 0.0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            cumulative.append((bound, round(running)))
        return HistogramValue(tuple(cumulative), self.sum, cumulative[-1][1])


@dataclass
class GpuState:
    index: int
    uuid: str
    energy_joules: float = 0.0
    clock_event_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TIMED_CLOCK_REASONS, 0.0))
    ecc: dict[tuple[str, str], float] = field(default_factory=dict)
    remapped_correctable: int = 0
    remapped_uncorrectable: int = 0
    pcie_replays: float = 0.0
    pcie_errors: dict[str, float] = field(default_factory=dict)
    fec: list[LinkFec] = field(default_factory=list)  # per NVLink5 link; empty where there are no NVLink5 counters
    xids: dict[int, int] = field(default_factory=dict)
    nvml_read_errors: int = 0  # failed memory-info calls
    nvlink_errors: dict[tuple[int, str], float] = field(default_factory=dict)
    nvlink_tx_bytes: float = 0.0
    nvlink_rx_bytes: float = 0.0
    gemm_launches: dict[str, float] = field(default_factory=dict)
    gemm_seconds: dict[str, float] = field(default_factory=dict)


# Every per-GPU family the simulation fills, in exposition order.
_GPU_FAMILIES = (
    "blackwell_gpu_info", "blackwell_gpu_up", "blackwell_gpu_utilization_ratio",
    "blackwell_gpu_memory_utilization_ratio", "blackwell_gpu_memory_used_bytes",
    "blackwell_gpu_memory_reserved_bytes", "blackwell_gpu_memory_total_bytes", "blackwell_gpu_power_watts", "blackwell_gpu_power_limit_watts",
    "blackwell_gpu_energy_joules_total", "blackwell_gpu_temperature_celsius",
    "blackwell_gpu_memory_temperature_celsius", "blackwell_gpu_sm_clock_hertz",
    "blackwell_gpu_memory_clock_hertz", "blackwell_gpu_performance_state",
    "blackwell_gpu_pcie_link_generation", "blackwell_gpu_pcie_link_width",
    "blackwell_gpu_clock_event_seconds_total", "blackwell_gpu_clock_event_active",
    "blackwell_gpu_ecc_errors_total", "blackwell_gpu_remapped_rows_total",
    "blackwell_gpu_remapped_rows_pending", "blackwell_gpu_remapped_rows_failure",
    "blackwell_gpu_pcie_replay_total", "blackwell_gpu_xid_errors_total",
    "blackwell_gpu_nvml_read_errors_total", "blackwell_gpu_nvml_partial_read",
    "blackwell_gpu_tensor_active_ratio", "blackwell_gpu_dram_bandwidth_utilization_ratio",
    "blackwell_gpu_sm_active_ratio", "blackwell_gpu_sm_occupancy_ratio",
    "blackwell_gpu_hbm_peak_bandwidth_bytes_per_second", "blackwell_c2c_enabled",
    "blackwell_c2c_link_up", "blackwell_c2c_rx_bytes_per_second", "blackwell_c2c_tx_bytes_per_second",
)


class BoxModel:
    def __init__(self, profile: Profile, scenario: Scenario, seed: int = 0, start: float = 0.0,
                 place: RackPlace | None = None, buckets: Mapping[str, tuple[float, ...]] | None = None) -> None:
        """``buckets``: catalog histogram name -> the bounds to draw its requests into, where they are
        not the simulated Triton's own."""
        self.profile = profile
        self.place = place or RackPlace()
        # Each tray its own GPU UUIDs; tray 0 draws what a box without a rack place draws.
        self.rng = random.Random(seed + 7919 * self.place.tray)
        self.requested = scenario
        self.scenario = self._effective(scenario)
        self.scenario_started = start
        self.last = start
        self.started = start
        self.gpus = [GpuState(i, f"GPU-{uuid.UUID(int=self.rng.getrandbits(128))}") for i in range(profile.gpu_count)]
        self._fit_hardware_detail(seed)
        bounds = buckets or {}
        self.runtime_ttft_bounds = bounds.get("blackwell_serving_ttft_seconds", TTFT_BUCKETS)
        self.ttft = Histogram(self.scenario.ttft_buckets or self.runtime_ttft_bounds)
        self.itl = Histogram(bounds.get("blackwell_serving_inter_token_latency_seconds", ITL_BUCKETS))
        self.e2e = Histogram(bounds.get("blackwell_serving_e2e_latency_seconds", E2E_BUCKETS))
        self.queue_time = Histogram(bounds.get("blackwell_serving_queue_time_seconds", ITL_BUCKETS))
        self.prompt_len = Histogram(PROMPT_BUCKETS)
        self.requests_ok = 0.0
        self.requests_failed: dict[str, float] = {"REJECTED": 0.0, "CANCELED": 0.0, "BACKEND": 0.0, "OTHER": 0.0}
        self.executions = 0.0
        self.request_seconds = 0.0
        self.queue_seconds = 0.0
        self.compute_seconds = {"input": 0.0, "infer": 0.0, "output": 0.0}
        self.prompt_tokens = 0.0
        self.output_tokens = 0.0
        self.iterations = 0.0
        self.te_promotions: dict[str, float] = {}
        self.c2c_share = scenario.c2c_read_share
        self.load_now = 0.0
        self.extras = PrecisionExtras(profile)

    def _fit_hardware_detail(self, seed: int) -> None:
        """PCIe errors counted since boot, and each NVLink5 link's own error rate (some links are
        noisier than others), drawn from a generator of their own so the other draws stay as they were."""
        rng = random.Random(f"{seed}/{self.place.tray}/hardware-detail")
        g = self.profile.gpu
        for gpu in self.gpus:
            gpu.pcie_errors = pcie_errors_since_boot(rng.getrandbits(32))
            if g.nvlink5_counters:
                gpu.fec = [LinkFec(quality=rng.lognormvariate(0.0, 0.5)) for _ in range(g.nvlink_links)]

    def _effective(self, scenario: Scenario) -> Scenario:
        """A rack scenario breaks one tray only; every other tray runs healthy under it."""
        if scenario.fault_tray is None or scenario.fault_tray == self.place.tray:
            return scenario
        return SCENARIOS[DEFAULT_SCENARIO]

    def set_scenario(self, scenario: Scenario, now: float) -> None:
        self.requested = scenario
        self.scenario = self._effective(scenario)
        self.scenario_started = now
        self.c2c_share = self.scenario.c2c_read_share
        bounds = self.scenario.ttft_buckets or self.runtime_ttft_bounds
        if bounds != self.ttft.bounds:  # the runtime redeployed with other TTFT buckets: counts start over
            self.ttft = Histogram(bounds)

    def _gpu(self, index: int | None) -> int | None:
        """Scenario GPU numbers refer to an 8-GPU box; smaller boxes take the last GPU instead."""
        return None if index is None else min(index, self.profile.gpu_count - 1)

    # -- advancing time ---------------------------------------------------------------------
    def advance(self, now: float) -> None:
        dt = max(0.0, now - self.last)
        self.last = now
        if dt == 0.0:
            return
        sc = self.scenario
        p = self.profile
        # Offered load breathes a little around the scenario's operating point.
        self.load_now = max(0.0, sc.load * (1.0 + 0.04 * math.sin(now / 97.0)) + self.rng.gauss(0, 0.01))
        tokens_per_s = p.peak_output_tokens_per_second * min(self.load_now, 1.0)
        requests = tokens_per_s / p.output_tokens_per_request * dt
        self._serve(requests, dt)
        for gpu in self.gpus:
            self._advance_gpu(gpu, dt, tokens_per_s)
        self._advance_precision(dt)
        self.extras.advance(sc, dt, self.load_now, self._lost())
        if p.c2c and sc.c2c_share_growth_per_second:
            self.c2c_share = min(0.6, self.c2c_share + sc.c2c_share_growth_per_second * dt)

    def _serve(self, requests: float, dt: float) -> None:
        sc, p = self.scenario, self.profile
        if requests <= 0:
            return
        draws = min(MAX_DRAWS_PER_POLL, max(1, int(requests)))
        weight = requests / draws
        cold = sc.cold_start and (self.last - self.scenario_started) < 600
        # Up to 2000 draws per poll: loop invariants and accumulators are hoisted into locals. The
        # draws, and the order of every floating-point operation, are the same as a plain loop's.
        rng, lognormal = self.rng, self.rng.lognormvariate
        prompt_mu, output_mu = math.log(p.prompt_tokens_per_request), math.log(p.output_tokens_per_request)
        long_prompt = p.prompt_tokens_per_request * 3
        itl_factor = 1.0 + 0.3 * (sc.ttft_factor > 1)
        queue_base = 0.05 * sc.requests_queued / max(1, p.max_batch_size)
        input_seconds, output_seconds = 0.0002 * weight, 0.0001 * weight
        ttft_hist, itl_hist, e2e_hist = self.ttft.observe, self.itl.observe, self.e2e.observe
        queue_hist, prompt_hist = self.queue_time.observe, self.prompt_len.observe
        prompt_tokens, output_tokens = self.prompt_tokens, self.output_tokens
        request_seconds, queue_seconds = self.request_seconds, self.queue_seconds
        compute = self.compute_seconds
        infer, compute_in, compute_out = compute["infer"], compute["input"], compute["output"]
        for _ in range(draws):
            prompt = max(16.0, lognormal(prompt_mu, 0.6))
            output = max(1.0, lognormal(output_mu, 0.5))
            ttft = p.ttft_median_seconds * (prompt / p.prompt_tokens_per_request) ** 0.8
            ttft *= lognormal(0.0, 0.25) * sc.ttft_factor
            if prompt > long_prompt and rng.random() < sc.long_prompt_share * 10:
                ttft *= sc.long_prompt_ttft_factor
            if cold:
                ttft += rng.uniform(10.0, 25.0)
            itl = p.itl_median_seconds * lognormal(0.0, 0.2) * itl_factor
            queue = ttft * 0.1 + queue_base
            e2e = ttft + itl * (output - 1)
            ttft_hist(ttft, weight)
            itl_hist(itl, weight * (output - 1))
            e2e_hist(e2e, weight)
            queue_hist(queue, weight)
            prompt_hist(prompt, weight)
            prompt_tokens += prompt * weight
            output_tokens += output * weight
            request_seconds += e2e * weight
            queue_seconds += queue * weight
            infer += (e2e - queue) * weight
            compute_in += input_seconds
            compute_out += output_seconds
        self.prompt_tokens, self.output_tokens = prompt_tokens, output_tokens
        self.request_seconds, self.queue_seconds = request_seconds, queue_seconds
        compute["infer"], compute["input"], compute["output"] = infer, compute_in, compute_out
        cancelled = requests * 0.0005  # clients hanging up: excluded from the availability SLO
        backend = requests * sc.backend_failure_share
        self.requests_failed["CANCELED"] += cancelled
        self.requests_failed["BACKEND"] += backend
        self.requests_ok += requests - cancelled - backend
        self.executions += dt / (p.itl_median_seconds * 1.0)
        self.iterations += dt / p.itl_median_seconds

    def _advance_gpu(self, gpu: GpuState, dt: float, tokens_per_s: float) -> None:
        sc, p = self.scenario, self.profile
        if gpu.index in self._lost():
            return
        util = self.utilization(gpu.index)
        gpu.energy_joules += self.power(gpu.index, util) * dt
        if gpu.index == self._gpu(sc.thermal_throttle_gpu):
            gpu.clock_event_seconds["sw_thermal"] += dt * 0.8
            gpu.clock_event_seconds["hw_thermal"] += dt * 0.1
        if gpu.index == self._gpu(sc.power_cap_gpu):
            gpu.clock_event_seconds["sw_power_cap"] += dt * 0.9
        gpu.clock_event_seconds["sw_power_cap"] += dt * 0.002 * util  # brief caps at peaks are normal
        for err, cnt in (("corrected", "volatile"), ("corrected", "aggregate")):
            gpu.ecc[(err, cnt)] = gpu.ecc.get((err, cnt), 0.0) + self.rng.random() * dt * 0.001
        if sc.ecc_uncorrectable and gpu.index == self._gpu(1):
            for cnt in ("volatile", "aggregate"):
                gpu.ecc[("uncorrected", cnt)] = gpu.ecc.get(("uncorrected", cnt), 0.0) + dt * 0.25
        if sc.row_remap_failure and gpu.index == self._gpu(1) and gpu.remapped_uncorrectable == 0:
            gpu.remapped_uncorrectable = 1
        if sc.xid is not None and gpu.index == 0:
            # One event every 30 s of scenario time, counted exactly.
            expected = int((self.last - self.scenario_started) / 30.0) + 1
            seen = gpu.xids.get(sc.xid, 0)
            gpu.xids[sc.xid] = max(seen, expected)
        if gpu.index == self._gpu(sc.nvml_read_error_gpu):
            gpu.nvml_read_errors += 1  # one failed call per poll, as the NVML source counts them
        traffic = tokens_per_s * 2.0e6 / max(1, p.gpu_count) if p.tensor_parallel > 1 else 0.0
        traffic *= sc.nvlink_bandwidth_factor
        gpu.nvlink_tx_bytes += traffic * dt
        gpu.nvlink_rx_bytes += traffic * dt
        advance_pcie_errors(gpu.pcie_errors, dt)
        erring = gpu.index == self._gpu(sc.nvlink_error_gpu) and sc.nvlink_errors_per_second > 0
        erring_links = min(sc.nvlink_error_links, p.gpu.nvlink_links) if erring else 0
        # NVLink5: a failing link's uncorrectable codewords are its effective errors (fec.py).
        for link, fec in enumerate(gpu.fec):
            fec.advance(dt, p.gpu.nvlink_link_bytes_per_second,
                        sc.nvlink_errors_per_second if link < erring_links else 0.0)
        for link in range(erring_links):
            if not p.gpu.nvlink5_counters:
                for kind in ("crc_flit", "dl_crc", "replay"):
                    key = (link, kind)
                    gpu.nvlink_errors[key] = gpu.nvlink_errors.get(key, 0.0) + sc.nvlink_errors_per_second * dt
            key = (link, "recovery_successful" if p.gpu.nvlink5_counters else "recovery")
            gpu.nvlink_errors[key] = gpu.nvlink_errors.get(key, 0.0) + sc.nvlink_errors_per_second * dt / 20

    def _advance_precision(self, dt: float) -> None:
        sc = self.scenario
        fp4 = sc.fp4_share if self.profile.gpu.architecture == "blackwell" else 0.0
        fp8 = sc.fp8_share if fp4 else 0.93  # Hopper has no FP4 path: its quantized GEMMs run FP8
        shares = {"fp4": fp4, "fp8": fp8, "16bit": max(0.0, 1.0 - fp4 - fp8 - 0.02), "other": 0.02}
        seconds_per_launch = {"fp4": 18e-6, "fp8": 30e-6, "16bit": 45e-6, "other": 10e-6}
        # What the in-process sampler records: launches inside its windows, about its duty cycle of all.
        launches_per_s = (2.0 * LAYERS * 4 / self.profile.itl_median_seconds * min(self.load_now, 1.0)
                          * DEFAULT_DUTY_CYCLE)
        for gpu in self.gpus:
            if gpu.index in self._lost():
                continue
            for precision, share in shares.items():
                n = launches_per_s * share * dt
                gpu.gemm_launches[precision] = gpu.gemm_launches.get(precision, 0.0) + n
                gpu.gemm_seconds[precision] = gpu.gemm_seconds.get(precision, 0.0) + n * seconds_per_launch[precision]
        background = sc.te_promotions_per_second * dt
        if background:
            layer = str(self.rng.randrange(LAYERS))
            self.te_promotions[layer] = self.te_promotions.get(layer, 0.0) + background
        if sc.te_promotion_layer is not None:
            layer = str(sc.te_promotion_layer)
            self.te_promotions[layer] = self.te_promotions.get(layer, 0.0) + sc.te_promotions_per_second * dt

    # -- operating point --------------------------------------------------------------------
    def _lost(self) -> set[int]:
        return {self._gpu(i) for i in self.scenario.lost_gpus}  # type: ignore[misc]

    def utilization(self, index: int) -> float:
        override = {self._gpu(k): v for k, v in self.scenario.util_override.items()}
        if index in override:
            base = override[index]
        else:
            base = 0.20 + 0.70 * min(self.load_now, 1.0)  # 0.85 load -> ~0.80
        shortfall = {self._gpu(k): v for k, v in self.scenario.util_shortfall.items()}
        base -= shortfall.get(index, 0.0)
        return min(1.0, max(0.0, base + self.rng.gauss(0, 0.01)))

    def power(self, index: int, util: float) -> float:
        g = self.profile.gpu
        watts = g.idle_power_watts + (g.power_limit_watts - g.idle_power_watts) * min(1.0, util / 0.82) * 0.97
        if index == self._gpu(self.scenario.power_cap_gpu):
            watts = g.power_limit_watts * 0.99
        if self.scenario.gpu_power_share is not None:
            watts = g.power_limit_watts * self.scenario.gpu_power_share
        return min(g.power_limit_watts, watts + self.rng.gauss(0, 4))

    def kv_occupancy(self) -> float:
        return min(1.0, max(0.0, self.scenario.kv_occupancy * min(1.0, self.load_now / 0.85) + self.rng.gauss(0, 0.01)))

    # -- families ---------------------------------------------------------------------------
    def families(self) -> list[Family]:
        return [*self._gpu_families(), *self._nvlink_families(), *self._serving_families(),
                *self._precision_families(), *self.extras.families()]

    def _gpu_families(self) -> list[Family]:
        lost = self._lost()
        f = {name: Family(name) for name in _GPU_FAMILIES}
        for gpu in self.gpus:
            i = str(gpu.index)
            f["blackwell_gpu_up"].add((i, gpu.uuid), 0 if gpu.index in lost else 1)
            if gpu.index in lost:
                continue
            util = self.utilization(gpu.index)
            self._gpu_identity_power_thermal(f, gpu, util)
            self._gpu_clocks_and_errors(f, gpu, util)
            self._gpu_activity_and_c2c(f, gpu, util)
        return [*f.values(), *self._board_families(lost)]

    def _board_families(self, lost: set[int]) -> list[Family]:
        gpus = (BoardGpu(gpu.index, gpu.uuid, _module_id(gpu.index), gpu.pcie_errors)
                for gpu in self.gpus if gpu.index not in lost)
        return board_families(self.profile, self.place, gpus)

    def _gpu_identity_power_thermal(self, f: dict[str, Family], gpu: GpuState, util: float) -> None:
        g, sc, i = self.profile.gpu, self.scenario, str(gpu.index)
        bus = f"00000000:{0x18 + 0x10 * gpu.index:02X}:00.0"
        f["blackwell_gpu_info"].add(
            (i, gpu.uuid, g.name, bus, g.architecture, g.compute_capability, "580.159.04",
             "97.00.B9.00.2F", _module_id(gpu.index)), 1)
        f["blackwell_gpu_utilization_ratio"].add((i,), round(util, 4))
        failing = gpu.index == self._gpu(sc.nvml_read_error_gpu)
        f["blackwell_gpu_nvml_partial_read"].add((i, gpu.uuid), int(failing))
        if gpu.nvml_read_errors:
            f["blackwell_gpu_nvml_read_errors_total"].add((i, gpu.uuid, "memory_info"), gpu.nvml_read_errors)
        f["blackwell_gpu_memory_utilization_ratio"].add((i,), round(util * 0.62, 4))
        if not failing:  # the failed call's series are left out, the GPU's others stay
            used = g.memory_bytes * (0.90 if self.load_now > 0 else 0.02)
            f["blackwell_gpu_memory_used_bytes"].add((i,), float(int(used)))
            # The driver's reserve, in the proportion the real H200 reported (616 of 143,771 MiB).
            f["blackwell_gpu_memory_reserved_bytes"].add((i,), float(int(g.memory_bytes * 616 / 143771)))
        f["blackwell_gpu_memory_total_bytes"].add((i,), g.memory_bytes)
        f["blackwell_gpu_power_watts"].add((i,), round(self.power(gpu.index, util), 2))
        f["blackwell_gpu_power_limit_watts"].add((i,), g.power_limit_watts)
        f["blackwell_gpu_energy_joules_total"].add((i,), round(gpu.energy_joules, 3))
        temp = 38 + 35 * util + (22 if gpu.index == self._gpu(sc.thermal_throttle_gpu) else 0)
        f["blackwell_gpu_temperature_celsius"].add((i,), round(temp + self.rng.gauss(0, 0.5)))
        f["blackwell_gpu_memory_temperature_celsius"].add((i,), round(temp + 6 + self.rng.gauss(0, 0.5)))

    def _gpu_clocks_and_errors(self, f: dict[str, Family], gpu: GpuState, util: float) -> None:
        g, sc, i = self.profile.gpu, self.scenario, str(gpu.index)
        throttled = gpu.index in (self._gpu(sc.thermal_throttle_gpu), self._gpu(sc.power_cap_gpu))
        sm_clock = g.sm_clock_max_mhz * (0.72 if throttled else 1.0) if util > 0.05 else 345
        f["blackwell_gpu_sm_clock_hertz"].add((i,), sm_clock * 1e6)
        f["blackwell_gpu_memory_clock_hertz"].add((i,), g.memory_clock_mhz * 1e6)
        f["blackwell_gpu_performance_state"].add((i,), 0 if util > 0.05 else 8)
        f["blackwell_gpu_pcie_link_generation"].add((i,), 5)
        f["blackwell_gpu_pcie_link_width"].add((i,), 16)
        for reason, seconds in gpu.clock_event_seconds.items():
            f["blackwell_gpu_clock_event_seconds_total"].add((i, reason), round(seconds, 6))
        for reason in CLOCK_REASONS:
            active = (reason in ("sw_thermal", "hw_thermal") and gpu.index == self._gpu(sc.thermal_throttle_gpu)) or (
                reason == "sw_power_cap" and gpu.index == self._gpu(sc.power_cap_gpu))
            f["blackwell_gpu_clock_event_active"].add((i, reason), int(active))
        for error in ("corrected", "uncorrected"):
            for counter in ("volatile", "aggregate"):
                f["blackwell_gpu_ecc_errors_total"].add((i, error, counter), int(gpu.ecc.get((error, counter), 0.0)))
        f["blackwell_gpu_remapped_rows_total"].add((i, "correctable"), gpu.remapped_correctable)
        f["blackwell_gpu_remapped_rows_total"].add((i, "uncorrectable"), gpu.remapped_uncorrectable)
        f["blackwell_gpu_remapped_rows_pending"].add((i,), 0)
        f["blackwell_gpu_remapped_rows_failure"].add((i,), int(sc.row_remap_failure and gpu.index == self._gpu(1)))
        f["blackwell_gpu_pcie_replay_total"].add((i,), int(gpu.pcie_replays))
        for xid, count in sorted(gpu.xids.items()):
            f["blackwell_gpu_xid_errors_total"].add((i, str(xid)), count)

    def _gpu_activity_and_c2c(self, f: dict[str, Family], gpu: GpuState, util: float) -> None:
        p, g, i = self.profile, self.profile.gpu, str(gpu.index)
        tensor = util * 0.68
        for pipe, share in (("any", 1.0), ("hmma", 1.0), ("imma", 0.0), ("dfma", 0.0), ("dmma", 0.0)):
            f["blackwell_gpu_tensor_active_ratio"].add((i, pipe), round(tensor * share, 4))
        dram = min(1.0, 0.25 + 0.7 * min(self.load_now, 1.0))
        f["blackwell_gpu_dram_bandwidth_utilization_ratio"].add((i,), round(dram, 4))
        f["blackwell_gpu_sm_active_ratio"].add((i,), round(util * 0.93, 4))
        f["blackwell_gpu_sm_occupancy_ratio"].add((i,), round(util * 0.41, 4))
        f["blackwell_gpu_hbm_peak_bandwidth_bytes_per_second"].add((i,), g.hbm_peak_bytes_per_second)
        f["blackwell_c2c_enabled"].add((i,), int(p.c2c))
        if not p.c2c:
            return
        f["blackwell_c2c_link_up"].add((i,), 1)
        hbm_reads = dram * g.hbm_peak_bytes_per_second
        share = min(0.95, max(0.0, self.c2c_share + self.rng.gauss(0, 0.002)))
        c2c_data = hbm_reads * share / (1.0 - share)
        for kind, factor in (("data", 1.0), ("total", 1.08)):
            f["blackwell_c2c_rx_bytes_per_second"].add((i, kind), round(c2c_data * factor))
            f["blackwell_c2c_tx_bytes_per_second"].add((i, kind), round(c2c_data * 0.1 * factor))

    def _nvlink_families(self) -> list[Family]:
        g = self.profile.gpu
        lost = self._lost()
        names = ["blackwell_nvlink_link_info", "blackwell_nvlink_link_up", "blackwell_nvlink_link_speed_bytes_per_second",
                 "blackwell_nvlink_throughput_bytes_total", "blackwell_nvlink_link_rx_bytes_per_second",
                 "blackwell_nvlink_link_tx_bytes_per_second"]
        if g.nvlink5_counters:
            names += ["blackwell_nvlink5_errors_total", "blackwell_nvlink5_recovery_events_total",
                      "blackwell_nvlink5_bit_error_rate", "blackwell_nvlink_tx_bytes_total",
                      "blackwell_nvlink_rx_bytes_total", "blackwell_nvlink5_packets_total",
                      "blackwell_nvlink5_fec_history_total"]
        else:
            names += ["blackwell_nvlink_crc_flit_errors_total", "blackwell_nvlink_crc_data_errors_total",
                      "blackwell_nvlink_replay_errors_total", "blackwell_nvlink_recovery_errors_total",
                      "blackwell_nvlink_ecc_data_errors_total", "blackwell_nvlink_dl_crc_errors_total",
                      "blackwell_nvlink_dl_replay_errors_total", "blackwell_nvlink_dl_recovery_errors_total"]
        f = {name: Family(name) for name in names}
        links = g.nvlink_links
        for gpu in self.gpus:
            if gpu.index in lost:
                continue
            i = str(gpu.index)
            rate = (gpu.nvlink_tx_bytes / max(1e-9, self.last - self.started)) if self.last > self.started else 0.0
            for kind, factor in (("data", 1.0), ("raw", 1.06)):
                f["blackwell_nvlink_throughput_bytes_total"].add((i, "tx", kind), round(gpu.nvlink_tx_bytes * factor))
                f["blackwell_nvlink_throughput_bytes_total"].add((i, "rx", kind), round(gpu.nvlink_rx_bytes * factor))
            for link in range(links):
                ln = str(link)
                # Every profile's links end at an NVSwitch (as NVML reports even on the 2-GPU H200 box).
                remote_type, remote_bus = "switch", f"00000000:{0x80 + link // 4:02X}:00.0"
                f["blackwell_nvlink_link_info"].add((i, ln, str(g.nvlink_version), remote_type, remote_bus), 1)
                f["blackwell_nvlink_link_up"].add((i, ln), 1)
                f["blackwell_nvlink_link_speed_bytes_per_second"].add((i, ln), g.nvlink_link_bytes_per_second)
                per_link = rate / links * (1.0 + self.rng.gauss(0, 0.02))
                f["blackwell_nvlink_link_rx_bytes_per_second"].add((i, ln), round(max(0.0, per_link)))
                f["blackwell_nvlink_link_tx_bytes_per_second"].add((i, ln), round(max(0.0, per_link)))
                err = gpu.nvlink_errors
                if g.nvlink5_counters:
                    self._nvlink5_link(f, gpu, link)
                else:
                    crc = int(err.get((link, "crc_flit"), 0.0))
                    f["blackwell_nvlink_crc_flit_errors_total"].add((i, ln), crc)
                    f["blackwell_nvlink_crc_data_errors_total"].add((i, ln), 0)
                    f["blackwell_nvlink_replay_errors_total"].add((i, ln), int(err.get((link, "replay"), 0.0)))
                    f["blackwell_nvlink_recovery_errors_total"].add((i, ln), int(err.get((link, "recovery"), 0.0)))
                    f["blackwell_nvlink_ecc_data_errors_total"].add((i, ln), 0)
                    f["blackwell_nvlink_dl_crc_errors_total"].add((i, ln), int(err.get((link, "dl_crc"), 0.0)))
                    f["blackwell_nvlink_dl_replay_errors_total"].add((i, ln), int(err.get((link, "replay"), 0.0)))
                    f["blackwell_nvlink_dl_recovery_errors_total"].add((i, ln), int(err.get((link, "recovery"), 0.0)))
        return list(f.values())

    def _nvlink5_link(self, f: dict[str, Family], gpu: GpuState, link: int) -> None:
        """One link's NVLink5 counters: errors, recoveries, BER, bytes and packets, FEC history."""
        g, i, ln = self.profile.gpu, str(gpu.index), str(link)
        err, fec = gpu.nvlink_errors, gpu.fec[link]
        counted = {**{kind: err.get((link, kind), 0.0) for kind in NVLINK5_ERROR_KINDS},
                   "effective": fec.effective_errors, "symbol": fec.symbol_errors}
        for kind in NVLINK5_ERROR_KINDS:
            f["blackwell_nvlink5_errors_total"].add((i, ln, kind), int(counted[kind]))
        ok = int(err.get((link, "recovery_successful"), 0.0))
        f["blackwell_nvlink5_recovery_events_total"].add((i, ln, "successful"), ok)
        f["blackwell_nvlink5_recovery_events_total"].add((i, ln, "failed"), 0)
        f["blackwell_nvlink5_recovery_events_total"].add((i, ln, "total"), ok)
        bits = max(1.0, (self.last - self.started) * g.nvlink_link_bytes_per_second * 8)
        f["blackwell_nvlink5_bit_error_rate"].add((i, ln, "symbol"), counted["symbol"] / bits)
        f["blackwell_nvlink5_bit_error_rate"].add((i, ln, "effective"), counted["effective"] / bits)
        links = g.nvlink_links
        for direction, sent in (("tx", gpu.nvlink_tx_bytes / links), ("rx", gpu.nvlink_rx_bytes / links)):
            f[f"blackwell_nvlink_{direction}_bytes_total"].add((i, ln), round(sent))
            f["blackwell_nvlink5_packets_total"].add((i, ln, direction), int(sent / NVLINK_PACKET_BYTES))
        for n in range(BINS):
            f["blackwell_nvlink5_fec_history_total"].add((i, ln, str(n)), int(fec.bins[n]))

    def _serving_families(self) -> list[Family]:
        p, sc = self.profile, self.scenario
        model, version = p.model, "1"
        runtime, endpoint = "triton", "http://127.0.0.1:8002/metrics"
        f = {name: Family(name) for name in (
            "blackwell_serving_up", "blackwell_serving_live", "blackwell_serving_ready", "blackwell_serving_runtime_info",
            "blackwell_serving_model_ready", "blackwell_serving_request_success_total",
            "blackwell_serving_request_failure_total", "blackwell_serving_inference_count_total",
            "blackwell_serving_execution_count_total", "blackwell_serving_request_duration_seconds_total",
            "blackwell_serving_queue_duration_seconds_total", "blackwell_serving_compute_duration_seconds_total",
            "blackwell_serving_pending_requests", "blackwell_serving_ttft_seconds",
            "blackwell_serving_inter_token_latency_seconds", "blackwell_serving_e2e_latency_seconds",
            "blackwell_serving_queue_time_seconds", "blackwell_serving_prompt_tokens_total",
            "blackwell_serving_generation_tokens_total", "blackwell_serving_prompt_length_tokens",
            "blackwell_serving_batch_requests", "blackwell_serving_kv_cache_blocks",
            "blackwell_serving_kv_cache_reused_blocks", "blackwell_serving_kv_cache_tokens_per_block",
            "blackwell_serving_kv_cache_hit_ratio", "blackwell_serving_runtime_memory_bytes",
            "blackwell_serving_iterations_total",
        )}
        f["blackwell_serving_up"].add((runtime, endpoint), 1)
        f["blackwell_serving_live"].add((runtime, endpoint), 1)
        f["blackwell_serving_ready"].add((runtime, endpoint), int(sc.serving_ready))
        f["blackwell_serving_runtime_info"].add((runtime, endpoint, "trtllm-cpp-backend", "2.51.0"), 1)
        f["blackwell_serving_model_ready"].add((model, version, endpoint), int(sc.serving_ready))
        mv = (model, version)
        f["blackwell_serving_request_success_total"].add((*mv, endpoint), int(self.requests_ok))
        for reason, count in self.requests_failed.items():
            f["blackwell_serving_request_failure_total"].add((model, version, reason, endpoint), int(count))
        f["blackwell_serving_inference_count_total"].add((*mv, endpoint), int(self.requests_ok))
        f["blackwell_serving_execution_count_total"].add((*mv, endpoint), int(self.executions))
        f["blackwell_serving_request_duration_seconds_total"].add((*mv, endpoint), round(self.request_seconds, 6))
        f["blackwell_serving_queue_duration_seconds_total"].add((*mv, endpoint), round(self.queue_seconds, 6))
        for phase, seconds in self.compute_seconds.items():
            f["blackwell_serving_compute_duration_seconds_total"].add((model, version, phase, endpoint), round(seconds, 6))
        active = int(p.max_batch_size * min(1.0, self.load_now))
        waiting = sc.requests_queued + (int(self.rng.random() * 3) if self.load_now > 0.8 else 0)
        f["blackwell_serving_pending_requests"].add((*mv, endpoint), waiting)
        f["blackwell_serving_ttft_seconds"].add((model, endpoint), self.ttft.value())
        f["blackwell_serving_inter_token_latency_seconds"].add((model, endpoint), self.itl.value())
        f["blackwell_serving_e2e_latency_seconds"].add((model, endpoint), self.e2e.value())
        f["blackwell_serving_queue_time_seconds"].add((model, endpoint), self.queue_time.value())
        f["blackwell_serving_prompt_length_tokens"].add((model, endpoint), self.prompt_len.value())
        f["blackwell_serving_prompt_tokens_total"].add((model, endpoint), int(self.prompt_tokens))
        f["blackwell_serving_generation_tokens_total"].add((model, endpoint), int(self.output_tokens))
        context = max(0, int(active * 0.08))
        for state, value in (("active", active), ("max", p.max_batch_size), ("scheduled", active),
                             ("context", context), ("generation", active - context), ("waiting", waiting),
                             ("paused", 0)):
            f["blackwell_serving_batch_requests"].add((model, state, endpoint), value)
        used = int(p.kv_cache_max_blocks * self.kv_occupancy())
        f["blackwell_serving_kv_cache_blocks"].add((model, "max", endpoint), p.kv_cache_max_blocks)
        f["blackwell_serving_kv_cache_blocks"].add((model, "used", endpoint), used)
        f["blackwell_serving_kv_cache_blocks"].add((model, "free", endpoint), p.kv_cache_max_blocks - used)
        f["blackwell_serving_kv_cache_reused_blocks"].add((model, endpoint), int(used * 0.3))
        f["blackwell_serving_kv_cache_tokens_per_block"].add((model, endpoint), 32)
        f["blackwell_serving_kv_cache_hit_ratio"].add((model, endpoint), round(0.3 + self.rng.gauss(0, 0.01), 4))
        hbm = p.gpu.memory_bytes
        for memory_type, value in (("gpu", hbm * 0.88 * p.tensor_parallel), ("cpu", 24e9), ("pinned", 2e9)):
            f["blackwell_serving_runtime_memory_bytes"].add((model, memory_type, endpoint), float(int(value)))
        f["blackwell_serving_iterations_total"].add((model, endpoint), int(self.iterations))
        return list(f.values())

    def _precision_families(self) -> list[Family]:
        lost = self._lost()
        launches = Family("blackwell_gemm_kernel_launches_total")
        seconds = Family("blackwell_gemm_kernel_seconds_total")
        for gpu in self.gpus:
            if gpu.index in lost:
                continue
            for precision in PRECISIONS:
                launches.add((str(gpu.index), precision), int(gpu.gemm_launches.get(precision, 0.0)))
                seconds.add((str(gpu.index), precision), round(gpu.gemm_seconds.get(precision, 0.0), 6))
        promotions = Family("blackwell_te_promotion_events_total")
        for layer in sorted(self.te_promotions, key=int):
            promotions.add((layer,), int(self.te_promotions[layer]))
        return [launches, seconds, promotions]


def _module_id(index: int) -> str:
    """The board's module id of GPU ``index`` (1-4 per quad, as nvmlDeviceGetModuleId numbers them)."""
    return str(index % 4 + 1)
