"""Every source the exporter knows, by config key: one line per source, ``module:Class``.

A source module is imported when its class is first asked for (``SOURCES[name]``, or building
the config model in :mod:`exporter.config`), so naming the sources (``list(SOURCES)``,
``name in SOURCES``) loads none of them, and the registry imports no source module itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from exporter.sources.base import Source

_PATHS = {
    "simulated": "exporter.sources.simulated.source:SimulatedSource",
    "nvml": "exporter.sources.nvml.source:NvmlSource",
    "dcgm": "exporter.sources.dcgm:DcgmSource",
    "preflight": "exporter.preflight.source:PreflightSource",
    "triton": "exporter.sources.triton:TritonSource",
    "trtllm_serve": "exporter.sources.trtllm_serve:TrtllmServeSource",
    "runtimes": "exporter.sources.runtimes:RuntimesSource",
    "counter_mapping": "exporter.sources.counter_mapping:CounterMappingSource",
    "engine": "exporter.sources.engine:EngineSource",
    "dispatch": "exporter.sources.dispatch:DispatchSource",
    "logs": "exporter.sources.logs:LogsSource",
}


class Registry(Mapping[str, type[Source]]):
    """Config key -> source class, imported on first use. ``registry[name] = cls`` registers a
    class defined elsewhere (a test's source) before the config model is built."""

    def __init__(self, paths: Mapping[str, str]) -> None:
        self._paths = dict(paths)
        self._classes: dict[str, type[Source]] = {}

    def __getitem__(self, name: str) -> type[Source]:
        if name not in self._classes:
            module, _, attribute = self._paths[name].partition(":")
            cls = getattr(importlib.import_module(module), attribute)
            if cls.name != name:
                raise AssertionError(f"registry line {name!r} names {cls.__name__}, whose name is {cls.name!r}")
            self._classes[name] = cls
        return self._classes[name]

    def __setitem__(self, name: str, cls: type[Source]) -> None:
        self._paths[name] = f"{cls.__module__}:{cls.__qualname__}"
        self._classes[name] = cls

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


SOURCES = Registry(_PATHS)
