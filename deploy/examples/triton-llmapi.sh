#!/usr/bin/env bash
# Triton's llmapi model (all_models/llmapi/tensorrt_llm/1/model.py in TensorRT-LLM's repository): a
# Python model that drives the LLM API, whose ranks (TP > 1) are MPI workers or Ray actors spawned
# from the Triton Python backend's stub process. All of them inherit tritonserver's environment, so
# the variable set here reaches the ranks; no start_sampler() call in model.py is needed.
#
#   deploy/examples/triton-llmapi.sh /models
set -euo pipefail
source "$(dirname "$0")/inject.env.sh"
exec tritonserver --model-repository="${1:?model repository}" --http-port=8000 --grpc-port=8001 --metrics-port=8002
