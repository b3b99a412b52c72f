"""An LLM API program with tensor parallelism 2, its GEMMs counted in both rank processes.

The ranks are MPI workers (mpi4py's MPIPoolExecutor), hence the ``if __name__ == "__main__"``
guard. The driver reads ``CUDA_INJECTION64_PATH`` at cuInit, so it is set here before anything
imports CUDA; the workers inherit it. Run ``python deploy/examples/llm_api_tp2.py MODEL`` (or set
the variable in the shell, as inject.env.sh does, and leave this block out).
"""

import os
import subprocess
import sys

if "CUDA_INJECTION64_PATH" not in os.environ:
    os.environ["CUDA_INJECTION64_PATH"] = subprocess.run(
        ["blackwell-exporter", "inject-path"], check=True, capture_output=True, text=True).stdout.strip()
os.environ.setdefault("BLACKWELL_DISPATCH_STATE_DIR", "/tmp/blackwell-exporter/dispatch")


def main() -> None:
    from tensorrt_llm import LLM, SamplingParams  # after the environment is set: it initializes CUDA

    llm = LLM(model=sys.argv[1], tensor_parallel_size=2)
    for output in llm.generate(["The GEMM precision of this layer is"], SamplingParams(max_tokens=32)):
        print(output.outputs[0].text)


if __name__ == "__main__":
    main()
