"""Check on a multi-GPU machine that the sampler labels kernels with the GPU's NVML index and UUID.

Runs matmuls on the last CUDA device under the sampler, with and without CUDA_VISIBLE_DEVICES
reordering (run it both ways), and prints the state file's gpus keys next to NVML's view.

    CUDA_VISIBLE_DEVICES=1,0 python3 bench/dispatch_gpu_labels.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pynvml
import torch

from exporter.inprocess.sampler import DispatchSampler, _gpu_label


def main() -> None:
    out = Path(sys.argv[1])
    pynvml.nvmlInit()
    nvml = {pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i)): i
            for i in range(pynvml.nvmlDeviceGetCount())}
    labels = {ordinal: _gpu_label(ordinal) for ordinal in range(torch.cuda.device_count())}
    last = torch.cuda.device_count() - 1
    state_dir = Path(tempfile.mkdtemp())
    sampler = DispatchSampler(state_dir / "p.json", duty_cycle=0.5, period=0.4, process="p", seed=0)
    sampler.start()
    a = torch.randn(2048, 2048, device=f"cuda:{last}", dtype=torch.bfloat16)
    for _ in range(3000):
        a @ a
    torch.cuda.synchronize()
    sampler.stop()
    state = json.loads((state_dir / "p.json").read_text())
    report = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"), "nvml_uuid_to_index": nvml,
              "sampler_labels_by_cuda_ordinal": labels, "ran_on_cuda_ordinal": last,
              "state_gpus": {g: {"uuid": e["uuid"], "kernels": e["kernels"]}
                             for g, e in state["gpus"].items()}}
    print(json.dumps(report), flush=True)
    name = f"dispatch_gpu_labels_{(os.environ.get('CUDA_VISIBLE_DEVICES') or 'all').replace(',', '_')}.json"
    (out / name).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
