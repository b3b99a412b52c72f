"""Facts from an engine or checkpoint directory, read by the engine source's parser
(:func:`exporter.quant.config.describe`), plus the TensorRT-LLM version a built engine records
at the top of its ``config.json``."""

from __future__ import annotations

import json
from pathlib import Path

from exporter.preflight.facts import EngineFacts
from exporter.quant.config import EngineConfigError, describe


def read(directory: Path) -> EngineFacts:
    where = str(directory)
    try:
        desc = describe(directory)
    except (EngineConfigError, OSError) as exc:
        return EngineFacts(where, None, None, None, error=str(exc))
    version = None
    if desc.format == "trtllm-engine":
        try:
            recorded = json.loads((directory / "config.json").read_text()).get("version")
        except (OSError, ValueError):
            recorded = None
        version = None if recorded is None else str(recorded)
    return EngineFacts(where, desc.quant_algo, desc.kv_cache_quant_algo, version,
                       layer_algos=dict(desc.layer_algorithms or {}), format=desc.format, producer=desc.producer)
