#!/usr/bin/env bash
# Triton with the TensorRT-LLM C++ backend in orchestrator mode: one tritonserver, and the backend
# spawns trtllmExecutorWorker processes (config.pbtxt: parameters { key: "executor_worker_path"
# value: { string_value: "/opt/tritonserver/backends/tensorrtllm/trtllmExecutorWorker" } }, with
# gpt_model_type inflight_fused_batching). The workers run the GEMMs and inherit tritonserver's
# environment, so one setting here covers them; the orchestrator itself launches few kernels.
#
#   deploy/examples/triton-trtllm-orchestrator.sh /models
set -euo pipefail
source "$(dirname "$0")/inject.env.sh"
exec tritonserver --model-repository="${1:?model repository}" --http-port=8000 --grpc-port=8001 --metrics-port=8002
