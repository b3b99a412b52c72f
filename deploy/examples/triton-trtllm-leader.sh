#!/usr/bin/env bash
# Triton with the TensorRT-LLM C++ backend (backend: "tensorrtllm", engines from trtllm-build),
# leader mode: TensorRT-LLM's launch_triton_server.py (scripts/ in the tensorrtllm_backend tree,
# triton_backend/ in TensorRT-LLM's) runs mpirun with one tritonserver per rank. The ranks on this
# node inherit mpirun's environment, so each writes its own state file. Across nodes, mpirun must
# forward the variables: add `-x CUDA_INJECTION64_PATH -x BLACKWELL_DISPATCH_STATE_DIR` to the mpirun
# line (Open MPI) and install the exporter on every node.
#
#   deploy/examples/triton-trtllm-leader.sh /models 4 /opt/tritonserver/tensorrtllm_backend/scripts
set -euo pipefail
source "$(dirname "$0")/inject.env.sh"
repo="${1:?model repository}"
world_size="${2:-1}"
scripts="${3:-/app/scripts}"
exec python3 "$scripts/launch_triton_server.py" --world_size "$world_size" --model_repo "$repo"
