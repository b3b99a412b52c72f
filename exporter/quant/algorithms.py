"""Quantization algorithm names and the precision family each one builds GEMM layers in.

Families: ``fp4`` (weights in an FP4 format: NVFP4, MXFP4, including W4A8/W4A16 mixes), ``fp8``,
``16bit`` (not quantized), ``other`` (integer weight formats: AWQ, GPTQ, SmoothQuant). The list is
open: :func:`family` answers None for a name it does not know, and callers report it.
Note: W4A16_MXFP4 stores FP4 weights but multiplies in bf16; the dispatch table counts its
kernels as 16bit at run time, the engine view counts the layer as fp4.
"""

from __future__ import annotations

FAMILIES: dict[str, str] = {
    "NVFP4": "fp4", "MXFP4": "fp4", "W4A8_NVFP4_FP8": "fp4", "W4A8_MXFP4_FP8": "fp4",
    "W4A8_MXFP4_MXFP8": "fp4", "W4A16_MXFP4": "fp4",
    "FP8": "fp8", "FP8_BLOCK_SCALES": "fp8", "FP8_PER_CHANNEL_PER_TOKEN": "fp8", "FP8_ROWWISE": "fp8",
    "MXFP8": "fp8",
    "W8A16": "other", "W4A16": "other", "W4A16_AWQ": "other", "W4A8_AWQ": "other", "W4A16_GPTQ": "other",
    "W8A16_GPTQ": "other", "W8A8_SQ_PER_CHANNEL": "other", "W8A8_SQ_PER_TENSOR_PLUGIN": "other",
    "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN": "other", "W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN": "other",
    "W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN": "other", "INT8": "other",
    "NO_QUANT": "16bit",
}
MIXED = "MIXED_PRECISION"
KV_CACHE_ALGORITHMS = frozenset({"FP8", "INT8", "NVFP4", "NO_QUANT"})
# HF quantization_config.quant_method -> TensorRT-LLM algorithm name
HF_METHODS: dict[str, str] = {"fp8": "FP8", "mxfp4": "MXFP4", "mxfp8": "MXFP8", "nvfp4": "NVFP4"}


def normalize(name: object) -> str:
    """'fp8' -> 'FP8'; None / '' -> 'NO_QUANT'."""
    if name is None or name == "":
        return "NO_QUANT"
    return str(name).strip().upper()


def family(name: str) -> str | None:
    return FAMILIES.get(name)
