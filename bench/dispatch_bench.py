"""Bench the in-process dispatch sampler on a real GPU: exported precision split and overhead.

1. Split: two known mixes of bf16 and fp8 (torch._scaled_mm) matrix products run under the
   sampler; the launches and GPU seconds it exported per precision are compared with the mix
   (launch shares are exact by construction; second shares are measured with CUDA events).
2. Overhead: a decode-like loop (small GEMMs + elementwise kernels, launch-bound, the worst case
   for a tracer) runs in alternating blocks without and with the sampler at the default duty
   cycle, and with tracing always on; throughput is compared block by block.

    python3 bench/dispatch_bench.py OUT_DIR [--quick]
Writes OUT_DIR/dispatch_bench.json and prints a markdown report.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from exporter.dispatch_reader import StateReader
from exporter.dispatch_table import KernelClassifier
from exporter.inprocess import DEFAULT_DUTY_CYCLE, DEFAULT_PERIOD
from exporter.inprocess.sampler import DispatchSampler

DEV = "cuda"


def _fp8(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-400, 400).to(torch.float8_e4m3fn)


class Mix:
    """One iteration = ``bf16`` bf16 GEMMs then ``fp8`` fp8 GEMMs, same shape."""

    def __init__(self, bf16: int, fp8: int, m: int = 2048, n: int = 4096, k: int = 4096) -> None:
        self.bf16, self.fp8 = bf16, fp8
        self.a = torch.randn(m, k, device=DEV, dtype=torch.bfloat16)
        self.b = torch.randn(k, n, device=DEV, dtype=torch.bfloat16)
        self.a8 = _fp8(torch.randn(m, k, device=DEV))
        self.b8 = _fp8(torch.randn(n, k, device=DEV)).t()
        self.one = torch.tensor(1.0, device=DEV)

    def run_bf16(self) -> None:
        torch.mm(self.a, self.b)

    def run_fp8(self) -> None:
        torch._scaled_mm(self.a8, self.b8, self.one, self.one, out_dtype=torch.bfloat16)

    def step(self) -> None:
        for _ in range(self.bf16):
            self.run_bf16()
        for _ in range(self.fp8):
            self.run_fp8()


def kernel_ms(fn, reps: int = 200) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(20):
        fn()
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def totals(path: Path) -> dict[str, dict[str, float]]:
    """Launches and GPU seconds per precision of one state file, classified as the dispatch source does."""
    state = StateReader().read(path)
    table = KernelClassifier.load()
    out = {"launches": {}, "seconds": {}, "kernels": 0.0}
    unrecognized = {}
    for entry in state["gpus"].values():
        for name, launches, nanoseconds in zip(entry["names"], entry["counts"][::2], entry["counts"][1::2], strict=True):
            precision, rule = table.decide(name)
            if precision is None:
                continue
            out["launches"][precision] = out["launches"].get(precision, 0) + launches
            out["seconds"][precision] = out["seconds"].get(precision, 0.0) + nanoseconds * 1e-9
            if rule.startswith("default:"):
                unrecognized[name] = unrecognized.get(name, 0) + launches
        out["kernels"] += entry["kernels"]
    out["state"] = {k: state[k] for k in ("windows", "sampled_seconds", "records", "dropped_records",
                                          "incomplete_records")}
    out["state"]["unrecognized_gemms"] = unrecognized
    return out


def split_run(mix: Mix, seconds: float, state_dir: Path, name: str) -> dict:
    sampler = DispatchSampler(state_dir / f"{name}.json", duty_cycle=DEFAULT_DUTY_CYCLE, period=1.0, process=name)
    sampler.start()
    t0 = time.monotonic()
    steps = 0
    while time.monotonic() - t0 < seconds:
        mix.step()
        steps += 1
        if steps % 20 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    sampler.stop()
    # the final window's state is written by the sampler thread before it exits
    got = totals(sampler.state_path)
    bf16_ms, fp8_ms = kernel_ms(mix.run_bf16), kernel_ms(mix.run_fp8)
    launches = got["launches"]
    gemm = sum(launches.values())
    expected_launch_fp8 = mix.fp8 / (mix.bf16 + mix.fp8)
    expected_seconds_fp8 = mix.fp8 * fp8_ms / (mix.fp8 * fp8_ms + mix.bf16 * bf16_ms)
    secs = got["seconds"]
    return {
        "mix": f"{mix.bf16} bf16 : {mix.fp8} fp8 per step", "seconds": seconds, "steps": steps,
        "bf16_kernel_ms": bf16_ms, "fp8_kernel_ms": fp8_ms,
        "exported_launches": launches, "exported_seconds": secs,
        "launch_share_fp8_expected": expected_launch_fp8,
        "launch_share_fp8_exported": launches.get("fp8", 0) / gemm if gemm else None,
        "seconds_share_fp8_expected": expected_seconds_fp8,
        "seconds_share_fp8_exported": secs.get("fp8", 0) / sum(secs.values()) if gemm else None,
        "sampler": got["state"],
    }


class Decode:
    """A launch-bound decode-like step: 8 layers x (4 small GEMMs + 4 elementwise kernels)."""

    def __init__(self) -> None:
        self.x = torch.randn(16, 4096, device=DEV, dtype=torch.bfloat16)
        self.w = [torch.randn(4096, 4096, device=DEV, dtype=torch.bfloat16) for _ in range(4)]
        self.w8 = [_fp8(torch.randn(4096, 4096, device=DEV)).t() for _ in range(4)]
        self.x8 = _fp8(torch.randn(16, 4096, device=DEV))
        self.one = torch.tensor(1.0, device=DEV)

    def step(self) -> None:
        h = self.x
        for layer in range(8):
            h = torch.mm(h, self.w[layer % 4])
            h = torch.nn.functional.silu(h) * h
            torch._scaled_mm(self.x8, self.w8[layer % 4], self.one, self.one, out_dtype=torch.bfloat16)
            h = h + self.x


def throughput(work: Decode, seconds: float) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    steps = 0
    while True:
        for _ in range(10):
            work.step()
        torch.cuda.synchronize()
        steps += 10
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return steps / elapsed


def overhead_run(block: float, rounds: int, state_dir: Path) -> dict:
    work = Decode()
    throughput(work, 3.0)  # warm up clocks and caches
    modes = {"off": [], f"duty {DEFAULT_DUTY_CYCLE} / {DEFAULT_PERIOD:g}s": [], "always on": []}
    coverage: dict[str, list[float]] = {mode: [] for mode in modes}
    for r in range(rounds):
        for mode in modes:
            sampler = None
            if mode != "off":
                duty, period = (1.0, block) if mode == "always on" else (DEFAULT_DUTY_CYCLE, DEFAULT_PERIOD)
                sampler = DispatchSampler(state_dir / f"overhead-{r}-{len(modes[mode])}.json", duty, period,
                                          "overhead", seed=r)
                sampler.start()
            modes[mode].append(throughput(work, block))
            if sampler is not None:
                sampler.stop()
                coverage[mode].append(sampler.accumulator.sampled_seconds / block)
    base = statistics.mean(modes["off"])
    return {
        "block_seconds": block, "rounds": rounds, "steps_per_second": modes,
        "overhead_percent": {m: 100.0 * (1 - statistics.mean(v) / base) for m, v in modes.items() if m != "off"},
        "coverage": {m: statistics.mean(v) for m, v in coverage.items() if v},
        "baseline_spread_percent": 100.0 * (max(modes["off"]) - min(modes["off"])) / base,
        "kernels_per_step": 8 * 5,
    }


def main() -> None:
    out = Path(sys.argv[1])
    quick = "--quick" in sys.argv
    state_dir = Path(tempfile.mkdtemp(prefix="dispatch-bench-"))
    torch.manual_seed(0)
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
            "duty_cycle_default": DEFAULT_DUTY_CYCLE, "period_default": DEFAULT_PERIOD}
    split_seconds = 5 if quick else 20
    splits = [split_run(Mix(3, 1), split_seconds, state_dir, "mix-3-1"),
              split_run(Mix(1, 3), split_seconds, state_dir, "mix-1-3")]
    for s in splits:
        print(json.dumps({k: v for k, v in s.items() if k != "sampler"}), flush=True)
    overhead = overhead_run(block=5 if quick else 30, rounds=2, state_dir=state_dir)
    print(json.dumps(overhead), flush=True)
    classifier = KernelClassifier.load()
    report = {"meta": meta, "splits": splits, "overhead": overhead,
              "table_rules": len(classifier.precision)}
    (out / "dispatch_bench.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
