"""Read an engine or checkpoint directory into one :class:`EngineDescription`.

Shapes understood (the files TensorRT-LLM, NVIDIA ModelOpt and Hugging Face ``transformers`` write),
checked in this order:
- TensorRT-LLM engine: ``config.json`` with ``pretrained_config`` (``.quantization``, ``.mapping``)
  and ``build_config`` (``.plugin_config`` gives the build flags);
- TensorRT-LLM checkpoint: ``config.json`` with top-level ``architecture`` and ``quantization``;
- ModelOpt ``hf_quant_config.json``, legacy shape ``{producer, quantization: {quant_algo,
  kv_cache_quant_algo, exclude_modules}}`` or flat shape ``{quant_algo, ignore, kv_cache_scheme}``,
  with the model dimensions from the ``config.json`` beside it;
- Hugging Face ``config.json`` with ``quantization_config.quant_method`` (fp8, mxfp4, nvfp4,
  modelopt, ...) and ``modules_to_not_convert`` / ``ignore``; without it the model is unquantized.
``quant_algo: MIXED_PRECISION`` takes per-layer algorithms from ``quant_cfg.json``.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.quant import algorithms
from exporter.quant.layers import DimensionsMissing, Linear, linear_layers

FILES = ("config.json", "hf_quant_config.json", "quant_cfg.json")
MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_FLAGS_LABEL = 512


class EngineConfigError(ValueError):
    """The directory holds no usable config; the message names the file and the problem."""


@dataclass
class EngineDescription:
    format: str
    quant_algo: str
    kv_cache_quant_algo: str
    tensor_parallel: str = ""
    pipeline_parallel: str = ""
    producer: str = ""
    build_flags: str = ""
    exclude: list[str] = field(default_factory=list)
    layer_algorithms: dict[str, str] | None = None  # MIXED_PRECISION: module name -> algorithm
    model: Mapping[str, Any] = field(default_factory=dict)
    naming: str = "hf"
    unknown: list[tuple[str, str]] = field(default_factory=list)  # (field, algorithm)
    layers_problem: str = ""

    def layer_precisions(self) -> list[tuple[Linear, str]]:
        """Each linear layer with its precision family; empty (see layers_problem) without dimensions."""
        try:
            layers = linear_layers(self.model, self.naming)
        except DimensionsMissing as exc:
            self.layers_problem = f"cannot list the model's linear layers: {exc}"
            return []
        out = []
        for layer in layers:
            if self.layer_algorithms is not None:
                algo = self.layer_algorithms.get(layer.name)
                precision = "excluded" if algo is None else (algorithms.family(algo) or "unknown")
            elif _excluded(layer.name, self.exclude):
                precision = "excluded"
            else:
                precision = algorithms.family(self.quant_algo) or "unknown"
            out.append((layer, precision))
        return out


def _excluded(name: str, patterns: list[str]) -> bool:
    """A pattern excludes a module and everything under it (``model.layers.*.self_attn``)."""
    parts = name.split(".")
    prefixes = [".".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(prefix, pattern) for pattern in patterns for prefix in prefixes)


def _read(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise EngineConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes, not a config file")
        data = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise EngineConfigError(f"{path}: not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EngineConfigError(f"{path}: the top level must be an object, got {type(data).__name__}")
    return data


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _patterns(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise EngineConfigError(f"{where}: exclude patterns must be a list of strings")
    return list(value)


def _kv_from_scheme(scheme: Any) -> str:
    """Flat hf_quant_config ``kv_cache_scheme``: a name, or {num_bits: 8, type: float} -> FP8."""
    if isinstance(scheme, Mapping):
        kind, bits = str(scheme.get("type", "")).lower(), scheme.get("num_bits")
        if kind == "float" and bits == 8:
            return "FP8"
        if kind == "int" and bits == 8:
            return "INT8"
        if kind == "float" and bits == 4:
            return "NVFP4"
        return algorithms.normalize(scheme.get("quant_algo") or f"{kind}{bits}")
    return algorithms.normalize(scheme)


def _flags(build: Mapping[str, Any]) -> str:
    plugin = _mapping(build.get("plugin_config"))
    flags = []
    for key in sorted(plugin):
        value = plugin[key]
        if value is True:
            flags.append(key)
        elif isinstance(value, str) and value.lower() not in ("disable", "none", ""):
            flags.append(f"{key}={value}")
    text = ",".join(flags)
    return text if len(text) <= MAX_FLAGS_LABEL else text[: MAX_FLAGS_LABEL - 3] + "..."


def _producer(value: Any) -> str:
    if isinstance(value, Mapping):
        return " ".join(str(value[k]) for k in ("name", "version") if value.get(k))
    return str(value or "")


def describe(directory: Path) -> EngineDescription:
    """Parse the config files of one engine or checkpoint directory."""
    if not directory.is_dir():
        raise EngineConfigError(f"{directory}: not a directory")
    config = _read(directory / "config.json")
    hf_quant = _read(directory / "hf_quant_config.json")
    quant_cfg = _read(directory / "quant_cfg.json")
    if config is None and hf_quant is None:
        raise EngineConfigError(f"{directory}: no config.json or hf_quant_config.json")
    if config is not None and isinstance(config.get("pretrained_config"), Mapping):
        desc, mapping = _trtllm_engine(config)
    elif config is not None and "architecture" in config and isinstance(config.get("quantization"), Mapping):
        desc, mapping = _trtllm_checkpoint(config)
    elif hf_quant is not None:
        desc, mapping = _hf_quant_config(directory, hf_quant, config), {}
    else:
        assert config is not None
        desc, mapping = _hf_config(config), {}
    desc.tensor_parallel = str(mapping.get("tp_size", "")) if mapping else ""
    desc.pipeline_parallel = str(mapping.get("pp_size", "")) if mapping else ""
    if desc.quant_algo == algorithms.MIXED:
        _mixed_layers(directory, desc, quant_cfg)
    elif algorithms.family(desc.quant_algo) is None:
        desc.unknown.append(("quant_algo", desc.quant_algo))
    if desc.kv_cache_quant_algo not in algorithms.KV_CACHE_ALGORITHMS:
        desc.unknown.append(("kv_cache_quant_algo", desc.kv_cache_quant_algo))
    return desc


def _trtllm_engine(config: Mapping[str, Any]) -> tuple[EngineDescription, Mapping[str, Any]]:
    """A built TensorRT-LLM engine: config.json with pretrained_config and build_config."""
    model = config["pretrained_config"]
    quantization = _mapping(model.get("quantization"))
    desc = EngineDescription("trtllm-engine", algorithms.normalize(quantization.get("quant_algo")),
                             algorithms.normalize(quantization.get("kv_cache_quant_algo")),
                             build_flags=_flags(_mapping(config.get("build_config"))),
                             exclude=_patterns(quantization.get("exclude_modules"),
                                               "config.json pretrained_config.quantization"),
                             model=model, naming="trtllm")
    return desc, _mapping(model.get("mapping"))


def _trtllm_checkpoint(config: Mapping[str, Any]) -> tuple[EngineDescription, Mapping[str, Any]]:
    """A TensorRT-LLM checkpoint: config.json with architecture and quantization."""
    quantization = config["quantization"]
    desc = EngineDescription("trtllm-checkpoint", algorithms.normalize(quantization.get("quant_algo")),
                             algorithms.normalize(quantization.get("kv_cache_quant_algo")),
                             exclude=_patterns(quantization.get("exclude_modules"), "config.json quantization"),
                             model=config, naming="trtllm")
    return desc, _mapping(config.get("mapping"))


def _hf_quant_config(directory: Path, hf_quant: Mapping[str, Any],
                     config: Mapping[str, Any] | None) -> EngineDescription:
    """A ModelOpt export: hf_quant_config.json, in its legacy (nested) or flat shape."""
    if isinstance(hf_quant.get("quantization"), Mapping):  # legacy shape
        quantization = hf_quant["quantization"]
        kv = algorithms.normalize(quantization.get("kv_cache_quant_algo"))
        exclude = _patterns(quantization.get("exclude_modules"), "hf_quant_config.json quantization.exclude_modules")
        shape = "hf-quant-config-legacy"
    else:  # flat shape
        quantization = hf_quant
        kv = (_kv_from_scheme(quantization["kv_cache_scheme"]) if quantization.get("kv_cache_scheme") is not None
              else algorithms.normalize(quantization.get("kv_cache_quant_algo")))
        exclude = _patterns(quantization.get("ignore", quantization.get("exclude_modules")),
                            "hf_quant_config.json ignore")
        shape = "hf-quant-config-flat"
    if "quant_algo" not in quantization:
        raise EngineConfigError(f"{directory / 'hf_quant_config.json'}: no quant_algo")
    return EngineDescription(shape, algorithms.normalize(quantization.get("quant_algo")), kv,
                             producer=_producer(hf_quant.get("producer")), exclude=exclude,
                             model=config or {}, naming="hf")


def _hf_config(config: Mapping[str, Any]) -> EngineDescription:
    """A Hugging Face checkpoint: config.json with (or without) quantization_config."""
    quantization = _mapping(config.get("quantization_config"))
    method = str(quantization.get("quant_method", "")).lower()
    if not quantization:
        algo = "NO_QUANT"
    elif method == "modelopt":
        algo = algorithms.normalize(quantization.get("quant_algo"))
    else:
        algo = algorithms.HF_METHODS.get(method, algorithms.normalize(method))
    exclude = _patterns(quantization.get("modules_to_not_convert",
                                         quantization.get("ignore", quantization.get("exclude_modules"))),
                        "config.json quantization_config")
    kv = quantization.get("kv_cache_scheme")
    return EngineDescription("hf", algo, _kv_from_scheme(kv) if kv is not None else
                             algorithms.normalize(quantization.get("kv_cache_quant_algo")),
                             exclude=exclude, model=config, naming="hf")


def _mixed_layers(directory: Path, desc: EngineDescription, quant_cfg: Mapping[str, Any] | None) -> None:
    """MIXED_PRECISION: each layer's algorithm comes from quant_cfg.json."""
    if quant_cfg is None:
        raise EngineConfigError(f"{directory}: quant_algo is MIXED_PRECISION but there is no quant_cfg.json")
    layers = quant_cfg.get("quantized_layers")
    if not isinstance(layers, Mapping):
        raise EngineConfigError(f"{directory / 'quant_cfg.json'}: quantized_layers must be an object")
    desc.layer_algorithms = {}
    for name, entry in layers.items():
        algo = algorithms.normalize(_mapping(entry).get("quant_algo"))
        desc.layer_algorithms[name] = algo
        if algorithms.family(algo) is None:
            desc.unknown.append((f"quantized_layers.{name}", algo))
    if quant_cfg.get("kv_cache_quant_algo") is not None:
        desc.kv_cache_quant_algo = algorithms.normalize(quant_cfg["kv_cache_quant_algo"])
    if any(name.startswith("transformer.") for name in layers):
        desc.naming = "trtllm"
