"""Engine checks: GEMMs quantized to the expected family (FP4 on Blackwell), KV cache in FP8 or
MX-FP8, and the TensorRT-LLM version recorded in the engine."""

from __future__ import annotations

from exporter.preflight.facts import EngineFacts
from exporter.preflight.result import CheckResult, failed, passed, skipped, warned
from exporter.preflight.settings import PreflightConfig

# Quantization algorithm names (TensorRT-LLM QuantAlgo, ModelOpt, HF quant_method) -> GEMM family.
_GEMM_FAMILY = {
    "NVFP4": "fp4", "W4A8_NVFP4_FP8": "fp4", "W4A8_MXFP4_FP8": "fp4", "W4A8_MXFP4_MXFP8": "fp4",
    "W4A16_MXFP4": "fp4", "MXFP4": "fp4",
    "FP8": "fp8", "FP8_BLOCK_SCALES": "fp8", "FP8_PER_CHANNEL_PER_TOKEN": "fp8", "FP8_ROWWISE": "fp8",
    "MXFP8": "fp8",
    "W8A8_SQ_PER_CHANNEL": "int8", "W8A8_SQ_PER_TENSOR_PLUGIN": "int8", "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN": "int8",
    "W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN": "int8", "W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN": "int8",
    "W8A16": "int8", "W8A16_GPTQ": "int8", "INT8": "int8",
    "W4A16": "int4", "W4A16_AWQ": "int4", "W4A16_GPTQ": "int4", "W4A8_AWQ": "int4", "W4A8_QSERVE_PER_GROUP": "int4",
    "W4A8_QSERVE_PER_CHANNEL": "int4",
    "NO_QUANT": "16bit",
}
_KV_FAMILY = {"FP8": "fp8", "MXFP8": "mxfp8", "NVFP4": "nvfp4", "INT8": "int8"}


def gemm_family(algo: str | None) -> str | None:
    """None for a name this table does not know (the list of algorithms is open)."""
    if algo is None:
        return "16bit"
    return _GEMM_FAMILY.get(algo.upper())


def kv_family(algo: str | None) -> str | None:
    if algo is None or algo.upper() == "NO_QUANT":
        return "16bit"
    return _KV_FAMILY.get(algo.upper())


def _engine_missing(name: str, engine: EngineFacts | None) -> CheckResult | None:
    if engine is None:
        return skipped(name, "no engine_dir configured")
    if engine.error is not None:
        return failed(name, f"{engine.path}: {engine.error}", "Point engine_dir at the engine or checkpoint directory.")
    return None


def engine_quantization(engine: EngineFacts | None, cfg: PreflightConfig) -> CheckResult:
    name = "engine_quantization"
    if (bad := _engine_missing(name, engine)) is not None:
        return bad
    assert engine is not None
    want_gemm, want_kv = cfg.expected_gemm_quantization, cfg.expected_kv_cache_quantization
    problems: list[str] = []
    if engine.layer_algos:  # MIXED_PRECISION: judge each quantized layer
        off = {layer: algo for layer, algo in engine.layer_algos.items() if gemm_family(algo) not in want_gemm}
        gemm_text = f"MIXED_PRECISION over {len(engine.layer_algos)} layers"
        if off:
            sample = ", ".join(f"{k}={v}" for k, v in sorted(off.items())[:3])
            problems.append(f"{len(off)} layer(s) outside {'/'.join(want_gemm)}: {sample}")
    else:
        family = gemm_family(engine.quant_algo)
        gemm_text = f"GEMMs {engine.quant_algo or 'unquantized'} ({family or 'unknown family'})"
        if family not in want_gemm:
            problems.append(f"GEMM quantization is not {'/'.join(want_gemm)}")
    kv = kv_family(engine.kv_cache_quant_algo)
    kv_text = f"KV cache {engine.kv_cache_quant_algo or 'unquantized'} ({kv or 'unknown family'})"
    if kv not in want_kv:
        problems.append(f"KV cache is not {'/'.join(want_kv)}")
    evidence = f"{engine.path}: {gemm_text}, {kv_text}"
    if problems:
        return failed(name, f"{evidence}; {'; '.join(problems)}",
                      "Rebuild or re-quantize (ModelOpt) with the expected recipe, or set "
                      "expected_gemm_quantization / expected_kv_cache_quantization for this box.")
    return passed(name, evidence)


def engine_trtllm_version(engine: EngineFacts | None, cfg: PreflightConfig) -> CheckResult:
    name = "engine_trtllm_version"
    if (bad := _engine_missing(name, engine)) is not None:
        return bad
    assert engine is not None
    if engine.trtllm_version is None:
        return warned(name, f"{engine.path}: no TensorRT-LLM version recorded (a checkpoint, not a built engine?)",
                      "Record the TensorRT-LLM version the server runs with; a built engine's config.json has it.")
    return passed(name, f"{engine.path}: built by TensorRT-LLM {engine.trtllm_version}")
