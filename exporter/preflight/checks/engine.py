"""Engine checks: GEMMs quantized to the expected family (FP4 on Blackwell), KV cache in FP8 or
MX-FP8, and the TensorRT-LLM version recorded in the engine. GEMM families are the engine
source's (:mod:`exporter.quant.algorithms`), so preflight and the engine metrics agree."""

from __future__ import annotations

from exporter.preflight.facts import EngineFacts
from exporter.preflight.result import CheckResult, failed, passed, skipped, warned
from exporter.preflight.settings import PreflightConfig
from exporter.quant import algorithms

_KV_FAMILY = {"FP8": "fp8", "MXFP8": "mxfp8", "NVFP4": "nvfp4", "INT8": "int8", "NO_QUANT": "16bit"}


def gemm_family(algo: str | None) -> str | None:
    """None for a name the engine source does not know (the list of algorithms is open)."""
    return algorithms.family(algorithms.normalize(algo))


def kv_family(algo: str | None) -> str | None:
    return _KV_FAMILY.get(algorithms.normalize(algo))


def _engine_missing(name: str, engine: EngineFacts | None) -> CheckResult | None:
    if engine is None:
        return skipped(name, "no engine_dir configured")
    if engine.error is not None:
        return failed(name, engine.error, "Point engine_dir at the engine or checkpoint directory.")
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
        gemm_text = f"GEMMs {engine.quant_algo} ({family or 'unknown family'})"
        if family not in want_gemm:
            problems.append(f"GEMM quantization is not {'/'.join(want_gemm)}")
    kv = kv_family(engine.kv_cache_quant_algo)
    kv_text = f"KV cache {engine.kv_cache_quant_algo} ({kv or 'unknown family'})"
    if kv not in want_kv:
        problems.append(f"KV cache is not {'/'.join(want_kv)}")
    evidence = f"{engine.path} ({engine.format}): {gemm_text}, {kv_text}"
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
        made_by = f", made by {engine.producer}" if engine.producer else ""
        return warned(name, f"{engine.path} ({engine.format}{made_by}): no TensorRT-LLM version recorded",
                      "A built engine's config.json records the TensorRT-LLM version; for a checkpoint served by "
                      "the PyTorch backend, record the serving image's TensorRT-LLM version with the deployment.")
    return passed(name, f"{engine.path}: built by TensorRT-LLM {engine.trtllm_version}")
