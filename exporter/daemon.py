"""The running exporter: its sources, scheduler and HTTP server, and the SIGHUP reload of all of them.

A reload re-reads the file, the environment and the original command-line flags, as ``run``
did. It applies only a configuration that validates, names an enabled source and a web config
that loads; otherwise the old configuration stays in force. Either way the log says which, and
``blackwell_exporter_config_last_reload_successful`` / ``..._success_timestamp_seconds`` say so
to Prometheus (as Prometheus's own ``prometheus_config_last_reload_*`` do).

What a reload changes: sources (a source whose settings did not change keeps running with its
upstream handles and counters; a changed one is rebuilt and polls at once; a disabled one stops
and its series go), the web config, the simulation scenario, the log level. ``listen`` applies
on restart only; the log says so.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from exporter import config as config_mod
from exporter.catalog.tiers import DetailSelection
from exporter.scheduler import Scheduler
from exporter.snapshot import Family, SnapshotStore
from exporter.sources.base import Source
from exporter.sources.registry import SOURCES
from exporter.webconfig import WebConfigError, WebConfigWatcher

log = logging.getLogger("exporter")


class StartupError(Exception):
    """The configuration cannot run (no source enabled, a web config that does not load)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def build_sources(config: config_mod.Config, running: dict[str, Source] | None = None) -> list[Source]:
    """The enabled sources, in registry order; a running source whose settings hold is kept."""
    running = running or {}
    built: dict[str, Source] = {}
    rebuilt: set[str] = set()
    for name in config.enabled_sources():
        cls = SOURCES[name]
        fresh = cls.build(config, built)
        old = running.get(name)
        if old is not None and not rebuilt & set(cls.builds_on) and old.reconfigure(fresh):
            built[name] = old
        else:
            built[name] = fresh
            rebuilt.add(name)
    return list(built.values())


def web_watcher(config: config_mod.Config) -> WebConfigWatcher | None:
    if config.web_config_file is None:
        return None
    try:
        return WebConfigWatcher(config.web_config_file)
    except WebConfigError as exc:
        raise StartupError([f"web config error: {problem}" for problem in exc.problems]) from None


def check_runnable(config: config_mod.Config) -> None:
    if not config.enabled_sources():
        raise StartupError(["config error: no source is enabled; give --simulate PROFILE or enable one under sources:"])


class Daemon:
    """Sources, scheduler and server built from one configuration; ``reload`` swaps in the next."""

    def __init__(self, config: config_mod.Config, config_path: Path | None, flags: dict[str, Any]) -> None:
        check_runnable(config)
        self.config = config
        self.config_path = config_path
        self.flags = flags
        self.web = web_watcher(config)
        self._lock = threading.Lock()
        self.reload_ok = True
        self.reload_success_time = time.time()
        self.sources = build_sources(config)
        self.scheduler = Scheduler(self.sources, SnapshotStore(DetailSelection(config.detail)), self.mode, self.extra_families)

    @property
    def mode(self) -> str:
        return "simulated" if self.simulation is not None else "hardware"

    @property
    def simulation(self) -> Any:
        """The simulated source when simulating (its ``set_scenario`` serves POST /-/scenario)."""
        return next((s for s in self.sources if s.name == "simulated"), None)

    def set_scenario(self, name: str) -> None:
        simulation = self.simulation
        if simulation is None:
            raise ValueError("scenario switching exists only in simulation mode (--simulate)")
        simulation.set_scenario(name)

    def extra_families(self) -> list[Family]:
        """The reload state and, when simulating, the scenario in force: part of the exporter's self-metrics."""
        ok = Family("blackwell_exporter_config_last_reload_successful").add((), int(self.reload_ok))
        at = Family("blackwell_exporter_config_last_reload_success_timestamp_seconds")
        families = [ok, at.add((), round(self.reload_success_time, 3))]
        simulation = self.simulation
        if simulation is not None:
            scenario = Family("blackwell_exporter_simulation_scenario")
            families.append(scenario.add((simulation.profile.name, simulation.scenario), 1))
        return families

    def reload(self) -> bool:
        """Re-read the configuration and apply it, or keep the old one; True when applied."""
        with self._lock:
            try:
                fresh = config_mod.load(self.config_path, flags=self.flags)
                check_runnable(fresh)
                web = web_watcher(fresh)
                sources = build_sources(fresh, {s.name: s for s in self.sources})
            except config_mod.ConfigError as exc:
                return self._reload_failed(exc.problems)
            except StartupError as exc:
                return self._reload_failed(exc.problems)
            except Exception as exc:  # noqa: BLE001 - a source that cannot be built must not end the daemon
                return self._reload_failed([f"{type(exc).__name__}: {exc}"])
            if fresh.listen != self.config.listen:
                log.warning("reload: listen %s -> %s applies on restart; still serving on %s",
                            self.config.listen, fresh.listen, self.config.listen)
            logging.getLogger().setLevel(fresh.log_level.upper())
            self.config, self.web, self.sources = fresh, web, sources
            self.scheduler.replace_sources(sources)
            self.reload_ok, self.reload_success_time = True, time.time()
            self.scheduler.store.publish("exporter", None, self.scheduler.self_snapshot)
            log.info("reload: configuration applied, sources: %s", ", ".join(s.name for s in sources))
            return True

    def _reload_failed(self, problems: list[str]) -> bool:
        self.reload_ok = False
        self.scheduler.store.publish("exporter", None, self.scheduler.self_snapshot)
        log.error("reload: configuration not applied, still running on the previous one: %s", "; ".join(problems))
        return False
