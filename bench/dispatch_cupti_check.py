"""Check that cupti-python's activity API works next to PyTorch on this machine (pairing, fields)."""

from __future__ import annotations

import ctypes
import json
import sys
import time

import torch


def main() -> None:
    from cupti import cupti

    records: list[dict] = []

    def requested():
        return 4 * 1024 * 1024, 0

    def completed(activities):
        for a in activities:
            if a.kind == cupti.ActivityKind.CONCURRENT_KERNEL:
                records.append({"name": a.name, "device_id": a.device_id, "ns": a.end - a.start,
                                "stream": a.stream_id, "graph_id": a.graph_id})

    cupti.activity_register_callbacks(requested, completed)
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    a @ a
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    cupti.activity_enable(cupti.ActivityKind.CONCURRENT_KERNEL)
    enable_s = time.perf_counter() - t0
    for _ in range(10):
        a @ a
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    cupti.activity_disable(cupti.ActivityKind.CONCURRENT_KERNEL)
    cupti.activity_flush_all(1)
    flush_s = time.perf_counter() - t0
    dropped = ctypes.c_size_t(0)
    cupti.activity_get_num_dropped_records(0, 0, ctypes.addressof(dropped))
    # While disabled, launches must not be recorded.
    before = len(records)
    for _ in range(5):
        a @ a
    torch.cuda.synchronize()
    cupti.activity_flush_all(1)
    while_disabled = len(records) - before
    # a CUDA graph replayed while enabled: graph kernels still produce records
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        a @ a
        with torch.cuda.graph(g):
            b = a @ a  # noqa: F841
    torch.cuda.synchronize()
    cupti.activity_enable(cupti.ActivityKind.CONCURRENT_KERNEL)
    g.replay()
    torch.cuda.synchronize()
    cupti.activity_disable(cupti.ActivityKind.CONCURRENT_KERNEL)
    cupti.activity_flush_all(1)
    out = {"records": records[:40], "n_records": len(records), "recorded_while_disabled": while_disabled,
           "graph_records": len(records) - before - while_disabled,
           "dropped": dropped.value, "enable_s": enable_s, "flush_s": flush_s,
           "timestamp_ns": cupti.get_timestamp(), "time_ns": time.time_ns()}
    print(json.dumps({k: v for k, v in out.items() if k != "records"}), flush=True)
    with open(sys.argv[1], "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
