"""Facts from an engine or checkpoint directory: its quantization and the TensorRT-LLM version
that built it (REFERENCE.md section 5 lists the shapes these files come in)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from exporter.preflight.facts import EngineFacts


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None


def read(directory: Path) -> EngineFacts:
    """TRT engine config.json first, then hf_quant_config.json, then an HF quantization_config."""
    where = str(directory)
    try:
        config = _load(directory / "config.json")
        hf_quant = _load(directory / "hf_quant_config.json")
        quant_cfg = _load(directory / "quant_cfg.json")
    except (OSError, ValueError) as exc:
        return EngineFacts(where, None, None, None, error=f"cannot read the engine's config: {exc}")
    version = None
    algo = kv = None
    if config is not None and isinstance(config.get("pretrained_config"), dict):
        version = config.get("version")
        quant = config["pretrained_config"].get("quantization") or {}
        algo, kv = quant.get("quant_algo"), quant.get("kv_cache_quant_algo")
    elif hf_quant is not None:
        quant = hf_quant.get("quantization", hf_quant)
        algo = quant.get("quant_algo")
        kv = quant.get("kv_cache_quant_algo") or _scheme(quant.get("kv_cache_scheme"))
    elif config is not None and isinstance(config.get("quantization_config"), dict):
        quant = config["quantization_config"]
        algo = quant.get("quant_method")
        kv = quant.get("kv_cache_quant_algo") or _scheme(quant.get("kv_cache_scheme"))
    elif config is None:
        return EngineFacts(where, None, None, None, error="no config.json or hf_quant_config.json in the directory")
    layers: dict[str, str] = {}
    if str(algo).upper() == "MIXED_PRECISION" and quant_cfg is not None:
        kv = kv or quant_cfg.get("kv_cache_quant_algo")
        for layer, spec in (quant_cfg.get("quantized_layers") or {}).items():
            if isinstance(spec, dict) and spec.get("quant_algo"):
                layers[layer] = str(spec["quant_algo"])
    return EngineFacts(where, None if algo is None else str(algo), None if kv is None else str(kv),
                       None if version is None else str(version), layers)


def _scheme(scheme: Any) -> str | None:
    """compressed-tensors style kv_cache_scheme {"type": "float", "num_bits": 8} -> "FP8"."""
    if isinstance(scheme, dict) and scheme.get("num_bits") == 8 and scheme.get("type") == "float":
        return "FP8"
    return None if scheme is None else str(scheme)
