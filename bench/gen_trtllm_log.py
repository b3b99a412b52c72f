"""Writes a realistic log of a TensorRT-LLM server under load, for the log-tail benchmark.

The mix is what a busy ``trtllm-serve`` (PyTorch backend, ``print_iter_log`` on) or Triton with
the TensorRT-LLM backend writes: uvicorn access lines, one iteration line per step, runtime INFO
lines (KV-cache, memory), Triton glog lines, the occasional warning, and rare lines the default
rules count (FP8/FP4 fallbacks, NCCL warnings, CUDA graph capture, autotuning, a CUDA OOM), plus
a few long lines (tracebacks, dumped request bodies). Seeded: the same arguments give the same file.

    python bench/gen_trtllm_log.py --lines 1000000 /tmp/trtllm.log
"""

from __future__ import annotations

import argparse
import datetime
import random
from collections.abc import Callable
from pathlib import Path

START = datetime.datetime(2026, 11, 22, 14, 0, 0)


def _access(rng: random.Random, now: datetime.datetime, step: int) -> str:
    path = rng.choice(("/v1/chat/completions", "/v1/completions", "/v1/chat/completions", "/health", "/metrics"))
    status = "200 OK" if rng.random() > 0.002 else "503 Service Unavailable"
    return f'INFO:     10.0.{rng.randrange(8)}.{rng.randrange(2, 250)}:{rng.randrange(30000, 65000)} - "POST {path} HTTP/1.1" {status}'


def _iteration(rng: random.Random, now: datetime.datetime, step: int) -> str:
    ctx = rng.randrange(0, 4)
    gen = rng.randrange(40, 128)
    host = 18 + rng.random() * 8
    return (f"[{now:%m/%d/%Y-%H:%M:%S}] [TRT-LLM] [I] iter = {step}, global_rank = 0, rank = 0, "
            f"currank_total_requests = {rng.randrange(0, 32)}/{step // 3 + 100}, host_step_time = {host:.3f}ms, "
            f"prev_device_step_time = {host - 1.2:.3f}ms, timestamp = {now:%Y-%m-%d %H:%M:%S}, "
            f"num_scheduled_requests: {ctx + gen}, states = {{'num_ctx_requests': {ctx}, "
            f"'num_ctx_tokens': {ctx * rng.randrange(200, 4000)}, 'num_generation_tokens': {gen}}}")


def _runtime_info(rng: random.Random, now: datetime.datetime, step: int) -> str:
    return rng.choice((
        f"[TensorRT-LLM][INFO] [MemUsageChange] Allocated {rng.uniform(0.5, 4):.2f} GiB for max tokens in paged KV "
        f"cache ({rng.randrange(8000, 40000)}).",
        f"[TensorRT-LLM][INFO] Number of blocks in KV cache primary pool: {rng.randrange(4000, 9000)}",
        f"[TensorRT-LLM][INFO] Max KV cache pages per sequence: {rng.choice((64, 128, 256))}",
        f"[{now:%m/%d/%Y-%H:%M:%S}] [TRT-LLM] [I] Request {rng.randrange(10**6)} finished: "
        f"{rng.randrange(20, 900)} output tokens, finish_reason=stop",
        f"[{now:%m/%d/%Y-%H:%M:%S}] [TRT-LLM] [I] KV cache reuse: {rng.randrange(0, 100)}% of context blocks hit",
    ))


def _triton(rng: random.Random, now: datetime.datetime, step: int) -> str:
    return rng.choice((
        f'I{now:%m%d %H:%M:%S}.{rng.randrange(10**6):06d} 1 infer_handler.cc:{rng.randrange(600, 900)}] '
        f'"[request id: {rng.randrange(10**6)}] Infer request: model tensorrt_llm, version 1"',
        f'I{now:%m%d %H:%M:%S}.{rng.randrange(10**6):06d} 1 model_lifecycle.cc:818] '
        '"successfully loaded \'tensorrt_llm\'"',
        f'W{now:%m%d %H:%M:%S}.{rng.randrange(10**6):06d} 1 pinned_memory_manager.cc:273] '
        f'"Unable to allocate pinned system memory, pinned memory pool will not be available"',
    ))


def _warning(rng: random.Random, now: datetime.datetime, step: int) -> str:
    return rng.choice((
        "[TensorRT-LLM][WARNING] Device 0 peer access Device 1 is not available.",
        f"[{now:%m/%d/%Y-%H:%M:%S}] [TRT-LLM] [W] Request {rng.randrange(10**6)} exceeds max_seq_len, truncating",
        "[TensorRT-LLM][WARNING] The value of maxAttentionWindow cannot exceed maxSequenceLength.",
        "/usr/local/lib/python3.12/dist-packages/torch/cuda/__init__.py:61: FutureWarning: The pynvml package is "
        "deprecated.",
    ))


def _counted(rng: random.Random, now: datetime.datetime, step: int) -> str:
    """Lines the default rules count."""
    return rng.choice((
        f"[{now:%m/%d/%Y-%H:%M:%S}] [TRT-LLM] [W] FP8 GEMM plugin not supported for this shape, falling back to BF16",
        "WARNING: NVFP4 kernels unavailable for sm_90, falling back to fp16",
        f"node1:{rng.randrange(100, 999)}:{rng.randrange(100, 999)} [{rng.randrange(8)}] NCCL WARN Call to connect "
        "returned Connection refused, retrying",
        f"[{now:%m/%d/%Y-%H:%M:%S}] [TRT-LLM] [I] Capturing CUDA graphs for batch sizes [1, 2, 4, 8, 16, 32]",
        f"[AutoTuner] autotune start for fp4_gemm, {rng.randrange(4, 40)} tactics",
        f"TE: tensor in layer {rng.randrange(80)} promoted to bf16 after amax overflow",
    ))


def _oom(rng: random.Random, now: datetime.datetime, step: int) -> str:
    return f"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {rng.uniform(0.5, 8):.2f} GiB"


def _long(rng: random.Random, now: datetime.datetime, step: int) -> str:
    words = " ".join(rng.choice(("the", "model", "token", "request", "prompt", "answer", "cache", "batch"))
                     for _ in range(rng.randrange(80, 400)))
    return f'[{now:%m/%d/%Y-%H:%M:%S}] [TRT-LLM] [D] request body: {{"messages": [{{"role": "user", "content": "{words}"}}]}}'


KINDS: tuple[tuple[float, Callable[[random.Random, datetime.datetime, int], str]], ...] = (
    (0.42, _access), (0.36, _iteration), (0.10, _runtime_info), (0.06, _triton), (0.03, _warning),
    (0.01, _counted), (0.0001, _oom), (0.0199, _long),
)


def write(path: Path, lines: int, seed: int = 0) -> int:
    """Write ``lines`` lines to ``path``; returns the byte count."""
    rng = random.Random(seed)
    weights = [w for w, _ in KINDS]
    makers = [m for _, m in KINDS]
    size = 0
    with open(path, "w", encoding="utf-8") as out:
        batch: list[str] = []
        for step in range(lines):
            now = START + datetime.timedelta(milliseconds=20 * step)
            maker = rng.choices(makers, weights)[0]
            batch.append(maker(rng, now, step) + "\n")
            if len(batch) == 10000:
                text = "".join(batch)
                size += len(text.encode())
                out.write(text)
                batch = []
        text = "".join(batch)
        size += len(text.encode())
        out.write(text)
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    size = write(args.path, args.lines, args.seed)
    print(f"{args.path}: {args.lines} lines, {size} bytes ({size / args.lines:.0f} bytes/line)")


if __name__ == "__main__":
    main()
