"""The dispatch source's reader of state files: msgspec where installed, the standard library otherwise, same answers.

Files are real files written as the writers write them (docs/dispatch-state.md): version 4 by
``StateWriter`` (the counts in the state file, the names in a names file beside it), 3 and 2 as
older writers did. Each case is read by a reader with msgspec and by one without, across several
polls, since a reader keeps what it decoded of each names file between reads.
"""

from __future__ import annotations

import json
import re

import pytest

from exporter.dispatch_reader import BATCH, GPU_KEYS, HEADER_KEYS, StateReader
from exporter.inprocess.state import FORMAT, StateError, StateWriter, write_atomic
from tests.support import REPO

NOW = 1_800_000_000.0

pytest.importorskip("msgspec")


def content(gpus: dict[str, dict[str, list[int]]], version: int = 3, **header) -> dict:
    """A state as the writers hold it (names inline): version 3 and 2 files as they are; StateWriter writes
    version 4."""
    def entry(names: dict[str, list[int]]) -> dict:
        listed = {"names": names} if version == 2 else {
            "names": list(names), "counts": [n for pair in names.values() for n in pair]}
        return {"uuid": "GPU-aaaa", "kernels": 9, "kernel_ns": 90, **listed, "overflow": [1, 10]}

    return {"format": FORMAT, "version": version, "writer": "inject", "pid": 7, "process": "rank0",
            "started_at": NOW, "updated_at": NOW, "status": "sampling", "reason": "", "detail": "", "duty_cycle": 0.1,
            "windows": 1, "sampled_seconds": 1.0, "records": 9, "dropped_records": 0,
            "gpus": {gpu: entry(names) for gpu, names in gpus.items()}, **header}


def plain(state: dict) -> dict:
    """A state as read, its names lists (a version 4 file's decode as they are indexed) as plain lists."""
    return {**state, "gpus": {gpu: {**entry, "names": list(entry["names"])} for gpu, entry in state["gpus"].items()}}


def readers() -> tuple[StateReader, StateReader]:
    fast, standard = StateReader(), StateReader(use_msgspec=False)
    assert fast.fast and not standard.fast
    return fast, standard


@pytest.mark.parametrize("version", [4, 3, 2])
def test_both_readers_give_names_and_flat_counts_in_file_order_across_polls(tmp_path, version):
    path = tmp_path / "rank0.json"
    fast, standard = readers()
    writer = StateWriter(path)
    names = {"b_gemm": [1, 10], "a_gemm": [2, 20], 'q"uote\\d \u00e9': [3, 30]}
    polls = [dict(names), {**names, "a_gemm": [5, 50]}, {**names, "a_gemm": [5, 50], "c_new": [1, 1]},
             {**names, "a_gemm": [5, 50], "c_new": [1, 1]}, {"z_other": [1, 1]}]
    for step, gpu_names in enumerate(polls):
        written = content({"0": gpu_names, "1": {"x_gemm": [step, step]}}, version)
        writer.write(written) if version == 4 else write_atomic(path, written)
        got = plain(fast.read(path))
        assert got == plain(standard.read(path))
        assert got["gpus"]["0"]["names"] == list(gpu_names)
        assert got["gpus"]["0"]["counts"] == [n for pair in gpu_names.values() for n in pair]
        assert (got["pid"], got["status"], got["gpus"]["1"]["overflow"]) == (7, "sampling", [1, 10])


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda s: s.update(gpus=[]), "gpus must be a mapping"),
    (lambda s: s["gpus"]["0"].update(names={"a": [1, 2]}), "names: must be a list of kernel names"),
    (lambda s: s["gpus"]["0"].update(names=["a", 5], counts=[1, 2, 3, 4]), "names: must be a list of kernel names"),
    (lambda s: s["gpus"]["0"].update(counts=[1, 2, 3]), "counts: expected a list of two integers per name"),
    (lambda s: s["gpus"]["0"].update(counts=[1, 2, 3, 4.0]), "counts: expected .* per name \\(4\\), got 4.0"),
    (lambda s: s["gpus"]["0"].update(counts=[1, 2, True, 4]), "counts: expected .* got True"),
    (lambda s: s.update(version=2, gpus={"0": {"kernels": 1, "kernel_ns": 1, "names": {"a": [1, 2.0]}}}),
     r"names\['a'\]: expected \[launches, gpu_ns\], got \[1, 2.0\]"),
    (lambda s: s.update(version=2), "names: must be a mapping"),
    (lambda s: s.update(pid="seven"), "pid: expected an integer"),
])
def test_a_file_of_the_wrong_shape_gets_the_same_message_from_both_readers(tmp_path, mutate, message):
    state = content({"0": {"a_gemm": [1, 10], "b_gemm": [2, 20]}})
    mutate(state)
    path = tmp_path / "rank0.json"
    path.write_text(json.dumps(state))
    errors = []
    for reader in readers():
        with pytest.raises(StateError, match=message) as err:
            reader.read(path)
        errors.append((str(err.value), err.value.reason))
    assert errors[0] == errors[1]


