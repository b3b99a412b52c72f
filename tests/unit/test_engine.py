"""The engine source against every quantization config shape (tests/fixtures/engines/)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from exporter.quant import algorithms
from exporter.quant.config import describe
from exporter.snapshot import Snapshot
from exporter.sources.base import PollError
from exporter.sources.engine import EngineConfig, EngineSource

FIXTURES = Path(__file__).parents[1] / "fixtures" / "engines"


def poll(*paths: Path, **extra) -> dict[tuple[str, tuple[str, ...]], float]:
    src = EngineSource(EngineConfig(enabled=True, engines=[str(p) for p in paths], **extra), clock=lambda: 1000.0)
    src.probe()
    families = src.poll()
    Snapshot.of("engine", families)
    return {(f.metric.name, labels): value for f in families for labels, value in f.samples}


def layers(got: dict, engine: str) -> dict[str, tuple[float, float]]:
    """precision -> (layers, parameters), leaving out zero rows."""
    out = {}
    for (name, labels), value in got.items():
        if name == "blackwell_engine_gemm_layers" and labels[0] == engine and value:
            out[labels[1]] = (value, got[("blackwell_engine_gemm_parameters", labels)])
    return out


def info(got: dict) -> tuple[str, ...]:
    [labels] = [labels for (name, labels) in got if name == "blackwell_engine_info"]
    return labels


def test_tensorrt_llm_engine_config_json_nvfp4_llama_8b_tp2():
    got = poll(FIXTURES / "trtllm_engine_nvfp4")
    assert info(got) == ("trtllm_engine_nvfp4", "trtllm-engine", "NVFP4", "FP8", "2", "1", "",
                         "context_fmha,gemm_plugin=nvfp4,gpt_attention_plugin=auto,paged_kv_cache,"
                         "remove_input_padding,use_fp8_context_fmha,use_paged_context_fmha")
    assert layers(got, "trtllm_engine_nvfp4") == {"fp4": (160, 6_979_321_856), "excluded": (1, 4096 * 128256)}
    assert got[("blackwell_engine_config_loaded_timestamp_seconds", ("trtllm_engine_nvfp4",))] == 1000.0


def test_hf_quant_config_legacy_shape_fp8_with_a_wildcard_exclude():
    got = poll(FIXTURES / "hf_modelopt_fp8_legacy")
    assert info(got)[1:7] == ("hf-quant-config-legacy", "FP8", "FP8", "", "", "modelopt 0.19.0")
    # layer 0's four attention projections and lm_head are excluded
    assert layers(got, "hf_modelopt_fp8_legacy") == {"fp8": (10, 983_040), "excluded": (5, 452_608)}


def test_hf_quant_config_flat_shape_with_ignore_and_kv_cache_scheme():
    got = poll(FIXTURES / "hf_modelopt_nvfp4_flat")
    assert info(got)[1:4] == ("hf-quant-config-flat", "NVFP4", "FP8")
    assert layers(got, "hf_modelopt_nvfp4_flat") == {"fp4": (12, 917_504), "excluded": (3, 518_144)}


def test_mixed_precision_takes_each_layers_algorithm_from_quant_cfg_json():
    got = poll(FIXTURES / "mixed_precision")
    assert info(got)[2:4] == ("MIXED_PRECISION", "FP8")
    assert layers(got, "mixed_precision") == {
        "fp8": (2, 196_608), "fp4": (5, 655_360), "unknown": (1, 131_072), "excluded": (3, 452_608)}
    assert got[("blackwell_engine_unknown_algorithm_info",
                ("mixed_precision", "quantized_layers.transformer.layers.1.mlp.proj", "FP6_E3M2"))] == 1


def test_hf_quantization_config_mxfp4_moe_excludes_whole_modules_by_prefix():
    got = poll(FIXTURES / "hf_gpt_oss_mxfp4")
    assert info(got)[1:4] == ("hf", "MXFP4", "NO_QUANT")
    got_layers = layers(got, "hf_gpt_oss_mxfp4")
    assert got_layers["fp4"] == (24 * 32 * 3, 24 * 32 * 3 * 2880 * 2880)
    assert got_layers["excluded"][0] == 24 * 4 + 24 + 1  # attention projections, routers, lm_head


def test_tensorrt_llm_checkpoint_w4a8_with_tp_and_pp():
    got = poll(FIXTURES / "trtllm_checkpoint_w4a8")
    assert info(got)[1:6] == ("trtllm-checkpoint", "W4A8_MXFP4_FP8", "NO_QUANT", "4", "2")
    assert layers(got, "trtllm_checkpoint_w4a8") == {"fp4": (6, 786_432), "excluded": (5, 649_216)}


def test_an_unquantized_hf_checkpoint_is_all_16bit(tmp_path):
    shutil.copy(FIXTURES / "hf_modelopt_fp8_legacy" / "config.json", tmp_path / "config.json")
    got = poll(tmp_path)
    assert layers(got, tmp_path.name) == {"16bit": (15, 1_435_648)}


@pytest.mark.parametrize("algo", sorted(algorithms.FAMILIES))
def test_every_known_algorithm_name_maps_to_its_family(tmp_path, algo):
    (tmp_path / "hf_quant_config.json").write_text(json.dumps({"quantization": {"quant_algo": algo}}))
    shutil.copy(FIXTURES / "hf_modelopt_fp8_legacy" / "config.json", tmp_path / "config.json")
    got = poll(tmp_path)
    assert layers(got, tmp_path.name) == {algorithms.FAMILIES[algo]: (15, 1_435_648)}
    assert not [k for k in got if k[0] == "blackwell_engine_unknown_algorithm_info"]


@pytest.mark.parametrize(("method", "algo"), [("fp8", "FP8"), ("mxfp4", "MXFP4"), ("mxfp8", "MXFP8"),
                                              ("nvfp4", "NVFP4")])
def test_hf_quant_methods(tmp_path, method, algo):
    config = json.loads((FIXTURES / "hf_modelopt_fp8_legacy" / "config.json").read_text())
    config["quantization_config"] = {"quant_method": method}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert describe(tmp_path).quant_algo == algo


def test_an_unknown_algorithm_is_reported_not_fatal(tmp_path):
    (tmp_path / "hf_quant_config.json").write_text(json.dumps(
        {"quantization": {"quant_algo": "FP6_MAGIC", "kv_cache_quant_algo": "FP2"}}))
    shutil.copy(FIXTURES / "hf_modelopt_fp8_legacy" / "config.json", tmp_path / "config.json")
    got = poll(tmp_path)
    assert info(got)[2:4] == ("FP6_MAGIC", "FP2")
    assert layers(got, tmp_path.name) == {"unknown": (15, 1_435_648)}
    assert {labels[1:] for (name, labels) in got if name == "blackwell_engine_unknown_algorithm_info"} == {
        ("quant_algo", "FP6_MAGIC"), ("kv_cache_quant_algo", "FP2")}


def test_a_config_without_model_dimensions_still_exports_its_settings(tmp_path):
    (tmp_path / "hf_quant_config.json").write_text(json.dumps({"quant_algo": "FP8"}))
    got = poll(tmp_path)
    assert info(got)[2] == "FP8"
    assert not [k for k in got if k[0] == "blackwell_engine_gemm_layers"]


@pytest.mark.parametrize(("files", "message"), [
    ({}, "no config.json or hf_quant_config.json"),
    ({"config.json": "{not json"}, "config.json: not readable JSON"),
    ({"config.json": "[1, 2]"}, "top level must be an object"),
    ({"hf_quant_config.json": '{"quantization": {"quant_algo": "MIXED_PRECISION"}}'}, "no quant_cfg.json"),
    ({"hf_quant_config.json": '{"quantization": {"quant_algo": "FP8", "exclude_modules": "lm_head"}}'},
     "must be a list of strings"),
])
def test_broken_configs_take_the_source_down_naming_the_file(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(PollError, match=message) as err:
        poll(tmp_path)
    assert err.value.reason == "invalid"


def test_files_are_read_again_only_when_they_change(tmp_path):
    shutil.copytree(FIXTURES / "hf_modelopt_fp8_legacy", tmp_path / "e")
    clock = iter(range(100, 200)).__next__
    src = EngineSource(EngineConfig(enabled=True, engines=[{"path": str(tmp_path / "e"), "name": "llama"}]),
                       clock=lambda: float(clock()))
    src.probe()

    def loaded() -> float:
        [fam] = [f for f in src.poll() if f.metric.name == "blackwell_engine_config_loaded_timestamp_seconds"]
        return fam.samples[0][1]

    first = loaded()
    assert loaded() == first  # unchanged files are not parsed again
    quant = tmp_path / "e" / "hf_quant_config.json"
    quant.write_text(json.dumps({"quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8"}}))
    os.utime(quant, ns=(1, 1))
    assert loaded() > first
    [fam] = [f for f in src.poll() if f.metric.name == "blackwell_engine_info"]
    assert fam.samples[0][0][2] == "NVFP4"


def test_engine_names_must_be_unique_and_at_least_one_is_needed(tmp_path):
    """Config errors, caught when the config is loaded (and by `config check`), not at the first poll."""
    with pytest.raises(ValidationError, match="no engines configured"):
        EngineConfig(enabled=True)
    with pytest.raises(ValidationError, match="repeated"):
        EngineConfig(enabled=True, engines=[{"path": str(tmp_path), "name": "a"}, {"path": str(tmp_path), "name": "a"}])


def test_cross_check_without_tensorrt_llm_installed_says_so_and_reads_the_json(caplog):
    got = poll(FIXTURES / "hf_modelopt_fp8_legacy", cross_check_tensorrt_llm=True)
    assert "tensorrt_llm is not installed" in caplog.text
    assert info(got)[2] == "FP8"
