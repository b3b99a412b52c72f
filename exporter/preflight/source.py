"""The preflight checklist as a source: runs every check on its interval (default 300 s) and
exports each result as blackwell_preflight_check{check} and ..._check_status{check,status}.

GPU facts come from NVML unless the daemon hands in another reader (the simulated box when it
runs with --simulate); engine, process, serving and Prometheus facts are read as configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from exporter.preflight.boxes import read_nvml
from exporter.preflight.result import CheckResult, Status
from exporter.preflight.run import BoxReader, gather, run_checks
from exporter.preflight.settings import PreflightConfig
from exporter.snapshot import Family
from exporter.sources.base import Source, SourceConfig

if TYPE_CHECKING:
    from exporter.config import Config


def families(results: list[CheckResult]) -> list[Family]:
    check = Family("blackwell_preflight_check")
    status = Family("blackwell_preflight_check_status")
    for result in results:
        if result.status is not Status.SKIP:
            check.add((result.check,), 0 if result.status is Status.FAIL else 1)
        for s in Status:
            status.add((result.check, s.value), int(result.status is s))
    return [check, status]


class PreflightSource(Source):
    name: ClassVar[str] = "preflight"
    config_model: ClassVar[type[SourceConfig]] = PreflightConfig
    builds_on: ClassVar[tuple[str, ...]] = ("simulated",)

    def __init__(self, config: PreflightConfig, read_box: BoxReader | None = None) -> None:
        super().__init__(config)
        self._read_box = read_box or read_nvml

    @classmethod
    def build(cls, config: Config, built: Mapping[str, Source]) -> Source:
        """Preflight judges the box the exporter serves (the simulated one when simulating) and
        takes endpoints it was not given from the serving and engine sources."""
        from exporter.preflight import effective_settings
        from exporter.preflight.boxes import simulated_reader

        simulation = built.get("simulated")
        reader = simulated_reader(simulation) if simulation is not None else None  # type: ignore[arg-type]
        return cls(effective_settings(config), read_box=reader)

    def poll(self) -> list[Family]:
        cfg: PreflightConfig = self.config  # type: ignore[assignment]
        return families(run_checks(gather(cfg, self._read_box), cfg))
