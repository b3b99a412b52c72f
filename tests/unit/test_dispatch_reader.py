"""The dispatch source's reader of state files: msgspec where installed, the standard library otherwise, same answers.

Files are real files written as the writers write them (docs/dispatch-state.md); each case is read
by a reader with msgspec and by one without, across several polls, since the fast reader keeps
each file's name lists between reads.
"""

from __future__ import annotations

import json
import re

import pytest

from exporter.dispatch_reader import GPU_KEYS, HEADER_KEYS, StateReader
from exporter.inprocess.state import FORMAT, StateError, write_atomic
from tests.support import REPO

NOW = 1_800_000_000.0

pytest.importorskip("msgspec")


def content(gpus: dict[str, dict[str, list[int]]], version: int = 3, **header) -> dict:
    def entry(names: dict[str, list[int]]) -> dict:
        listed = {"names": names} if version == 2 else {
            "names": list(names), "counts": [n for pair in names.values() for n in pair]}
        return {"uuid": "GPU-aaaa", "kernels": 9, "kernel_ns": 90, **listed, "overflow": [1, 10]}

    return {"format": FORMAT, "version": version, "writer": "inject", "pid": 7, "process": "rank0",
            "started_at": NOW, "updated_at": NOW, "status": "sampling", "reason": "", "detail": "", "duty_cycle": 0.1,
            "windows": 1, "sampled_seconds": 1.0, "records": 9, "dropped_records": 0,
            "gpus": {gpu: entry(names) for gpu, names in gpus.items()}, **header}


def readers() -> tuple[StateReader, StateReader]:
    fast, standard = StateReader(), StateReader(use_msgspec=False)
    assert fast.fast and not standard.fast
    return fast, standard


@pytest.mark.parametrize("version", [3, 2])
def test_both_readers_give_names_and_flat_counts_in_file_order_across_polls(tmp_path, version):
    path = tmp_path / "rank0.json"
    fast, standard = readers()
    names = {"b_gemm": [1, 10], "a_gemm": [2, 20], 'q"uote\\d \u00e9': [3, 30]}
    polls = [dict(names), {**names, "a_gemm": [5, 50]}, {**names, "a_gemm": [5, 50], "c_new": [1, 1]},
             {**names, "a_gemm": [5, 50], "c_new": [1, 1]}, {"z_other": [1, 1]}]
    for step, gpu_names in enumerate(polls):
        write_atomic(path, content({"0": gpu_names, "1": {"x_gemm": [step, step]}}, version))
        got = fast.read(path)
        assert got == standard.read(path)
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


def test_a_torn_file_is_torn_for_both_readers_and_a_name_list_that_stopped_growing_is_read_again(tmp_path):
    path = tmp_path / "rank0.json"
    fast, standard = readers()
    write_atomic(path, content({"0": {"a_gemm": [1, 10], "b_gemm": [2, 20]}}))
    fast.read(path)
    path.write_bytes(path.read_bytes()[:-40])
    for reader in (fast, standard):
        with pytest.raises(StateError, match="torn or not JSON") as err:
            reader.read(path)
        assert err.value.reason == "torn"
    write_atomic(path, content({"0": {"a_gemm": [1, 10]}}))  # fewer names than remembered: decoded afresh
    assert fast.read(path)["gpus"]["0"]["names"] == ["a_gemm"]


KNOWN = {"a_gemm": [1, 10], "b_gemm": [2, 20]}
KNOWN_LIST = json.dumps(list(KNOWN), separators=(",", ":"))


@pytest.mark.parametrize(("second", "expected"), [
    # the known list followed by a name that is no string: the error of a file read for the first time
    (lambda text: text.replace(f'"names":{KNOWN_LIST}', f'"names":{KNOWN_LIST[:-1]},5]', 1),
     "names: must be a list of kernel names"),
    # a list that looks like the fast reader's own marker
    (lambda text: text.replace(f'"names":{KNOWN_LIST}', '"names":[0]', 1), "names: must be a list of kernel names"),
    # the known bytes first under a key the format does not define, then in their place
    (lambda text: text.replace('"pid":', f'"extension":{{"names":{KNOWN_LIST}}},"pid":', 1), None),
    # GPUs swapped, one of them grown
    (lambda text: json.dumps(content({"1": {"x_gemm": [1, 1], "y_gemm": [1, 1]}, "0": {**KNOWN, "c": [1, 1]}})), None),
    # a GPU new in front of the known one, which lost a name
    (lambda text: json.dumps(content({"9": KNOWN, "0": {"a_gemm": [1, 10]}})), None),
    (lambda text: text[:text.index(KNOWN_LIST) + 8], "torn or not JSON"),
])
def test_a_file_read_again_reads_as_if_read_for_the_first_time(tmp_path, second, expected):
    """The fast reader skips the names it read last time: whatever the next file holds, it reads what a
    reader that never saw the first file reads, or fails with the same message."""
    path = tmp_path / "rank0.json"
    fast = StateReader()
    write_atomic(path, content({"0": KNOWN, "1": {"x_gemm": [1, 1]}}))
    first = fast.read(path)
    assert fast.read(path) == first  # read twice: the second time with the known lists cut out
    path.write_text(second(path.read_text()))
    outcomes = []
    for reader in (fast, StateReader(), StateReader(use_msgspec=False)):
        try:
            outcomes.append(reader.read(path))
        except StateError as exc:
            outcomes.append((str(exc), exc.reason))
    assert outcomes[0] == outcomes[1]
    if expected is None:
        assert isinstance(outcomes[0], dict)  # the standard reader keeps keys the format does not define
        assert outcomes[0] == {key: outcomes[2][key] for key in outcomes[0]}
    else:  # msgspec and json word a torn file differently
        assert re.search(expected, outcomes[0][0]) and outcomes[0][1] == outcomes[2][1], outcomes


def test_the_fast_reader_keeps_every_key_the_format_documents():
    doc = (REPO / "docs" / "dispatch-state.md").read_text()
    content = doc[doc.index("## Content"):doc.index("## Settings read by both writers")]
    header, gpu = content.split("Each `gpus` entry:")

    def keys(table: str) -> set[str]:  # the first column: `key` or `key`, `other key`
        return {key for cell in re.findall(r"^\| (`.+?`) \|", table, re.M) for key in re.findall(r"`(\w+)`", cell)}

    assert keys(header) == {*HEADER_KEYS, "gpus"}
    assert keys(gpu) == {*GPU_KEYS, "names", "counts"}
