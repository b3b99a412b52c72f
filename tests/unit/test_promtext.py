"""The exposition reader: accepts what real runtimes serve, rejects everything else with a line number."""

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.promtext import PromParseError, parse

FIXTURES = Path(__file__).parent.parent / "fixtures"


def test_reads_a_real_triton_body():
    body = (FIXTURES / "triton" / "python_backend_metrics.txt").read_bytes()
    exp = parse(body)
    assert exp.type_of("nv_inference_request_success") == "counter"
    failures = {s.labels["reason"]: s.value for s in exp.named("nv_inference_request_failure")}
    assert failures == {"BACKEND": 1, "OTHER": 0, "CANCELED": 0, "REJECTED": 0}
    [hist] = exp.histograms("nv_llm_output_token_len")  # Triton writes _count and _sum before buckets
    assert hist.labels == {"model": "llm_stream", "response_metric_type": "total_output_tokens", "version": "1"}
    assert [b for b, _ in hist.buckets] == [10, 50, 100, 500, 1000, math.inf]
    assert hist.buckets[-1][1] == hist.count
    assert not exp.problems


def test_label_values_keep_escapes_spaces_and_braces():
    exp = parse('m{a="x \\"y\\" }z",b="line\\nbreak",c="back\\\\slash",} 1.5e3 1700000000000\n')
    [sample] = exp.samples
    assert sample.labels == {"a": 'x "y" }z', "b": "line\nbreak", "c": "back\\slash"}
    assert sample.value == 1500.0


def test_special_values_and_openmetrics_extras():
    body = ("# TYPE c counter\n# UNIT c seconds\nc_total 3 # {trace_id=\"a\"} 1 123\n"
            "c_created 1.7e9\ng +Inf\nh -Inf\nn NaN\n# EOF\n")
    exp = parse(body)
    values = {s.name: s.value for s in exp.samples}
    assert values["c_total"] == 3 and values["g"] == math.inf and values["h"] == -math.inf
    assert math.isnan(values["n"])
    assert exp.type_of("c_total") == "counter"


@pytest.mark.parametrize("body, where", [
    ('m{a="1"', "line 1: label list not closed"),
    ('m{a="1} 2', "line 1: label value not closed"),
    ("m{a=1} 2", "must be quoted"),
    ("m 1_000", "is not a number"),
    ("m 0x10", "is not a number"),
    ("m", "no value"),
    ("m 1 2 3", "too many fields"),
    ("m{a=\"1\"}2", "expected a space"),
    ('ok 1\nm{a="1",a="2"} 1', "line 2: label a given twice"),
    ("m 1\nm 2", "line 2: duplicate series"),
    ("1m 2", "must start with a metric name"),
    ('m{a="\\x"} 1', "bad escape"),
    ("# TYPE m sometimes\nm 1", "unknown metric type"),
    ("m 1\n# EOF\nm2 1", "line 3: content after # EOF"),
])
def test_malformed_lines_are_rejected_with_their_line(body, where):
    with pytest.raises(PromParseError, match=where):
        parse(body)


def test_a_body_cut_inside_a_line_is_rejected():
    body = (FIXTURES / "triton" / "python_backend_metrics.txt").read_bytes()
    cut = body.index(b'reason="BACKEND"') + 5
    with pytest.raises(PromParseError, match="line 6: label list not closed"):
        parse(body[:cut])


def test_size_and_sample_caps():
    with pytest.raises(PromParseError, match="over the 10-byte cap"):
        parse(b"metric_name 1\n", max_bytes=10)
    with pytest.raises(PromParseError, match="more than 2 samples"):
        parse("a 1\nb 1\nc 1\n", max_samples=2)


def test_invalid_utf8_is_an_error_not_a_crash():
    with pytest.raises(PromParseError, match="not UTF-8 at byte 5"):
        parse(b'm{a="\xff"} 1')


def test_broken_histogram_series_are_skipped_and_named():
    body = "\n".join([
        'h_bucket{m="good",le="1"} 1', 'h_bucket{m="good",le="+Inf"} 2', 'h_sum{m="good"} 3', 'h_count{m="good"} 2',
        'h_bucket{m="noinf",le="1"} 1', 'h_sum{m="noinf"} 1', 'h_count{m="noinf"} 1',
        'h_bucket{m="down",le="1"} 5', 'h_bucket{m="down",le="+Inf"} 2', 'h_sum{m="down"} 1', 'h_count{m="down"} 2',
        'h_bucket{m="badle",le="x"} 1', 'h_bucket{m="badle",le="+Inf"} 1', 'h_sum{m="badle"} 1', 'h_count{m="badle"} 1',
    ])
    exp = parse(body)
    assert [h.labels["m"] for h in exp.histograms("h")] == ["good"]
    assert len(exp.problems) == 3
    assert any("no +Inf bucket" in p for p in exp.problems)
    assert any("not cumulative" in p for p in exp.problems)
    assert any("no numeric le" in p for p in exp.problems)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_bytes_never_raise_anything_but_a_parse_error(data):
    try:
        parse(data)
    except PromParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='m{}="\\, #\n0123456789.eE+-InfNa_', max_size=120))
def test_near_miss_text_never_raises_anything_but_a_parse_error(text):
    try:
        exp = parse(text)
    except PromParseError:
        return
    for sample in exp.samples:
        assert isinstance(sample.value, float)
