"""The catalog is the single list of what the exporter can emit; its rules hold for every entry."""

import pytest

from exporter import catalog
from exporter.catalog.model import COMPAT_SOURCE, MetricType, counter, gauge, info
from exporter.snapshot import Family, Snapshot
from tests.support import catalog_source


def test_every_metric_follows_the_naming_conventions():
    for metric in catalog.CATALOG.values():
        if COMPAT_SOURCE in metric.sources:
            assert metric.name.startswith("DCGM_FI_") and metric.type is MetricType.GAUGE, metric.name
            continue
        assert metric.name.startswith("blackwell_"), metric.name
        if metric.type is MetricType.COUNTER:
            assert metric.name.endswith("_total")
        assert "hostname" not in metric.labels and "instance" not in metric.labels
        assert metric.sources, f"{metric.name} names no source that fills it"


def test_counters_must_end_in_total():
    with pytest.raises(ValueError, match="_total"):
        counter("blackwell_gpu_energy_joules", "x", sources=("nvml",))


def test_unit_must_appear_in_the_name():
    with pytest.raises(ValueError, match="unit"):
        gauge("blackwell_gpu_power", "x", sources=("nvml",), unit="watts")


def test_info_metrics_end_in_info_and_reserved_labels_are_refused():
    with pytest.raises(ValueError, match="_info"):
        info("blackwell_gpu_identity", "x", sources=("nvml",))
    with pytest.raises(ValueError, match="le"):
        gauge("blackwell_x", "x", ("le",), sources=("nvml",))


def test_lookup_of_an_undeclared_metric_names_it():
    with pytest.raises(KeyError, match="blackwell_not_a_metric"):
        catalog.get("blackwell_not_a_metric")


def test_series_names_include_histogram_parts():
    names = catalog.series_names()
    assert "blackwell_serving_ttft_seconds_bucket" in names
    assert "blackwell_serving_ttft_seconds_count" in names


def test_dcgm_exporter_names_are_allowed_only_for_the_compat_option():
    with pytest.raises(ValueError, match="DCGM_FI_"):
        gauge("DCGM_FI_DEV_GPU_UTIL", "x", sources=("nvml",))
    assert gauge("DCGM_FI_DEV_GPU_UTIL", "x", sources=(COMPAT_SOURCE,)).name == "DCGM_FI_DEV_GPU_UTIL"


def test_a_test_only_source_fills_what_it_declares_for_the_block_only():
    def snapshot() -> Snapshot:
        return Snapshot.of("fake_gpu", [Family("blackwell_gpu_memory_used_bytes").add(("0",), 1)])

    with catalog_source("fake_gpu", "blackwell_gpu_memory_used_bytes"):
        assert snapshot().source == "fake_gpu"
        with pytest.raises(ValueError, match="may not fill blackwell_gpu_power_watts"):
            Snapshot.of("fake_gpu", [Family("blackwell_gpu_power_watts").add(("0",), 1)])
    with pytest.raises(ValueError, match="may not fill blackwell_gpu_memory_used_bytes"):
        snapshot()
    assert "fake_gpu" not in catalog.get("blackwell_gpu_memory_used_bytes").sources


def test_a_fake_may_not_pose_as_a_real_source():
    with pytest.raises(ValueError, match="'nvml' is a real source"), catalog_source("nvml", "blackwell_gpu_power_watts"):
        pass