@pytest.mark.parametrize("version", [4, 3])
def test_a_torn_file_is_torn_for_both_readers_and_one_that_lists_fewer_names_reads_them(tmp_path, version):
    path = tmp_path / "rank0.json"
    fast, standard = readers()
    writer = StateWriter(path)
    for gpus in ({"0": {"a_gemm": [1, 10], "b_gemm": [2, 20]}}, {"0": {"a_gemm": [1, 10]}}):
        writer.write(content(gpus)) if version == 4 else write_atomic(path, content(gpus, version))
        fast.read(path)
        path.write_bytes(path.read_bytes()[:-40])
        for reader in (fast, standard):
            with pytest.raises(StateError, match="torn or not JSON") as err:
                reader.read(path)
            assert err.value.reason == "torn"
    writer.write(content({"0": {"a_gemm": [1, 10]}})) if version == 4 else write_atomic(
        path, content({"0": {"a_gemm": [1, 10]}}, version))
    assert list(fast.read(path)["gpus"]["0"]["names"]) == ["a_gemm"]


def write_v4(path, gpus: dict[str, dict[str, list[int]]], writer: StateWriter | None = None) -> StateWriter:
    writer = writer or StateWriter(path)
    writer.write(content(gpus))
    return writer


def names_file_of(path, gpu: str = "0"):
    return path.parent / json.loads(path.read_text())["gpus"][gpu]["names_file"]


def test_a_version_4_file_decodes_no_name_until_one_is_asked_for_and_then_a_batch(tmp_path):
    path = tmp_path / "rank0.json"
    write_v4(path, {"0": {f"gemm_{i}": [i, i] for i in range(3 * BATCH)}})
    for reader in readers():
        names = reader.read(path)["gpus"]["0"]["names"]
        assert len(names) == 3 * BATCH and names.file.names == []
        assert names[5] == "gemm_5" and len(names.file.names) == BATCH
        assert names[-1] == f"gemm_{3 * BATCH - 1}" and list(names) == [f"gemm_{i}" for i in range(3 * BATCH)]


def test_names_a_later_write_appends_are_read_from_where_the_last_read_ended(tmp_path):
    path = tmp_path / "rank0.json"
    reader = StateReader()
    writer = write_v4(path, {"0": {"a_gemm": [1, 1]}})
    first = reader.read(path)["gpus"]["0"]["names"]
    assert list(first) == ["a_gemm"]
    write_v4(path, {"0": {"a_gemm": [2, 2], "b_gemm": [1, 1]}}, writer)
    second = reader.read(path)["gpus"]["0"]
    assert second["names"].file is first.file and list(second["names"]) == ["a_gemm", "b_gemm"]
    assert second["counts"] == [2, 2, 1, 1] and list(first) == ["a_gemm"]  # a list read earlier keeps its length


def test_a_names_file_shorter_than_the_state_says_or_missing_is_refused_by_both_readers(tmp_path):
    path = tmp_path / "rank0.json"
    write_v4(path, {"0": {"a_gemm": [1, 10], "b_gemm": [2, 20]}})
    names_file = names_file_of(path)
    names_file.write_bytes(names_file.read_bytes()[:-3])
    for reader in readers():
        with pytest.raises(StateError, match=r"names file has 15 bytes, the state file lists 18") as err:
            reader.read(path)
        assert err.value.reason == "torn"
    names_file.unlink()
    for reader in readers():
        with pytest.raises(StateError, match="cannot read the names file"):
            reader.read(path)


