"""GPU proof of the CUPTI injection library (native/): kernel names, shares, guests' rules.

Run on the GPU machine by bench/inject_device.sh; each subcommand prints one JSON object.

    python3 bench/inject_proof.py kernels            # record gemv / split-K kernel names (torch.profiler)
    python3 bench/inject_proof.py shares DIR         # classify every state file in DIR (dispatch_table.yaml)
    python3 bench/inject_proof.py spawn DIR          # parent spawns 2 workers with known mixes (run under the library)
    python3 bench/inject_proof.py profiler DIR DELAY # a torch.profiler user under the library
    python3 bench/inject_proof.py mix SECONDS BF16 FP8 [python-sampler DIR]  # one mix, for library vs cupti-python
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from exporter.dispatch_reader import StateReader
from exporter.dispatch_table import KernelClassifier
from exporter.inprocess.state import StateError

PRECISIONS = ("fp4", "fp8", "16bit", "other")


def read(path: Path) -> dict:
    """A state file as the exporter reads it (names from a version 4 names file); a version 1 file as it is."""
    try:
        return StateReader().read(path)
    except StateError as exc:
        if exc.reason != "outdated":
            raise
        return json.loads(path.read_text())


def classify_state(state: dict, table: KernelClassifier) -> dict:
    """Launches and GPU ns per precision path of a state as ``read`` gives it (raw names; v1: classified)."""
    launches = dict.fromkeys(PRECISIONS, 0)
    unknown: dict[str, int] = {}
    for gpu in state["gpus"].values():
        if "names" not in gpu:  # version 1: classified in the serving process
            for precision, count in gpu["gemm_launches"].items():
                launches[precision] += count
            continue
        names, counts = gpu["names"], gpu["counts"]  # its [launches, gpu_ns] pairs flat in counts
        pairs = zip(names, zip(counts[::2], counts[1::2], strict=True), strict=True)
        for name, (count, _ns) in pairs:
            precision = table.classify(name)
            if precision is not None:
                launches[precision] += count
                if table.explain(name).startswith("default:"):
                    unknown[name] = count
    gemm = sum(launches.values())
    return {"gemm_launches": launches, "fp8_share": launches["fp8"] / gemm if gemm else None,
            "unrecognized": unknown, **{k: state.get(k) for k in (
                "process", "pid", "status", "reason", "detail", "windows", "windows_skipped",
                "sampled_seconds", "records", "dropped_records", "incomplete_records", "detaches")}}


def shares(directory: Path) -> dict:
    table = KernelClassifier.load()
    files = {p.name: classify_state(read(p), table) for p in sorted(directory.glob("*.json"))}
    total = dict.fromkeys(PRECISIONS, 0)
    for entry in files.values():
        for precision, count in entry["gemm_launches"].items():
            total[precision] += count
    gemm = sum(total.values())
    return {"files": files, "summed": total, "summed_fp8_share": total["fp8"] / gemm if gemm else None}


def _products(m: int):
    import torch

    a = torch.randn(m, 4096, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    m8 = m if m % 16 == 0 else 16  # torch._scaled_mm needs M divisible by 16
    a8 = torch.randn(m8, 4096, device="cuda").to(torch.float8_e4m3fn)
    w8 = torch.randn(4096, 4096, device="cuda").to(torch.float8_e4m3fn).t()
    one = torch.tensor(1.0, device="cuda")
    return (lambda: torch.mm(a, w)), (lambda: torch._scaled_mm(a8, w8, one, one, out_dtype=torch.bfloat16)), m8


def run_mix(bf16: int, fp8: int, m: int, seconds: float, graphs: bool) -> dict:
    """Steps of bf16 then fp8 products for ``seconds``; eager or replayed from a CUDA graph."""
    import torch

    run16, run8, m8 = _products(m)

    def step() -> None:
        for _ in range(bf16):
            run16()
        for _ in range(fp8):
            run8()

    replay = step
    if graphs:
        step()
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(4):
                step()
        replay = graph.replay
    steps, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        replay()
        steps += 4 if graphs else 1
        if steps % 32 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    return {"m": m, "fp8_m": m8, "graphs": graphs, "steps": steps}


def worker(bf16: int, fp8: int, seconds: float) -> None:
    phases = [run_mix(bf16, fp8, m, seconds, graphs) for m in (2048, 1) for graphs in (False, True)]
    print(json.dumps({"pid": os.getpid(), "mix": [bf16, fp8], "phases": phases}), flush=True)


def spawn(directory: Path) -> dict:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    mixes = {"worker-a": (3, 1), "worker-b": (1, 3)}
    procs = []
    for name, (bf16, fp8) in mixes.items():
        os.environ["BLACKWELL_DISPATCH_PROCESS"] = name  # inherited by the spawned child, like a rank variable
        procs.append(context.Process(target=worker, args=(bf16, fp8, 3.0)))
        procs[-1].start()
    for proc in procs:
        proc.join()
    result = shares(directory)
    result["expected_fp8_share"] = {f"{n}.json": fp8 / (bf16 + fp8) for n, (bf16, fp8) in mixes.items()}
    result["expected_summed_fp8_share_if_equal_launches"] = 0.5
    result["exit_codes"] = [p.exitcode for p in procs]
    return result


def profiler(directory: Path, delay: float) -> dict:
    """Runs for ``delay`` s, then under torch.profiler for 4 s, then 3 s more without it."""
    import torch

    run16, _, _ = _products(256)
    name = os.environ.get("BLACKWELL_DISPATCH_PROCESS", f"pid{os.getpid()}")
    path = directory / f"{name}.json"

    def work(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            run16()
            torch.cuda.synchronize()

    work(delay)
    before = json.loads(path.read_text())
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        work(4.0)
        during = json.loads(path.read_text())
    cuda_events = sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
    work(3.0)
    after = json.loads(path.read_text())
    keys = ("status", "reason", "detail", "windows", "windows_skipped")
    return {"before": {k: before[k] for k in keys}, "during_profiler": {k: during[k] for k in keys},
            "after": {k: after[k] for k in keys}, "profiler_cuda_events": cuda_events, "kept_running": True}


def kernels() -> dict:
    """Kernel names of matrix-vector and split-K products, from torch.profiler."""
    import torch
    from torch.nn import functional

    def names(fn) -> list[str]:
        fn()
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        return sorted({e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA})

    out = []

    def record(workload: str, precision: str, fn) -> None:
        try:
            out.append({"workload": workload, "precision": precision, "kernels": names(fn)})
        except Exception as exc:  # a product this torch build refuses: say so in the record
            out.append({"workload": workload, "precision": precision, "error": str(exc)[:200]})

    dev = "cuda"
    for dtype, precision in ((torch.float32, "other"), (torch.float16, "16bit"), (torch.bfloat16, "16bit")):
        x = torch.randn(1, 4096, device=dev, dtype=dtype)
        w = torch.randn(4096, 4096, device=dev, dtype=dtype)
        v = torch.randn(4096, device=dev, dtype=dtype)
        tag = str(dtype).removeprefix("torch.")
        for tf32 in ((False, True) if dtype == torch.float32 else (False,)):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            suffix = " tf32" if tf32 else ""
            record(f"mm {tag}{suffix} 1x4096x4096", precision, lambda x=x, w=w: torch.mm(x, w))
            record(f"mv {tag}{suffix} 4096x4096", precision, lambda w=w, v=v: torch.mv(w, v))
            record(f"linear {tag}{suffix} batch 1", precision, lambda x=x, w=w: functional.linear(x, w))
        torch.backends.cuda.matmul.allow_tf32 = False
        a = torch.randn(64, 65536, device=dev, dtype=dtype)
        b = torch.randn(65536, 64, device=dev, dtype=dtype)
        record(f"mm {tag} 64x64x65536 (split-K)", precision, lambda a=a, b=b: torch.mm(a, b))
        a = torch.randn(16, 32768, device=dev, dtype=dtype)
        b = torch.randn(32768, 128, device=dev, dtype=dtype)
        record(f"mm {tag} 16x128x32768 (split-K)", precision, lambda a=a, b=b: torch.mm(a, b))
    a8 = torch.randn(64, 65536, device=dev).to(torch.float8_e4m3fn)
    b8 = torch.randn(64, 65536, device=dev).to(torch.float8_e4m3fn).t()
    one = torch.tensor(1.0, device=dev)
    record("scaled_mm e4m3 64x64x65536 (split-K)", "fp8",
           lambda: torch._scaled_mm(a8, b8, one, one, out_dtype=torch.bfloat16))
    return {"meta": {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                     "cuda": torch.version.cuda, "capability": list(torch.cuda.get_device_capability())},
            "workloads": out}


def mix_command(seconds: float, bf16: int, fp8: int, sampler_dir: str | None) -> dict:
    sampler = None
    if sampler_dir:
        from exporter.inprocess.sampler import DispatchSampler

        sampler = DispatchSampler(Path(sampler_dir) / "python-sampler.json", 0.5, 1.0, "python-sampler")
        sampler.start()
    result = run_mix(bf16, fp8, 2048, seconds, graphs=False)
    if sampler is not None:
        time.sleep(1.2)  # let the current window finish and write
        sampler._stop.set()
        sampler._thread.join(5)
    return result


def main() -> None:
    command, args = sys.argv[1], sys.argv[2:]
    if command == "kernels":
        result = kernels()
    elif command == "shares":
        result = shares(Path(args[0]))
    elif command == "spawn":
        result = spawn(Path(args[0]))
    elif command == "profiler":
        result = profiler(Path(args[0]), float(args[1]))
    elif command == "mix":
        result = mix_command(float(args[0]), int(args[1]), int(args[2]), args[4] if len(args) > 4 else None)
    else:
        raise SystemExit(__doc__)
    print(json.dumps(result, indent=1), flush=True)


if __name__ == "__main__":
    main()
