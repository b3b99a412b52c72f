"""The preflight checklist as a source: runs every check on its interval (default 300 s) and
exports each result as blackwell_preflight_check{check} and ..._check_status{check,status}.

GPU facts come from NVML unless the daemon hands in another reader (the simulated box when it
runs with --simulate); engine, process, serving and Prometheus facts are read as configured.
"""

from __future__ import annotations

from typing import ClassVar

from exporter.preflight.boxes import read_nvml
from exporter.preflight.result import CheckResult, Status
from exporter.preflight.run import BoxReader, gather, run_checks
from exporter.preflight.settings import PreflightConfig
from exporter.snapshot import Family
from exporter.sources.base import Source, SourceConfig


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

    def __init__(self, config: PreflightConfig, read_box: BoxReader | None = None) -> None:
        super().__init__(config)
        self._read_box = read_box or read_nvml

    def poll(self) -> list[Family]:
        cfg: PreflightConfig = self.config  # type: ignore[assignment]
        return families(run_checks(gather(cfg, self._read_box), cfg))
