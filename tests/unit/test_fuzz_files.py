"""Fuzzing the sources that read local files: log lines, engine quant configs, dispatch state files.

Through each public source class: whatever the files hold, ``poll()`` returns families that render
to a valid exposition, or raises a PollError, never anything else and never for long. Each test
prints how many examples hypothesis ran (``pytest -s`` shows them)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter import promtext
from exporter.inprocess.state import FORMAT, VERSION
from exporter.snapshot import Snapshot, SnapshotStore
from exporter.sources.base import PollError
from exporter.sources.dispatch import DispatchConfig, DispatchSource
from exporter.sources.engine import EngineConfig, EngineSource
from exporter.sources.logs import LogsConfig, LogsSource
from tests.support import counted

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENGINES = Path(__file__).resolve().parents[1] / "fixtures" / "engines"


def render(source: str, families: list) -> None:
    store = SnapshotStore()
    store.publish(source, Snapshot.of(source, families), lambda: Snapshot("exporter", {}))
    promtext.parse(store.current().text)


def poll_or_poll_error(source) -> None:
    try:
        families = source.poll()
    except PollError:
        return
    render(source.name, families)


# -- logs ------------------------------------------------------------------------------------------

LOG_WORDS = ["promoted", "promotion", "layer", "layers:", "47", "fp8", "FP4", "fallback", "not supported",
             "Loading engine", "autotuning", "capturing cuda graphs", "CUDA out of memory", "NCCL", "WARN",
             "Watchdog caught collective operation timeout", "torch.compile", "\t", " ", '"', "\\", "{", "=", "\r"]
log_lines = st.one_of(st.lists(st.sampled_from(LOG_WORDS), max_size=20).map(" ".join),
                      st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")))


def test_log_chunks_of_any_content_count_without_errors_and_render() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-logs-"))
    log = workdir / "server.log"

    @SETTINGS
    @given(st.lists(st.one_of(log_lines.map(lambda s: s.encode("utf-8", "surrogatepass")), st.binary(max_size=300)),
                    min_size=1, max_size=6),
           st.sampled_from(["none", "rotate", "truncate", "delete"]))
    def run(tick: Callable[[], None], chunks: list[bytes], churn: str) -> None:
        tick()
        log.write_bytes(b"")
        source = LogsSource(LogsConfig(enabled=True, paths=[str(log)], start_at="beginning", max_line_bytes=512))
        for i, chunk in enumerate(chunks):
            with log.open("ab") as handle:
                handle.write(chunk + (b"\n" if i % 2 else b""))
            poll_or_poll_error(source)
            if i == len(chunks) // 2:
                if churn == "rotate":
                    log.rename(workdir / "server.log.1")
                    log.write_bytes(b"")
                elif churn == "truncate":
                    log.write_bytes(b"")
                elif churn == "delete":
                    log.unlink()
        poll_or_poll_error(source)
        source.close()

    counted("logs: appended chunks with rotation/truncation/deletion", lambda tick: run(tick))


def test_default_rules_take_a_bounded_time_on_ordinary_long_lines() -> None:
    source = LogsSource(LogsConfig(enabled=True, paths=[]))
    lines = ["promoted " + "layer " * 2700, "x" * 16384, "promoted layer" + " " * 16000,
             "[TensorRT-LLM] " + "loading engine " * 1000, "error " * 2700]
    for line in lines:
        started = time.perf_counter()
        source.count_line(line[:16384])
        assert time.perf_counter() - started < 0.1, line[:40]


@pytest.mark.parametrize("line", ["'fp8', " * 2340, "NCCL WARN " * 1638], ids=["fp8-repeated", "nccl-repeated"])
def test_a_line_repeating_a_keyword_is_matched_quickly(line: str) -> None:
    source = LogsSource(LogsConfig(enabled=True, paths=[]))
    started = time.perf_counter()
    source.count_line(line[:16384])
    assert time.perf_counter() - started < 0.1


def test_a_catastrophic_rule_pattern_from_config_is_refused() -> None:
    with pytest.raises(ValueError, match="backtrack"):
        LogsConfig(enabled=True, paths=["/x"], rules=[{"name": "bad", "pattern": "(a+)+$"}])


# -- engine configs --------------------------------------------------------------------------------

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**40), st.floats(allow_nan=False, width=32),
                      st.text(max_size=12), st.sampled_from(["NVFP4", "FP8", "W4A8_AWQ", "MIXED_PRECISION", "MXFP4",
                                                             "nvfp4", "fp8", "modelopt", "*", "lm_head"]))
ENGINE_KEYS = ["quant_algo", "kv_cache_quant_algo", "exclude_modules", "ignore", "quantization", "pretrained_config",
               "build_config", "num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
               "quantization_config", "quant_method", "architecture", "mapping", "tp_size", "producer",
               "kv_cache_scheme", "num_bits", "modules_to_not_convert", "moe", "num_experts"]
json_doc = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(ENGINE_KEYS), inner, max_size=5)), max_leaves=20)


def _mutate(doc: object, path: list[str], value: object) -> object:
    if not path or not isinstance(doc, dict):
        return value
    key = path[0] if path[0] in doc else next(iter(doc), path[0])
    return {**doc, key: _mutate(doc.get(key), path[1:], value)}


def test_engine_directories_with_any_config_content_give_families_or_a_poll_error() -> None:
    fixtures = sorted(p for p in ENGINES.iterdir() if p.is_dir())

    @SETTINGS
    @given(st.sampled_from(fixtures), st.sampled_from(["config.json", "hf_quant_config.json", "quant_cfg.json"]),
           st.one_of(json_doc.map(json.dumps),
                     st.tuples(st.lists(st.sampled_from(ENGINE_KEYS), max_size=3), json_doc).map(lambda p: p),
                     st.binary(max_size=100)))
    def run(tick: Callable[[], None], fixture: Path, name: str, content: object) -> None:
        tick()
        directory = Path(tempfile.mkdtemp(prefix="fuzz-engine-"))
        try:
            shutil.copytree(fixture, directory, dirs_exist_ok=True)
            target = directory / name
            if isinstance(content, tuple):  # a mutation of the fixture's own file
                original = json.loads(target.read_text()) if target.exists() else {}
                content = json.dumps(_mutate(original, *content))
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
            source = EngineSource(EngineConfig(enabled=True, engines=[str(directory)]))
            source.probe()
            started = time.perf_counter()
            poll_or_poll_error(source)
            assert time.perf_counter() - started < 2.0
        finally:
            shutil.rmtree(directory)

    counted("engine: fixture directories with one file fuzzed", lambda tick: run(tick))


def test_a_deeply_nested_engine_config_is_an_invalid_poll_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("[" * 100000)
    source = EngineSource(EngineConfig(enabled=True, engines=[str(tmp_path)]))
    source.probe()
    with pytest.raises(PollError):
        source.poll()


def test_an_absurd_layer_count_is_refused_quickly(tmp_path: Path) -> None:
    shutil.copytree(ENGINES / "hf_modelopt_nvfp4_flat", tmp_path, dirs_exist_ok=True)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 100_000_000}))
    # In a child process, so a runaway enumeration is killed instead of eating the rest of the suite.
    code = ("import sys; from exporter.sources.engine import EngineConfig, EngineSource\n"
            "s = EngineSource(EngineConfig(enabled=True, engines=[sys.argv[1]])); s.probe()\n"
            "try:\n    s.poll()\nexcept Exception as e:\n    print(type(e).__name__)\n")
    try:
        result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, timeout=3, text=True)
    except subprocess.TimeoutExpired:
        pytest.fail("still enumerating layers after 3 s")
    # The engine's settings are still exported; only the layer counts are refused, and the log says why.
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr
    assert "over 1024 is not a real model config" in result.stderr


# -- dispatch state files --------------------------------------------------------------------------

numbers = st.one_of(st.integers(-3, 10**12), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.text(max_size=4), st.none())


def _state(now: float) -> st.SearchStrategy[dict]:
    pair = st.one_of(st.lists(numbers, min_size=0, max_size=3), numbers)
    kernel = st.sampled_from(["nvjet_sm90_qqtst_x", "my_gemm", "softmax", ""])
    names = st.one_of(st.dictionaries(kernel, pair, max_size=4), st.lists(kernel, max_size=4))  # version 2, 3
    gpu = st.fixed_dictionaries({"kernels": numbers, "kernel_ns": numbers, "names": st.one_of(names, numbers),
                                 "counts": st.one_of(st.lists(numbers, max_size=8), numbers), "overflow": pair})
    return st.fixed_dictionaries({
        "format": st.sampled_from([FORMAT, FORMAT, "other"]), "version": st.sampled_from([VERSION, VERSION, 2, 1, 4]),
        "updated_at": st.one_of(st.just(now - 1), numbers), "started_at": st.one_of(st.just(now - 5), numbers),
        "pid": st.one_of(st.integers(0, 10**6), numbers),
        "status": st.sampled_from(["sampling", "exited", "paused", "bogus"]),
        "reason": st.one_of(st.sampled_from(["", "multiple_subscribers", "new_reason"]), numbers),
        "windows": numbers, "sampled_seconds": numbers, "records": numbers, "dropped_records": numbers,
        "duty_cycle": numbers,
        "gpus": st.one_of(st.dictionaries(st.sampled_from(["0", "1", "7", 'x"y']), gpu, max_size=3), numbers)})


def test_dispatch_state_files_of_any_content_give_families_or_a_poll_error() -> None:
    now = 1_800_000_000.0
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-dispatch-"))

    @SETTINGS
    @given(st.lists(st.one_of(_state(now).map(lambda s: json.dumps(s, allow_nan=True).encode()),
                              st.binary(max_size=80), json_doc.map(lambda d: json.dumps(d).encode())),
                    min_size=1, max_size=3))
    def run(tick: Callable[[], None], files: list[bytes]) -> None:
        tick()
        for old in workdir.glob("*.json"):
            old.unlink()
        for i, body in enumerate(files):
            (workdir / f"proc{i}.json").write_bytes(body)
        poll_or_poll_error(DispatchSource(DispatchConfig(enabled=True, state_dir=workdir), clock=lambda: now))

    counted("dispatch: state files", lambda tick: run(tick))
