"""Where the GPU facts come from: a live NVML, or a simulated box."""

from __future__ import annotations

import itertools
import logging

from exporter.preflight import from_families, from_nvml
from exporter.preflight.facts import HostFacts, ServingFacts
from exporter.preflight.run import BoxReader
from exporter.sources.nvml.backend import Backend, NvmlError, PynvmlBackend
from exporter.sources.simulated.source import SimulatedConfig, SimulatedSource

log = logging.getLogger(__name__)

# A simulated box read by the preflight command has served this long (simulated seconds), so its
# counters mean something; the daemon's simulation runs on the wall clock instead.
SIMULATED_UPTIME_SECONDS = 600.0


def read_nvml() -> tuple[HostFacts, list[ServingFacts]]:
    """Initialise NVML, read every GPU, shut it down again. Failures become HostFacts.error."""
    try:
        backend = PynvmlBackend()
        extra = from_nvml.PynvmlExtraCalls()
    except ImportError as exc:
        return HostFacts(origin="NVML", error=f"nvidia-ml-py is not installed: {exc}"), []
    return read_backend(backend, extra, "NVML"), []


def read_backend(backend: Backend, extra: from_nvml.ExtraCalls, origin: str) -> HostFacts:
    try:
        backend.init()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, NoPermission...
        return HostFacts(origin=origin, error=str(exc) if isinstance(exc, NvmlError) else f"nvmlInit: {exc}")
    try:
        return from_nvml.host_facts(backend, extra, origin=origin)
    finally:
        try:
            backend.shutdown()
        except NvmlError as exc:
            log.debug("nvmlShutdown: %s", exc)


def simulated_reader(source: SimulatedSource) -> BoxReader:
    """Read the simulated box the exporter is serving (polls it: its model advances to now)."""
    origin = f"simulation {source.profile.name}, scenario {source.scenario}"

    def read() -> tuple[HostFacts, list[ServingFacts]]:
        samples = list(from_families.samples(source.poll()))
        return from_families.host_facts(samples, origin), from_families.serving_facts(samples)

    return read


def fresh_simulation(config: SimulatedConfig) -> BoxReader:
    """A simulated box of its own for the preflight command, already serving for a while."""
    ticks = itertools.count()
    source = SimulatedSource(config, clock=lambda: SIMULATED_UPTIME_SECONDS * min(next(ticks), 1))
    return simulated_reader(source)
