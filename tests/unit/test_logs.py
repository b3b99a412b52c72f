"""The logs source: following real files through rotation and truncation, rules, default rule set."""

from __future__ import annotations

import os
import time
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from exporter.snapshot import Snapshot
from exporter.sources.logs import LogsConfig, LogsSource, default_rules


def source(*paths: Path, **config) -> LogsSource:
    config.setdefault("start_at", "beginning")
    return LogsSource(LogsConfig(enabled=True, paths=[str(p) for p in paths], **config))


def counts(src: LogsSource) -> dict[tuple[str, tuple[str, ...]], float]:
    families = src.poll()
    Snapshot.of("logs", families)
    return {(f.metric.name, labels): value for f in families for labels, value in f.samples}


def append(path: Path, text: str | bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(text.encode() if isinstance(text, str) else text)


OOM = ("blackwell_cuda_oom_errors_total", ())
OOM_LINE = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"


# -- the default rule set -------------------------------------------------------------------------
@pytest.mark.parametrize(("line", "metric", "labels"), [
    ("[TRT-LLM] [W] FP8 GEMM plugin not supported on this GPU, falling back to BF16",
     "blackwell_fp8_fallback_warnings_total", ("fp8_fallback",)),
    ("WARNING: NVFP4 kernels unavailable for sm_90, falling back to fp16", "blackwell_fp8_fallback_warnings_total",
     ("fp8_fallback",)),
    ("TE: tensor in layer 47 promoted to bf16 after amax overflow", "blackwell_te_promotion_events_total", ("47",)),
    ("quantization promotion: transformer.layers.12.mlp.fc -> bf16", "blackwell_te_promotion_events_total", ("12",)),
    ("[TRT-LLM] [I] Loading engine from /engines/rank0.engine", "blackwell_engine_cold_start_events_total",
     ("engine_load",)),
    ("[TRT-LLM] [I] Total time of building all engines: 00:12:31", "blackwell_engine_cold_start_events_total",
     ("engine_build",)),
    ("Capturing CUDA graphs for batch sizes [1, 2, 4, 8]", "blackwell_engine_cold_start_events_total",
     ("cuda_graph_capture",)),
    ("[AutoTuner] autotune start for fp4_gemm, 12 tactics", "blackwell_engine_cold_start_events_total", ("autotune",)),
    ("flashinfer: JIT compiling module fused_moe_100", "blackwell_engine_cold_start_events_total", ("jit_compile",)),
    (OOM_LINE.strip(), *OOM),
    ("RuntimeError: CUDA error: out of memory (cudaErrorMemoryAllocation)", *OOM),
    ("NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled system error, ncclSystemError: System call failed",
     "blackwell_nccl_errors_total", ("ncclSystemError",)),
    ("[Rank 3] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=88, OpType=ALLREDUCE) ran for 600034 ms",
     "blackwell_nccl_errors_total", ("timeout",)),
    ("node1:42:42 [0] NCCL WARN Call to connect returned Connection refused", "blackwell_nccl_errors_total", ("warn",)),
])
def test_each_default_rule_counts_its_kind_of_line_once(tmp_path, line, metric, labels):
    log = tmp_path / "server.log"
    log.write_text(f"{line}\nan ordinary line about nothing\n")
    got = counts(source(log))
    assert got[(metric, labels)] == 1
    others = {k: v for k, v in got.items() if v and k != (metric, labels) and not k[0].startswith("blackwell_log_")}
    assert others == {}


WORDS = ["fp8", "FP4", "NVFP4", "falling back", "fallback", "not supported", "disabled", "layer", "layers.12", "47",
         "promoted", "promotion", "Loading", "engine", "building", "Total time of building", "Capturing", "CUDA",
         "graphs", "autotune", "AutoTuner", "JIT", "compiling", "kernels", "kernel cache miss", "torch.compile",
         "out of memory", "OutOfMemoryError", "cudaErrorMemoryAllocation", "NCCL", "WARN", "ncclSystemError",
         "timed out", "timeout", "Watchdog caught collective operation timeout", "deserializing", "[TRT-LLM]", "x"]


@cache
def _shortcut_and_bare_sources() -> tuple[LogsSource, LogsSource]:
    bare = [rule.model_dump() | {"requires": []} for rule in default_rules()]
    return (LogsSource(LogsConfig(enabled=True, paths=[])),
            LogsSource(LogsConfig(enabled=True, paths=[], default_rules=False, rules=bare)))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).map(" ".join))
