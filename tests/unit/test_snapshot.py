"""Families are built from catalog declarations only; the store renders both formats once per change."""

import gzip
import math

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.snapshot import Family, HistogramValue, Snapshot, SnapshotStore


def _no_self() -> Snapshot:
    return Snapshot("exporter", {})


def test_a_family_refuses_undeclared_metrics_and_wrong_labels():
    with pytest.raises(KeyError, match="not declared"):
        Family("blackwell_made_up_metric")
    with pytest.raises(ValueError, match="label values"):
        Family("blackwell_gpu_power_watts").add(("0", "extra"), 1.0)
    with pytest.raises(ValueError, match="declared"):
        Family("blackwell_gpu_power_watts").add({"gpu": "0", "uuid": "x"}, 1.0)
    with pytest.raises(TypeError):
        Family("blackwell_serving_ttft_seconds").add(("m", "e"), 1.0)


def test_a_source_may_only_fill_metrics_declared_for_it():
    family = Family("blackwell_gpu_power_watts").add(("0",), 500)
    with pytest.raises(ValueError, match="may not fill"):
        Snapshot.of("triton", [family])


def test_label_values_are_escaped():
    family = Family("blackwell_serving_model_ready").add(('we"ird\\model\nname', "1", "e"), 1)
    store = SnapshotStore()
    store.publish("triton", Snapshot.of("triton", [family]), _no_self)
    [parsed] = [f for f in parse_text(store.current().text.decode()) if f.name == "blackwell_serving_model_ready"]
    assert parsed.samples[0].labels["model"] == 'we"ird\\model\nname'


def test_histograms_keep_their_buckets_and_validate_them():
    value = HistogramValue(((0.1, 3), (1.0, 7), (math.inf, 9)), 4.5, 9)
    store = SnapshotStore()
    store.publish("triton", Snapshot.of("triton", [Family("blackwell_serving_ttft_seconds").add(("m", "e"), value)]),
                  _no_self)
    text = store.current().text.decode()
    assert 'blackwell_serving_ttft_seconds_bucket{model="m",endpoint="e",le="0.1"} 3' in text
    assert 'blackwell_serving_ttft_seconds_bucket{model="m",endpoint="e",le="+Inf"} 9' in text
    assert 'blackwell_serving_ttft_seconds_count{model="m",endpoint="e"} 9' in text
    with pytest.raises(ValueError, match="cumulative"):
        HistogramValue(((0.1, 5), (math.inf, 3)), 1.0, 3)
    with pytest.raises(ValueError, match=r"\+Inf"):
        HistogramValue(((0.1, 5),), 1.0, 5)
    only = HistogramValue.sum_count_only(12.5, 10)
    assert only.buckets == ((math.inf, 10),)


def test_families_filled_by_two_sources_share_one_header():
    store = SnapshotStore()
    triton = Family("blackwell_serving_up").add(("triton", "http://a"), 1)
    serve = Family("blackwell_serving_up").add(("trtllm-serve", "http://b"), 0)
    store.publish("triton", Snapshot.of("triton", [triton]), _no_self)
    store.publish("trtllm_serve", Snapshot.of("trtllm_serve", [serve]), _no_self)
    text = store.current().text.decode()
    assert text.count("# TYPE blackwell_serving_up gauge") == 1
    [parsed] = [f for f in parse_text(text) if f.name == "blackwell_serving_up"]
    assert len(parsed.samples) == 2


def test_publishing_one_source_never_removes_another():
    store = SnapshotStore()
    store.publish("nvml", Snapshot.of("nvml", [Family("blackwell_gpu_power_watts").add(("0",), 700)]), _no_self)
    store.publish("triton", Snapshot.of("triton", [Family("blackwell_serving_up").add(("triton", "u"), 1)]), _no_self)
    store.publish("triton", None, _no_self)
    text = store.current().text.decode()
    assert 'blackwell_gpu_power_watts{gpu="0"} 700' in text
    assert "blackwell_serving_up" not in text


def test_each_publish_swaps_in_a_new_immutable_exposition():
    store = SnapshotStore()
    before = store.current()
    store.publish("nvml", Snapshot.of("nvml", [Family("blackwell_gpu_power_watts").add(("0",), 1)]), _no_self)
    after = store.current()
    assert after.version == before.version + 1
    assert b"blackwell_gpu_power_watts" not in before.text
    assert b"blackwell_gpu_power_watts" in after.text


def test_openmetrics_names_counter_families_without_total_and_ends_with_eof():
    store = SnapshotStore()
    fams = [Family("blackwell_gpu_energy_joules_total").add(("0",), 12.5),
            Family("blackwell_gpu_info").add(("0", "GPU-1", "B200", "0:1", "blackwell", "10.0", "580", "v", "1"), 1)]
    store.publish("nvml", Snapshot.of("nvml", fams), _no_self)
    om = store.current().openmetrics.decode()
    assert "# TYPE blackwell_gpu_energy_joules counter" in om
    assert "# UNIT blackwell_gpu_energy_joules joules" in om
    assert "# TYPE blackwell_gpu info" in om
    assert om.endswith("# EOF\n")
    parsed = {f.name: f for f in parse_openmetrics(om)}
    assert parsed["blackwell_gpu_energy_joules"].samples[0].value == 12.5
    assert parsed["blackwell_gpu"].type == "info"


def test_gzip_body_is_made_once_and_decompresses_to_the_text():
    store = SnapshotStore()
    store.publish("nvml", Snapshot.of("nvml", [Family("blackwell_gpu_power_watts").add(("0",), 1)]), _no_self)
    exposition = store.current()
    assert not exposition.gzip_ready(openmetrics=False), "nobody asked for gzip yet: nothing compressed"
    first = exposition.body(openmetrics=False, gzipped=True)
    assert exposition.gzip_ready(openmetrics=False)
    assert exposition.body(openmetrics=False, gzipped=True) is first
    assert gzip.decompress(first) == exposition.text


def test_numbers_render_the_way_prometheus_parses_them():
    store = SnapshotStore()
    fams = [Family("blackwell_gpu_power_watts").add(("0",), 1.5).add(("1",), 1e20).add(("2",), float("nan"))]
    store.publish("nvml", Snapshot.of("nvml", fams), _no_self)
    [parsed] = [f for f in parse_text(store.current().text.decode()) if f.name == "blackwell_gpu_power_watts"]
    values = [s.value for s in parsed.samples]
    assert values[:2] == [1.5, 1e20] and math.isnan(values[2])


def test_a_format_scraped_gzipped_is_compressed_when_published_not_by_the_next_scrape():
    store = SnapshotStore()
    publish = lambda value: store.publish(  # noqa: E731
        "nvml", Snapshot.of("nvml", [Family("blackwell_gpu_power_watts").add(("0",), value)]), _no_self)
    publish(1)
    store.current().body(openmetrics=False, gzipped=True)  # a scraper asks for gzip once
    publish(2)
    fresh = store.current()
    assert fresh.gzip_ready(openmetrics=False), "compressed by publish, before any scrape of this version"
    assert not fresh.gzip_ready(openmetrics=True), "only the format that was asked for"
    assert gzip.decompress(fresh.body(openmetrics=False, gzipped=True)) == fresh.text
