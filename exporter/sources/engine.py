"""The ``engine`` source: what the engine was built to do, from its config files alone.

For each configured engine or checkpoint directory it exports the quantization settings as an
info metric, and the number and weight parameters of GEMM layers per precision family after the
exclude patterns are applied (see :mod:`exporter.quant.config`). Files are re-read when their
size or modification time changes. An algorithm name the exporter does not know is exported as
``blackwell_engine_unknown_algorithm_info`` and its layers as precision ``unknown``.

With ``cross_check_tensorrt_llm: true`` and ``tensorrt_llm`` installed, algorithm names are also
checked against TensorRT-LLM's own ``QuantAlgo`` enum, and disagreements are logged.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from exporter.dispatch_table import PRECISIONS as GEMM_PRECISIONS
from exporter.quant import algorithms
from exporter.quant.config import FILES, EngineConfigError, EngineDescription, describe
from exporter.snapshot import Family
from exporter.sources.base import PollError, Source, SourceConfig, StrictModel

log = logging.getLogger(__name__)
# The dispatch table's GEMM paths, plus layers the engine leaves unquantized or names an unknown algorithm for.
PRECISIONS = (*GEMM_PRECISIONS, "excluded", "unknown")


class EngineDir(StrictModel):
    path: Path = Field(description="engine or checkpoint directory (holds config.json / hf_quant_config.json)")
    name: str = Field("", description="engine label value; defaults to the directory name")

    @property
    def label(self) -> str:
        return self.name or self.path.resolve().name or str(self.path)


class EngineConfig(SourceConfig):
    interval: float = Field(30.0, gt=0, le=3600, description="seconds between checks for changed config files")
    engines: list[EngineDir] = Field(default_factory=list, description="engine or checkpoint directories to read")
    cross_check_tensorrt_llm: bool = Field(
        False, description="also check algorithm names against tensorrt_llm's QuantAlgo (imports tensorrt_llm)")

    @field_validator("engines", mode="before")
    @classmethod
    def _plain_paths(cls, value: object) -> object:
        if isinstance(value, list):
            return [{"path": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _engines_named_once(self) -> EngineConfig:
        if self.enabled and not self.engines:
            raise ValueError("no engines configured (sources.engine.engines: [directory, ...])")
        duplicates = [n for n, c in Counter(e.label for e in self.engines).items() if c > 1]
        if duplicates:
            raise ValueError(f"engine names must be unique, repeated: {duplicates}; set name: per engine")
        return self


def _signature(directory: Path) -> tuple:
    out = []
    for name in FILES:
        try:
            st = (directory / name).stat()
            out.append((name, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((name, None, None))
    return tuple(out)


def tensorrt_llm_algorithms() -> set[str] | None:
    """QuantAlgo names of the installed tensorrt_llm, or None when it is not installed."""
    if importlib.util.find_spec("tensorrt_llm") is None:
        return None
    from tensorrt_llm.quantization import QuantAlgo  # optional extra, heavy import

    return {member.name for member in QuantAlgo}


class EngineSource(Source):
    name: ClassVar[str] = "engine"
    stand_in: ClassVar[str | None] = "simulated"
    config_model: ClassVar[type[SourceConfig]] = EngineConfig

    def __init__(self, config: EngineConfig, clock: Callable[[], float] = time.time) -> None:
        super().__init__(config)
        self.config: EngineConfig = config
        self._clock = clock
        self._cache: dict[str, tuple[tuple, list[Family]]] = {}
        self._trtllm: set[str] | None = None

    def probe(self) -> None:
        if self.config.cross_check_tensorrt_llm:
            self._trtllm = tensorrt_llm_algorithms()
            if self._trtllm is None:
                log.warning("engine: cross_check_tensorrt_llm is on but tensorrt_llm is not installed; "
                            "reading the JSON files alone")

    def poll(self) -> list[Family]:
        families: list[Family] = []
        for engine in self.config.engines:
            label = engine.label
            signature = _signature(engine.path)
            cached = self._cache.get(label)
            if cached is None or cached[0] != signature:
                try:
                    desc = describe(engine.path)
                except EngineConfigError as exc:
                    raise PollError(f"engine {label}: {exc}", "invalid") from None
                cached = (signature, self._families(label, desc))
                self._cache[label] = cached
                log.info("engine %s: read %s config, quant_algo %s", label, desc.format, desc.quant_algo)
            families.extend(cached[1])
        return families

    def _cross_check(self, label: str, desc: EngineDescription) -> None:
        if self._trtllm is None:
            return
        named = {desc.quant_algo, desc.kv_cache_quant_algo, *(desc.layer_algorithms or {}).values()}
        for algo in sorted(named - {"NO_QUANT"}):
            ours, theirs = algorithms.family(algo) is not None or algo == algorithms.MIXED, algo in self._trtllm
            if theirs and not ours:
                log.warning("engine %s: tensorrt_llm knows quant algorithm %s, this exporter has no precision for it",
                            label, algo)
            elif ours and not theirs:
                log.info("engine %s: quant algorithm %s is not in the installed tensorrt_llm's QuantAlgo", label, algo)

    def _families(self, label: str, desc: EngineDescription) -> list[Family]:
        self._cross_check(label, desc)
        info = Family("blackwell_engine_info").add(
            (label, desc.format, desc.quant_algo, desc.kv_cache_quant_algo, desc.tensor_parallel,
             desc.pipeline_parallel, desc.producer, desc.build_flags), 1)
        unknown = Family("blackwell_engine_unknown_algorithm_info")
        for field_name, algo in desc.unknown:
            unknown.add((label, field_name, algo), 1)
        loaded = Family("blackwell_engine_config_loaded_timestamp_seconds").add((label,), round(self._clock(), 3))
        out = [info, unknown, loaded]
        layers = desc.layer_precisions()
        if desc.layers_problem:
            log.warning("engine %s: %s; exporting settings without layer counts", label, desc.layers_problem)
            return out
        counts: Counter[str] = Counter()
        params: Counter[str] = Counter()
        for layer, precision in layers:
            counts[precision] += 1
            params[precision] += layer.parameters
        count_family = Family("blackwell_engine_gemm_layers")
        param_family = Family("blackwell_engine_gemm_parameters")
        for precision in PRECISIONS:
            count_family.add((label, precision), counts[precision])
            param_family.add((label, precision), params[precision])
        return [*out, count_family, param_family]