def test_the_requires_shortcut_of_the_default_rules_never_changes_a_count(line):
    """`requires` only skips lines the pattern cannot match: counts equal those of the bare patterns.

    The two sources live across examples (building them is most of an example's time): equal
    counts before a line and after it mean the line added the same to both."""
    fast, slow = _shortcut_and_bare_sources()
    fast.count_line(line)
    slow.count_line(line)
    assert fast.counts == slow.counts


# -- following files --------------------------------------------------------------------------------
def test_a_line_without_its_newline_waits_for_the_rest(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("CUDA out of me")
    src = source(log)
    assert counts(src)[OOM] == 0
    append(log, "mory\n")
    assert counts(src)[OOM] == 1


def test_a_source_restart_after_a_failed_poll_counts_no_line_twice(tmp_path):
    """The scheduler calls close() and probe() after a timeout; the offsets must survive that."""
    log = tmp_path / "a.log"
    log.write_text(OOM_LINE * 2 + "CUDA out of")
    src = source(log)
    assert counts(src)[OOM] == 2
    src.close()
    src.probe()
    append(log, " memory\n")
    assert counts(src)[OOM] == 3


def test_an_unreadable_path_is_skipped_and_the_others_keep_counting(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "sub").mkdir()  # a glob that also matches a directory
    log = tmp_path / "logs" / "a.log"
    log.write_text(OOM_LINE)
    src = source(tmp_path / "logs" / "*")
    assert counts(src)[OOM] == 1
    append(log, OOM_LINE)
    assert counts(src)[OOM] == 2


def test_by_default_a_file_is_followed_from_its_end_and_only_new_lines_count(tmp_path):
    log = tmp_path / "a.log"
    log.write_text(OOM_LINE * 3)
    src = source(log, start_at="end")
    assert counts(src)[OOM] == 0
    append(log, OOM_LINE)
    assert counts(src)[OOM] == 1


def test_rotation_by_rename_reads_the_old_file_to_its_end_then_the_new_one(tmp_path):
    log = tmp_path / "a.log"
    log.write_text(OOM_LINE)
    src = source(log)
    assert counts(src)[OOM] == 1
    append(log, OOM_LINE + "CUDA out of memory (last line, no newline)")
    os.rename(log, tmp_path / "a.log.1")
    log.write_text(OOM_LINE)
    got = counts(src)
    assert got[OOM] == 4
    assert got[("blackwell_log_reopens_total", (str(log), "rotated"))] == 1
    append(log, OOM_LINE)
    assert counts(src)[OOM] == 5


def test_truncation_in_place_restarts_at_the_beginning(tmp_path):
    log = tmp_path / "a.log"
    log.write_text(OOM_LINE * 5)
    src = source(log)
    assert counts(src)[OOM] == 5
    with open(log, "r+b") as fh:  # copytruncate
        fh.truncate(0)
    append(log, OOM_LINE)
    got = counts(src)
    assert got[OOM] == 6
    assert got[("blackwell_log_reopens_total", (str(log), "truncated"))] == 1


def test_binary_junk_and_invalid_utf8_are_survived(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"\x00\xff\xfe garbage \x80\x81\n\x1b[31mCUDA out of memory\x1b[0m \xc3\x28\n" + os.urandom(4096)
                    + b"\n" + OOM_LINE.encode())
    assert counts(source(log))[OOM] >= 2


def test_an_over_long_line_is_cut_and_the_rest_of_it_skipped(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("x" * 5000 + "CUDA out of memory" + "y" * 5000 + "\n" + OOM_LINE)
    # the match sits beyond the cut: only the second line counts
    assert counts(source(log, max_line_bytes=1024))[OOM] == 1


def test_a_1_gb_file_is_joined_at_its_end_without_reading_it(tmp_path):
    log = tmp_path / "big.log"
    with open(log, "wb") as fh:
        fh.truncate(1 << 30)  # sparse: 1 GiB of file, no disk blocks
    src = source(log, start_at="end")
    began = time.monotonic()
    assert counts(src)[OOM] == 0
    append(log, OOM_LINE)
    got = counts(src)
    assert got[OOM] == 1
    assert got[("blackwell_log_read_bytes_total", (str(log),))] == len(OOM_LINE)
    assert time.monotonic() - began < 2


def test_a_1_gb_file_read_from_the_start_is_read_in_bounded_chunks(tmp_path):
    log = tmp_path / "big.log"
    with open(log, "wb") as fh:
        fh.write(OOM_LINE.encode())
        fh.seek(1 << 30)  # a hole of 1 GiB of zero bytes, then one more line
        fh.write(b"\n" + OOM_LINE.encode())
    src = source(log, max_read_bytes=1 << 20)
    got = counts(src)
    assert got[OOM] == 1
    assert got[("blackwell_log_read_bytes_total", (str(log),))] == 1 << 20  # one chunk per poll, not the file


def test_glob_paths_pick_up_files_that_appear_later_from_their_start(tmp_path):
    src = source(tmp_path / "*.log", start_at="end")
    assert counts(src)[OOM] == 0
    (tmp_path / "rank1.log").write_text(OOM_LINE)
    assert counts(src)[OOM] == 1


# -- user rules ---------------------------------------------------------------------------------------
def test_named_groups_of_a_user_rule_become_labels_up_to_the_cardinality_cap(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("".join(f"request failed model=m{i} code=500\n" for i in range(5)) + "request failed model=m0 code=500\n")
    rules = [{"name": "failed", "pattern": r"request failed model=(?P<model>\w+)", "max_series": 3},
             {"name": "codes", "pattern": r"model=(?P<model>\w+) code=(?P<code>\d+)"}]
    got = counts(source(log, rules=rules, default_rules=False))
    assert got[("blackwell_log_matches_total", ("failed", "m0"))] == 2
    assert got[("blackwell_log_matches_total", ("failed", "_overflow_"))] == 2
    assert got[("blackwell_log_label_overflow_total", ("failed",))] == 2
    assert got[("blackwell_log_matches_total", ("codes", "model=m3,code=500"))] == 1


def test_a_user_rule_can_fill_a_catalog_counter_whose_labels_its_groups_name(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("[TE] fp8 amax promotion in decoder block 7\n")
    rules = [{"name": "te_block", "pattern": r"promotion in decoder block (?P<layer>\d+)",
              "metric": "blackwell_te_promotion_events_total"}]
    got = counts(source(log, rules=rules, default_rules=False))
    assert got[("blackwell_te_promotion_events_total", ("7",))] == 1


@pytest.mark.parametrize(("rule", "message"), [
    ({"name": "bad", "pattern": "(unclosed"}, "not a valid regular expression"),
    ({"name": "long", "pattern": "a" * 2001}, "at most 2000 are allowed"),
    ({"name": "slow", "pattern": "(a+)+$"}, "backtrack exponentially"),
    ({"name": "Bad-Name", "pattern": "x"}, "snake_case"),
    ({"name": "m", "pattern": "x", "metric": "blackwell_no_such_total"}, "not declared in exporter.catalog"),
    ({"name": "m", "pattern": "x", "metric": "blackwell_gpu_power_watts"}, "not a counter the logs source may fill"),
    ({"name": "m", "pattern": r"(?P<gpu>\d)", "metric": "blackwell_te_promotion_events_total"},
     "must be labels of blackwell_te_promotion_events_total"),
    ({"name": "m", "pattern": "x", "metric": "blackwell_nccl_errors_total"}, r"nothing fills label\(s\) \['kind'\]"),
    ({"name": "cuda_oom", "pattern": "x"}, "rule names must be unique"),
])
def test_bad_rules_are_refused_when_the_config_is_loaded(rule, message):
    with pytest.raises(ValidationError, match=message):
        LogsConfig(enabled=True, rules=[rule])


def test_the_default_rule_set_loads_and_every_rule_compiles():
    names = [r.name for r in LogsConfig().all_rules()]
    assert {"te_promotion", "fp8_fallback", "cuda_oom", "nccl_error", "engine_load"} <= set(names)


def test_every_default_rule_is_documented():
    doc = (Path(__file__).parents[2] / "docs" / "precision.md").read_text()
    assert [r.name for r in LogsConfig().all_rules() if f"`{r.name}`" not in doc] == []


def test_a_file_the_glob_no_longer_names_is_read_to_its_end_and_let_go(tmp_path):
    log = tmp_path / "rank0.log"
    log.write_text(OOM_LINE)
    src = source(tmp_path / "*.log")
    assert counts(src)[OOM] == 1
    append(log, OOM_LINE)
    os.rename(log, tmp_path / "rank0.old")
    assert counts(src)[OOM] == 2  # the renamed file's last line still counts
    counts(src)
    assert src.tails == {}
