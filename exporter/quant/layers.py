"""The GEMM (linear) layers of a decoder model and their weight parameter counts, from its config.

Names follow the format the exclude patterns are written against: TensorRT-LLM module names
(``transformer.layers.3.attention.qkv``) for TensorRT-LLM checkpoints and engines, Hugging Face
names (``model.layers.3.self_attn.q_proj``) for HF checkpoints. Mixture-of-experts layers are
listed per expert in HF naming (that is how HF exclude lists address them) and as one module
holding all experts in TensorRT-LLM naming.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Linear:
    name: str
    parameters: int


class DimensionsMissing(ValueError):  # noqa: N818 - a reason, not a crash: the caller reports it
    pass


def _first(config: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = config.get(key)
        if value is not None:
            return value
    return None


def _int(config: Mapping[str, Any], *keys: str, required: bool = True, default: int = 0) -> int:
    value = _first(config, *keys)
    if value is None:
        if required:
            raise DimensionsMissing(f"none of {', '.join(keys)} in the model config")
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DimensionsMissing(f"{keys[0]} must be a non-negative integer, got {value!r}")
    return value


# Far above any real model (DeepSeek-V3: 61 layers, 256 experts); a config over these is refused
# before enumerating, so a typo cannot make a poll build millions of layer objects.
MAX_LAYERS = 1024
MAX_EXPERTS = 4096


def linear_layers(config: Mapping[str, Any], naming: str) -> list[Linear]:
    """Every linear layer of the model described by ``config`` (``naming``: 'trtllm' or 'hf')."""
    moe = config.get("moe") if isinstance(config.get("moe"), Mapping) else {}
    layers = _int(config, "num_hidden_layers", "num_layers")
    if layers > MAX_LAYERS:
        raise DimensionsMissing(f"num_hidden_layers is {layers}; over {MAX_LAYERS} is not a real model config")
    hidden = _int(config, "hidden_size")
    heads = _int(config, "num_attention_heads")
    if heads == 0 or hidden == 0:
        raise DimensionsMissing("num_attention_heads and hidden_size must be positive")
    kv_heads = _int(config, "num_key_value_heads", "num_kv_heads", required=False, default=heads) or heads
    head = _int(config, "head_dim", "head_size", required=False, default=hidden // max(1, heads)) or hidden // heads
    inter = _int(config, "intermediate_size", "ffn_hidden_size", "inter_size")
    vocab = _int(config, "vocab_size")
    experts = _int(config, "num_local_experts", "num_experts", required=False) or _int(
        moe, "num_experts", required=False)
    expert_inter = _int(config, "moe_intermediate_size", required=False, default=inter) or inter
    if experts > MAX_EXPERTS:
        raise DimensionsMissing(f"num_experts is {experts}; over {MAX_EXPERTS} is not a real model config")
    out: list[Linear] = []
    for i in range(layers):
        if naming == "hf":
            p = f"model.layers.{i}"
            out += [Linear(f"{p}.self_attn.q_proj", hidden * heads * head),
                    Linear(f"{p}.self_attn.k_proj", hidden * kv_heads * head),
                    Linear(f"{p}.self_attn.v_proj", hidden * kv_heads * head),
                    Linear(f"{p}.self_attn.o_proj", heads * head * hidden)]
            if experts:
                out.append(Linear(f"{p}.mlp.router", hidden * experts))
                for e in range(experts):
                    out += [Linear(f"{p}.mlp.experts.{e}.{proj}", hidden * expert_inter)
                            for proj in ("gate_proj", "up_proj", "down_proj")]
            else:
                out += [Linear(f"{p}.mlp.{proj}", hidden * inter) for proj in ("gate_proj", "up_proj", "down_proj")]
        else:
            p = f"transformer.layers.{i}"
            out += [Linear(f"{p}.attention.qkv", hidden * (heads + 2 * kv_heads) * head),
                    Linear(f"{p}.attention.dense", heads * head * hidden)]
            if experts:
                out.append(Linear(f"{p}.mlp.router", hidden * experts))
                out += [Linear(f"{p}.mlp.{proj}", experts * hidden * expert_inter) for proj in ("fc", "gate", "proj")]
            else:
                out += [Linear(f"{p}.mlp.{proj}", hidden * inter) for proj in ("fc", "gate", "proj")]
    out.append(Linear("lm_head", hidden * vocab))
    return out
