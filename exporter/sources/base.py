"""What every source is: a config model and a class with probe(), poll() and close().

The scheduler calls ``probe`` once (and again after a failure that asks for it), then ``poll``
on the source's interval, each in a worker thread with a deadline. A source never touches the
HTTP server or another source; it returns families and raises when it cannot.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Set
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, model_validator

from exporter.foundation import StrictModel
from exporter.snapshot import Family

__all__ = ["PartialPollError", "PollError", "ReprobeRequired", "Source", "SourceConfig", "StrictModel"]

if TYPE_CHECKING:
    from exporter.config import Config


class SourceConfig(StrictModel):
    enabled: bool = Field(False, description="poll this source")
    interval: float = Field(10.0, gt=0, le=3600, description="seconds between polls")
    timeout: float = Field(5.0, gt=0, le=600, description="seconds a poll may take before it is abandoned")

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> SourceConfig:
        if self.timeout > self.interval:
            raise ValueError(f"timeout ({self.timeout}s) must not exceed interval ({self.interval}s)")
        return self


class PollError(Exception):
    """A poll failed for a reason worth its own label value in source_errors_total."""

    def __init__(self, message: str, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason


class ReprobeRequired(PollError):
    """The source lost its upstream handle (NVML re-init, engine replaced): probe again first."""

    def __init__(self, message: str, reason: str = "reprobe") -> None:
        super().__init__(message, reason)


class PartialPollError(PollError):
    """The upstream failed, yet the source has families worth publishing: the ones that say so.

    A serving source whose runtime is down still knows ``blackwell_serving_up 0``; with several
    endpoints, the healthy ones still answered. Meant for the scheduler to publish ``families``
    while counting the failure (source down with ``reason``); a scheduler that does not know it
    handles it as any PollError (the last good snapshot is served until it goes stale).
    """

    def __init__(self, message: str, families: list[Family], reason: str = "error") -> None:
        super().__init__(message, reason)
        self.families = families


class Source(abc.ABC):
    """One area of telemetry. Subclasses set ``name`` and ``config_model``."""

    name: ClassVar[str]
    config_model: ClassVar[type[SourceConfig]]
    # Sources whose instances this one is built from (see ``build``): rebuilding one rebuilds this.
    builds_on: ClassVar[tuple[str, ...]] = ()
    # The source that fills this one's metrics in simulation ("simulated"): --simulate turns this
    # one off. None: the simulation does not model it, and it keeps its setting.
    stand_in: ClassVar[str | None] = None
    # Other source -> what both would fill: enabling both is a config error (a series twice).
    # A conflict that depends on this source's settings is declared by overriding ``conflicts``.
    conflicts_with: ClassVar[Mapping[str, str]] = {}

    def __init__(self, config: SourceConfig) -> None:
        self.config = config

    @classmethod
    def conflicts(cls, config: SourceConfig, enabled: Set[str]) -> list[str]:
        """Why this source, set up as ``config``, cannot run beside the ``enabled`` sources (it
        would emit a series one of them emits); empty when it can. Checked when the config loads."""
        return [f"sources.{cls.name} and sources.{other} fill {what}; enable one of them"
                for other, what in cls.conflicts_with.items() if other in enabled]

    @classmethod
    def build(cls, config: Config, built: Mapping[str, Source]) -> Source:
        """This source for the whole ``config``; ``built`` holds the enabled sources built before it."""
        return cls(getattr(config.sources, cls.name))

    def reconfigure(self, fresh: Source) -> bool:
        """Take ``fresh``'s settings in place (a config reload); False when ``fresh`` must replace this one.

        The default keeps this instance only when nothing changed, so its upstream handles and
        counters live on; a source that can apply a change at run time overrides it.
        """
        return type(fresh) is type(self) and fresh.config == self.config

    def probe(self) -> None:  # noqa: B027 - optional hook, most sources have nothing to probe
        """Find out what the upstream supports. Raise to be retried with backoff."""

    @abc.abstractmethod
    def poll(self) -> list[Family]:
        """Read the upstream once and return complete families for this moment."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release handles; called on shutdown and before a re-probe."""

    def not_ready(self) -> list[str]:
        """Why what this source watches is not all there although its polls succeed (a GPU the host
        should have is down); /readyz lists each. Read from the HTTP thread: return a copy."""
        return []

    def notes(self) -> list[str]:
        """Short lines for the landing page that no metric can carry (names, reasons); called from the HTTP thread."""
        return []
