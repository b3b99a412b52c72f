"""Simulated engine, dispatch-sampler and log-rule series, next to the box model's GEMM counters.

The box model (``model.py``) already fills the GEMM launch/seconds counters per precision and the
TE promotion counter. This adds what the engine, dispatch and logs sources would report on the
same box: the engine's build config (an MX-FP4 Qwen2.5-72B-shaped engine on Blackwell, FP8 on
Hopper, listed through the same layer code the engine source uses), the Python sampler's
health at its default duty cycle, and log-rule counters that the scenarios move (FP8 fallback
warnings in ``fp8-fallback``, cold-start events in ``cold-start``).

Use: ``extras = PrecisionExtras(profile)``; each model advance calls
``extras.advance(scenario, dt, load, lost)``; the model's families add ``*extras.families()``.
"""

from __future__ import annotations

from collections import Counter

from exporter.inprocess import DEFAULT_DUTY_CYCLE
from exporter.quant.layers import linear_layers
from exporter.snapshot import Family
from exporter.sources.engine import PRECISIONS
from exporter.sources.simulated.profiles import Profile
from exporter.sources.simulated.scenarios import Scenario

ENGINE = "simulated"
# Qwen2.5-72B: the model the product brief's healthy serving numbers are quoted for.
MODEL = {"num_hidden_layers": 80, "hidden_size": 8192, "num_attention_heads": 64, "num_key_value_heads": 8,
         "head_size": 128, "intermediate_size": 29568, "vocab_size": 152064}
GEMMS_PER_STEP = 2.0 * 80 * 4  # same launch rate as the box model's _advance_precision
KERNELS_PER_GEMM = 2.5  # norms, activations, attention, communication between the GEMMs
GEMM_TIME_SHARE = 0.7
SECONDS_PER_GEMM = 30e-6
FALLBACK_WARNINGS_PER_SECOND = 0.5  # one warning per fallback decision, rate-limited by the runtime
COLD_START_EVENTS = {"engine_load": 1, "cuda_graph_capture": 6, "autotune": 24, "jit_compile": 12}


class PrecisionExtras:
    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        blackwell = profile.gpu.architecture == "blackwell"
        self.quant_algo = "W4A8_MXFP4_FP8" if blackwell else "FP8"
        self.windows = 0.0
        self.sampled_seconds = 0.0
        self.records = 0.0
        self.kernels: Counter[int] = Counter()
        self.kernel_seconds: Counter[int] = Counter()
        self.fallback_warnings = 0.0
        self.cold_start: Counter[str] = Counter(dict.fromkeys(COLD_START_EVENTS, 0))
        self._cold_counted = False
        self.age = 0.0

    def advance(self, scenario: Scenario, dt: float, load: float, lost: set[int] = frozenset()) -> None:
        """``lost``: the model's lost GPUs (scenario GPU numbers already mapped onto this box)."""
        if dt <= 0:
            return
        p = self.profile
        # Kernels inside the sampler's windows: about its duty cycle of all the box launches.
        launches = GEMMS_PER_STEP / p.itl_median_seconds * min(load, 1.0) * KERNELS_PER_GEMM * dt * DEFAULT_DUTY_CYCLE
        for gpu in range(p.gpu_count):
            if gpu in lost:
                continue
            self.kernels[gpu] += launches
            self.kernel_seconds[gpu] += launches / KERNELS_PER_GEMM * SECONDS_PER_GEMM / GEMM_TIME_SHARE
        self.sampled_seconds += dt * DEFAULT_DUTY_CYCLE
        self.windows = self.sampled_seconds / (DEFAULT_DUTY_CYCLE * 30.0)
        self.records += launches * (p.gpu_count - len(lost))
        self.age = (self.age + dt) % 30.0
        if scenario.fp8_share > 0.05 and p.gpu.architecture == "blackwell":
            self.fallback_warnings += FALLBACK_WARNINGS_PER_SECOND * dt
        if scenario.cold_start and not self._cold_counted:
            for event, count in COLD_START_EVENTS.items():
                self.cold_start[event] += count * (p.gpu_count if event != "engine_load" else 1)
            self._cold_counted = True

    def families(self) -> list[Family]:
        p = self.profile
        info = Family("blackwell_engine_info").add(
            (ENGINE, "trtllm-engine", self.quant_algo, "FP8", str(p.tensor_parallel), "1", "",
             f"context_fmha,gemm_plugin={self.quant_algo.lower()},paged_kv_cache,remove_input_padding,"
             "use_fp8_context_fmha,use_paged_context_fmha"), 1)
        layers = Family("blackwell_engine_gemm_layers")
        params = Family("blackwell_engine_gemm_parameters")
        counts: Counter[str] = Counter()
        weights: Counter[str] = Counter()
        family = "fp8" if self.quant_algo == "FP8" else "fp4"
        for layer in linear_layers(MODEL, "trtllm"):
            precision = "excluded" if layer.name == "lm_head" else family
            counts[precision] += 1
            weights[precision] += layer.parameters
        for precision in PRECISIONS:
            layers.add((ENGINE, precision), counts[precision])
            params.add((ENGINE, precision), weights[precision])
        process = "rank0"
        health = [
            Family("blackwell_dispatch_sampler_windows_total").add((process,), int(self.windows)),
            Family("blackwell_dispatch_sampler_sampled_seconds_total").add((process,), round(self.sampled_seconds, 3)),
            Family("blackwell_dispatch_sampler_records_total").add((process,), int(self.records)),
            Family("blackwell_dispatch_sampler_dropped_records_total").add((process,), 0),
            Family("blackwell_dispatch_sampler_duty_cycle_ratio").add((process,), DEFAULT_DUTY_CYCLE),
            Family("blackwell_dispatch_sampler_state_age_seconds").add((process,), round(self.age, 1)),
            Family("blackwell_dispatch_sampler_windows_skipped_total").add((process,), 0),
            Family("blackwell_dispatch_sampler_status").add((process, "python", "sampling", ""), 1),
            Family("blackwell_dispatch_table_last_reload_successful").add((), 1),
            Family("blackwell_dispatch_kernel_names_pending").add((), 0),  # every name classified as it comes
        ]
        kernels = Family("blackwell_dispatch_kernel_launches_total")
        kernel_seconds = Family("blackwell_dispatch_kernel_seconds_total")
        # The simulated table knows every GEMM and the writer's name bound is never reached: the
        # series a real dispatch source exports per GPU are all there, at 0.
        per_gpu_zero = [Family(name) for name in (
            "blackwell_dispatch_overflow_kernel_launches_total", "blackwell_dispatch_unrecognized_gemm_launches_total",
            "blackwell_dispatch_unrecognized_gemm_names")]
        for gpu in sorted(self.kernels):
            kernels.add((str(gpu),), int(self.kernels[gpu]))
            kernel_seconds.add((str(gpu),), round(self.kernel_seconds[gpu], 6))
            for family in per_gpu_zero:
                family.add((str(gpu),), 0)
        logs = [
            Family("blackwell_fp8_fallback_warnings_total").add(("fp8_fallback",), int(self.fallback_warnings)),
            Family("blackwell_cuda_oom_errors_total").add((), 0),
        ]
        cold = Family("blackwell_engine_cold_start_events_total")
        for event, count in sorted(self.cold_start.items()):
            cold.add((event,), count)
        return [info, layers, params, *health, kernels, kernel_seconds, *per_gpu_zero, *logs, cold]
