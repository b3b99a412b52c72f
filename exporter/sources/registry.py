"""Every source the exporter knows, by config key. Each module owns its config model."""

from __future__ import annotations

from exporter.sources.base import Source
from exporter.sources.counter_mapping import CounterMappingSource
from exporter.sources.dcgm import DcgmSource
from exporter.sources.dispatch import DispatchSource
from exporter.sources.engine import EngineSource
from exporter.sources.logs import LogsSource
from exporter.sources.nvml.source import NvmlSource
from exporter.sources.preflight import PreflightSource
from exporter.sources.simulated.source import SimulatedSource
from exporter.sources.triton import TritonSource
from exporter.sources.trtllm_serve import TrtllmServeSource

SOURCES: dict[str, type[Source]] = {
    cls.name: cls
    for cls in (
        SimulatedSource,
        NvmlSource,
        DcgmSource,
        PreflightSource,
        TritonSource,
        TrtllmServeSource,
        CounterMappingSource,
        EngineSource,
        DispatchSource,
        LogsSource,
    )
}
