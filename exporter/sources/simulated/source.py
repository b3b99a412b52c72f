"""The simulation as a source: stands in for the nvml and triton sources when --simulate is given."""

from __future__ import annotations

import threading
import time
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from exporter.snapshot import Family
from exporter.sources.base import Source, SourceConfig
from exporter.sources.simulated.board import RackPlace
from exporter.sources.simulated.model import BoxModel
from exporter.sources.simulated.profiles import NVL72_TRAYS, PROFILES
from exporter.sources.simulated.runtime_view import RUNTIMES, runtime_buckets, stand_in
from exporter.sources.simulated.scenarios import DEFAULT_SCENARIO, SCENARIOS, Scenario


class SimulatedConfig(SourceConfig):
    interval: float = Field(2.0, gt=0, le=3600)
    timeout: float = Field(2.0, gt=0, le=600)
    profile: str | None = Field(None, description=f"one of {', '.join(PROFILES)}")
    scenario: str = Field(DEFAULT_SCENARIO, description=f"one of {', '.join(SCENARIOS)}")
    seed: int = Field(0, description="random seed: the same seed and poll times give the same numbers")
    tray: int = Field(0, ge=0, lt=NVL72_TRAYS, description="this tray's index in its NVL72 rack "
                                                            "(profiles of one NVLink domain: nvl72-tray)")
    rack: str = Field("rack-0", min_length=1, description="the rack's name; trays of one rack share its "
                                                           "fabric cluster UUID and clique id")
    runtime: str = Field("triton", description=f"serving runtime to stand in for: {', '.join(RUNTIMES)} "
                                               "(only the families that runtime reports)")

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str | None) -> str | None:
        if value is not None and value not in PROFILES:
            raise ValueError(f"unknown profile {value!r}; choose one of {', '.join(PROFILES)}")
        return value

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, value: str) -> str:
        if value not in RUNTIMES:
            raise ValueError(f"unknown runtime {value!r}; choose one of {', '.join(RUNTIMES)}")
        return value

    @field_validator("scenario")
    @classmethod
    def _known_scenario(cls, value: str) -> str:
        scenario_named(value)
        return value

    @model_validator(mode="after")
    def _complete(self) -> SimulatedConfig:
        if self.enabled and self.profile is None:
            raise ValueError("simulation is enabled but no profile is set")
        if self.profile is not None:
            check_scenario_fits(SCENARIOS[self.scenario], self.profile)
        return self


def scenario_named(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}") from None


def check_scenario_fits(scenario: Scenario, profile: str) -> None:
    if scenario.needs_c2c and not PROFILES[profile].c2c:
        c2c_profiles = ", ".join(p.name for p in PROFILES.values() if p.c2c)
        raise ValueError(f"scenario {scenario.name!r} needs a profile with Grace C2C ({c2c_profiles}), not {profile!r}")
    if scenario.rack and not PROFILES[profile].nvlink_domain:
        rack_profiles = ", ".join(p.name for p in PROFILES.values() if p.nvlink_domain)
        raise ValueError(f"scenario {scenario.name!r} is a rack scenario; it needs an NVLink-domain tray profile "
                         f"({rack_profiles}), not {profile!r}")


def scenario_fits(scenario: Scenario, profile: str) -> bool:
    try:
        check_scenario_fits(scenario, profile)
    except ValueError:
        return False
    return True


class SimulatedSource(Source):
    name: ClassVar[str] = "simulated"
    config_model: ClassVar[type[SourceConfig]] = SimulatedConfig

    def __init__(self, config: SimulatedConfig, clock=time.monotonic) -> None:
        super().__init__(config)
        assert config.profile is not None
        self.profile = PROFILES[config.profile]
        self._clock = clock
        self._lock = threading.Lock()
        self._model = BoxModel(self.profile, SCENARIOS[config.scenario], seed=config.seed, start=clock(),
                               place=RackPlace(config.tray, config.rack), buckets=runtime_buckets(config.runtime))

    @property
    def scenario(self) -> str:
        return self._model.requested.name

    def reconfigure(self, fresh: Source) -> bool:
        """A reload that changes only the scenario switches it, as POST /-/scenario does."""
        if not isinstance(fresh, SimulatedSource):
            return False
        wanted: SimulatedConfig = fresh.config  # type: ignore[assignment]
        if wanted.model_copy(update={"scenario": self.scenario}) != self.config.model_copy(
                update={"scenario": self.scenario}):
            return False
        if wanted.scenario != self.scenario:
            self.set_scenario(wanted.scenario)
        self.config = wanted
        return True

    def set_scenario(self, name: str) -> None:
        """Switch failure mode at run time; ValueError with the choices when it does not apply."""
        scenario = scenario_named(name)
        check_scenario_fits(scenario, self.profile.name)
        with self._lock:
            self._model.set_scenario(scenario, self._clock())

    def poll(self) -> list[Family]:
        with self._lock:
            self._model.advance(self._clock())
            return stand_in(self._model.families(), self.config.runtime)
