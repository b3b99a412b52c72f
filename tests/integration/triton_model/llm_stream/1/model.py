"""A stand-in LLM for tests: a decoupled Triton Python-backend model on CPU.

For each request it streams ``max_tokens`` responses (one "token" each, a few ms apart) and
keeps the gauge families the TensorRT-LLM Triton backend exports (``nv_trt_llm_*``, labels
model, version and one category label) plus the ``nv_llm_{input,output}_token_len``
histograms, registered through ``pb_utils.MetricFamily`` like the real TRT-LLM Python backend.
A prompt of ``fail`` makes execute raise, which Triton counts as a failed request.
"""

import json
import os
import sys
import threading
import time

# Triton's stub runs a bare interpreter: put the test venv's site-packages (numpy) on the path.
for path in json.loads(os.environ.get("LLM_STREAM_SYS_PATH", "[]")):
    if path not in sys.path:
        sys.path.append(path)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

TOKENS_PER_BLOCK = 4
MAX_BLOCKS = 1000
TOKEN_DELAY_SECONDS = 0.002


class TritonPythonModel:
    def initialize(self, args):
        self.lock = threading.Lock()
        self.active = 0
        self.used_blocks = 0
        self.reused_blocks = 0
        self.iterations = 0
        labels = {"model": args["model_name"], "version": args["model_version"]}

        # A MetricFamily must outlive its Metrics, so the model keeps every family.
        self.families = []

        def family(name, description, kind=pb_utils.MetricFamily.GAUGE):
            self.families.append(pb_utils.MetricFamily(name=name, description=description, kind=kind))
            return self.families[-1]

        requests = family("nv_trt_llm_request_metrics", "TRT LLM request metrics")
        kv = family("nv_trt_llm_kv_cache_block_metrics", "TRT LLM KV cache block metrics")
        memory = family("nv_trt_llm_runtime_memory_metrics", "TRT LLM runtime memory metrics")
        ifb = family("nv_trt_llm_inflight_batcher_metrics", "TRT LLM inflight_batcher-specific metrics")
        general = family("nv_trt_llm_general_metrics", "General TRT LLM metrics")
        self.request = {t: requests.Metric(labels={**labels, "request_type": t})
                        for t in ("active", "max", "scheduled", "context", "waiting")}
        self.kv = {t: kv.Metric(labels={**labels, "kv_cache_block_type": t})
                   for t in ("max", "free", "used", "tokens_per", "reused", "fraction")}
        self.memory = {t: memory.Metric(labels={**labels, "memory_type": t}) for t in ("cpu", "gpu", "pinned")}
        self.ifb = {t: ifb.Metric(labels={**labels, "inflight_batcher_specific_metric": t})
                    for t in ("total_context_tokens", "generation_requests", "micro_batch_id", "paused_requests")}
        self.general = {t: general.Metric(labels={**labels, "general_type": t})
                        for t in ("timestamp", "iteration_counter")}
        buckets = [10.0, 50.0, 100.0, 500.0, 1000.0]
        hist = pb_utils.MetricFamily.HISTOGRAM
        self.input_len = family("nv_llm_input_token_len", "TRT LLM response metrics", hist).Metric(
            labels={**labels, "response_metric_type": "total_input_tokens"}, buckets=buckets)
        self.output_len = family("nv_llm_output_token_len", "TRT LLM response metrics", hist).Metric(
            labels={**labels, "response_metric_type": "total_output_tokens"}, buckets=buckets)
        self.request["max"].set(64)
        self.kv["max"].set(MAX_BLOCKS)
        self.kv["tokens_per"].set(TOKENS_PER_BLOCK)
        self.memory["cpu"].set(1 << 20)
        self.memory["gpu"].set(3 << 30)
        self.memory["pinned"].set(1 << 16)
        self._publish()

    def _publish(self):
        self.request["active"].set(self.active)
        self.request["scheduled"].set(self.active)
        self.request["context"].set(0)
        self.request["waiting"].set(0)
        self.ifb["generation_requests"].set(self.active)
        self.ifb["paused_requests"].set(0)
        self.kv["used"].set(self.used_blocks)
        self.kv["free"].set(MAX_BLOCKS - self.used_blocks)
        self.kv["reused"].set(self.reused_blocks)
        self.kv["fraction"].set(self.used_blocks / MAX_BLOCKS)
        self.general["iteration_counter"].set(self.iterations)
        self.general["timestamp"].set(int(time.time() * 1e6))

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            text = pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy().reshape(-1)[0]
            text = text.decode() if isinstance(text, bytes) else str(text)
            max_tokens = int(pb_utils.get_input_tensor_by_name(request, "max_tokens").as_numpy().reshape(-1)[0])
            if text == "fail":
                # An exception from execute is what Triton counts as a failed request
                # (reason BACKEND); an error response in a decoupled stream counts as a success.
                raise pb_utils.TritonModelException("asked to fail")
            prompt_tokens = len(text.split())
            blocks = -(-(prompt_tokens + max_tokens) // TOKENS_PER_BLOCK)
            with self.lock:
                self.active += 1
                self.used_blocks += blocks
                self._publish()
            for i in range(max_tokens):
                time.sleep(TOKEN_DELAY_SECONDS)
                out = pb_utils.Tensor("text_output", np.array([f"tok{i}".encode()], dtype=np.object_))
                with self.lock:
                    self.iterations += 1
                    self._publish()
                sender.send(pb_utils.InferenceResponse(output_tensors=[out]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            self.input_len.observe(prompt_tokens)
            self.output_len.observe(max_tokens)
            with self.lock:
                self.active -= 1
                self.used_blocks -= blocks
                self.reused_blocks += 1
                self._publish()
        return None
