"""Record the kernel names real GEMMs launch on this GPU, labelled with the precision they ran in.

Runs on a machine with an NVIDIA GPU and PyTorch. Each workload is a known matrix product (bf16,
fp16, fp32/tf32, fp8 via ``torch._scaled_mm``, int8 via ``torch._int_mm``) or a known non-GEMM
operation; torch.profiler lists the kernels each one launched. The output is the ground truth the
kernel-name classifier is tested against (``tests/fixtures/kernels/``).

    python3 bench/dispatch_record_kernels.py OUT.json
"""

from __future__ import annotations

import json
import sys

import torch
import torch.nn.functional as F  # noqa: N812
from torch.profiler import ProfilerActivity, profile


def _fp8(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x.clamp(-400, 400).to(dtype)


def workloads() -> list[tuple[str, str, object]]:
    """(name, precision the GEMM ran in or 'not-gemm', callable)."""
    dev = "cuda"
    out: list[tuple[str, str, object]] = []
    shapes = [(4096, 4096, 4096), (16, 8192, 8192), (128, 4096, 14336), (8192, 1024, 4096)]
    for m, n, k in shapes:
        for dtype, label in ((torch.bfloat16, "16bit"), (torch.float16, "16bit")):
            a = torch.randn(m, k, device=dev, dtype=dtype)
            b = torch.randn(k, n, device=dev, dtype=dtype)
            bias = torch.randn(n, device=dev, dtype=dtype)
            w = torch.randn(n, k, device=dev, dtype=dtype)
            out.append((f"mm {dtype} {m}x{n}x{k}", label, lambda a=a, b=b: a @ b))
            out.append((f"linear+bias {dtype} {m}x{n}x{k}", label, lambda a=a, w=w, bias=bias: F.linear(a, w, bias)))
        a32 = torch.randn(m, k, device=dev)
        b32 = torch.randn(k, n, device=dev)

        def fp32(a=a32, b=b32, tf32=False):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            try:
                return a @ b
            finally:
                torch.backends.cuda.matmul.allow_tf32 = False

        out.append((f"mm float32 {m}x{n}x{k}", "other", fp32))
        out.append((f"mm tf32 {m}x{n}x{k}", "other", lambda f=fp32: f(tf32=True)))
        if m % 16 == 0:
            a8 = _fp8(torch.randn(m, k, device=dev), torch.float8_e4m3fn)
            b8 = _fp8(torch.randn(n, k, device=dev), torch.float8_e4m3fn).t()
            b52 = _fp8(torch.randn(n, k, device=dev), torch.float8_e5m2).t()
            one = torch.tensor(1.0, device=dev)
            row_a = torch.ones(m, 1, device=dev)
            row_b = torch.ones(1, n, device=dev)
            out.append((f"scaled_mm e4m3 tensorwise bf16-out {m}x{n}x{k}", "fp8",
                        lambda a=a8, b=b8, s=one: torch._scaled_mm(a, b, s, s, out_dtype=torch.bfloat16)))
            out.append((f"scaled_mm e4m3 tensorwise fp32-out {m}x{n}x{k}", "fp8",
                        lambda a=a8, b=b8, s=one: torch._scaled_mm(a, b, s, s, out_dtype=torch.float32)))
            out.append((f"scaled_mm e4m3xe5m2 tensorwise {m}x{n}x{k}", "fp8",
                        lambda a=a8, b=b52, s=one: torch._scaled_mm(a, b, s, s, out_dtype=torch.bfloat16)))
            out.append((f"scaled_mm e4m3 rowwise {m}x{n}x{k}", "fp8",
                        lambda a=a8, b=b8, sa=row_a, sb=row_b: torch._scaled_mm(a, b, sa, sb, out_dtype=torch.bfloat16)))
        if m >= 32 and m % 8 == 0:
            ai = torch.randint(-8, 8, (m, k), device=dev, dtype=torch.int8)
            bi = torch.randint(-8, 8, (k, n), device=dev, dtype=torch.int8)
            out.append((f"int_mm int8 {m}x{n}x{k}", "other", lambda a=ai, b=bi: torch._int_mm(a, b)))
    x = torch.randn(64, 4096, device=dev, dtype=torch.bfloat16)
    bat_a = torch.randn(32, 512, 128, device=dev, dtype=torch.bfloat16)
    bat_b = torch.randn(32, 128, 512, device=dev, dtype=torch.bfloat16)
    out.append(("bmm bf16 32x512x512x128", "16bit", lambda: torch.bmm(bat_a, bat_b)))
    q = torch.randn(4, 32, 1024, 128, device=dev, dtype=torch.bfloat16)
    out.append(("sdpa bf16 (attention)", "not-gemm", lambda: F.scaled_dot_product_attention(q, q, q, is_causal=True)))
    out.append(("softmax bf16", "not-gemm", lambda: torch.softmax(x, -1)))
    out.append(("layer_norm bf16", "not-gemm", lambda: F.layer_norm(x, (4096,))))
    out.append(("rms_norm bf16", "not-gemm", lambda: F.rms_norm(x, (4096,))))
    out.append(("gelu + add bf16", "not-gemm", lambda: F.gelu(x) + x))
    out.append(("silu * mul bf16", "not-gemm", lambda: F.silu(x) * x))
    out.append(("sum/amax reduce", "not-gemm", lambda: (x.float().sum(-1), x.abs().amax())))
    out.append(("cast to fp8 e4m3", "not-gemm", lambda: x.to(torch.float8_e4m3fn)))
    out.append(("topk + sort", "not-gemm", lambda: torch.topk(x.float(), 8, -1)))
    out.append(("embedding", "not-gemm",
                lambda: F.embedding(torch.randint(0, 4096, (64,), device=dev), x)))
    out.append(("copy/transpose", "not-gemm", lambda: x.t().contiguous()))
    return out


def record(fn) -> list[str]:
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    names = {e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA}
    return sorted(n for n in names if not n.startswith("Memcpy") and not n.startswith("Memset"))


def main() -> None:
    results = []
    for name, label, fn in workloads():
        try:
            kernels = record(fn)
        except Exception as exc:  # a workload this torch build cannot run is reported, not fatal
            results.append({"workload": name, "precision": label, "error": f"{type(exc).__name__}: {exc}"})
            continue
        results.append({"workload": name, "precision": label, "kernels": kernels})
        print(f"{label:9} {name}: {kernels}", flush=True)
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "capability": list(torch.cuda.get_device_capability())}
    with open(sys.argv[1], "w") as fh:
        json.dump({"meta": meta, "workloads": results}, fh, indent=1)


if __name__ == "__main__":
    main()