@pytest.mark.parametrize("names_file", ["../rank0.names", "/etc/x.names", "rank0.names", ".rank0.json", 7])
def test_a_names_file_that_is_not_a_bare_names_file_of_the_directory_is_refused(tmp_path, names_file):
    path = tmp_path / "rank0.json"
    write_v4(path, {"0": {"a_gemm": [1, 10]}})
    state = json.loads(path.read_text())
    state["gpus"]["0"]["names_file"] = names_file
    path.write_text(json.dumps(state))
    for reader in readers():
        with pytest.raises(StateError, match="names_file: expected the name of a .names file") as err:
            reader.read(path)
        assert err.value.reason == "invalid"


def test_a_line_that_is_not_one_json_string_gets_a_name_that_says_so_and_the_others_read_right(tmp_path, caplog):
    path = tmp_path / "rank0.json"
    write_v4(path, {"0": {"a_gemm": [1, 10], "b_gemm": [2, 20], "c_gemm": [3, 30], "d_gemm": [4, 40]}})
    names_file = names_file_of(path)
    lines = names_file.read_bytes().split(b"\n")
    lines[1], lines[2] = b'"b","x"', b"\xff\xfe"  # two names on one line; bytes that are not UTF-8
    names_file.write_bytes(b"\n".join(lines))
    state = json.loads(path.read_text())
    state["gpus"]["0"]["names_bytes"] = names_file.stat().st_size
    path.write_text(json.dumps(state))
    for reader in readers():
        assert list(reader.read(path)["gpus"]["0"]["names"]) == [
            "a_gemm", f"<line 2 of {names_file.name}: not a JSON string>",
            f"<line 3 of {names_file.name}: not a JSON string>", "d_gemm"]
    assert "line 2 is not one JSON string" in caplog.text and "line 3 is not one JSON string" in caplog.text


def test_a_names_file_replaced_under_the_same_name_is_read_anew(tmp_path):
    path = tmp_path / "rank0.json"
    reader = StateReader()
    write_v4(path, {"0": {"a_gemm": [1, 10]}})
    names_file = names_file_of(path)
    assert list(reader.read(path)["gpus"]["0"]["names"]) == ["a_gemm"]
    replacement = tmp_path / "replacement"
    replacement.write_text('"z_gemm"\n')
    replacement.replace(names_file)  # a new inode
    state = json.loads(path.read_text())
    state["gpus"]["0"]["names_bytes"] = 9
    path.write_text(json.dumps(state))
    assert list(reader.read(path)["gpus"]["0"]["names"]) == ["z_gemm"]


def test_the_writer_appends_each_name_once_and_starts_a_new_names_file_when_it_cannot_append(tmp_path):
    path = tmp_path / "rank0.json"
    writer = write_v4(path, {"0": {"a_gemm": [1, 10]}})
    names_file = names_file_of(path)
    names_file.write_bytes(names_file.read_bytes() + b'"torn')  # an append cut short: overwritten by the next
    write_v4(path, {"0": {"a_gemm": [2, 20], "b_gemm": [1, 1]}}, writer)
    assert names_file.read_bytes() == b'"a_gemm"\n"b_gemm"\n' and names_file_of(path) == names_file
    write_v4(path, {"0": {"b_gemm": [1, 1], "a_gemm": [2, 20]}}, writer)  # reordered: a new file
    assert names_file_of(path) != names_file and names_file_of(path).read_bytes() == b'"b_gemm"\n"a_gemm"\n'
    names_file_of(path).unlink()  # removed by an exporter that took the process for gone
    write_v4(path, {"0": {"b_gemm": [1, 1], "a_gemm": [3, 30]}}, writer)
    assert StateReader().read(path)["gpus"]["0"]["counts"] == [1, 1, 3, 30]
    assert list(StateReader().read(path)["gpus"]["0"]["names"]) == ["b_gemm", "a_gemm"]
    assert oct(names_file_of(path).stat().st_mode & 0o777) == "0o644"


def test_the_fast_reader_keeps_every_key_the_format_documents():
    doc = (REPO / "docs" / "dispatch-state.md").read_text()
    content = doc[doc.index("## Content"):doc.index("## Settings read by both writers")]
    header, gpu = content.split("Each `gpus` entry:")

    def keys(table: str) -> set[str]:  # the first column: `key` or `key`, `other key`
        return {key for cell in re.findall(r"^\| (`.+?`) \|", table, re.M) for key in re.findall(r"`(\w+)`", cell)}

    assert keys(header) == {*HEADER_KEYS, "gpus"}
    assert keys(gpu) == {*GPU_KEYS, "counts"}  # and version 3's names, in its own section
