"""What every source is: a config model and a class with probe(), poll() and close().

The scheduler calls ``probe`` once (and again after a failure that asks for it), then ``poll``
on the source's interval, each in a worker thread with a deadline. A source never touches the
HTTP server or another source; it returns families and raises when it cannot.
"""

from __future__ import annotations

import abc
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from exporter.snapshot import Family


class StrictModel(BaseModel):
    """Config models reject unknown keys, so a typo is an error with its key path."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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

    def __init__(self, config: SourceConfig) -> None:
        self.config = config

    def probe(self) -> None:  # noqa: B027 - optional hook, most sources have nothing to probe
        """Find out what the upstream supports. Raise to be retried with backoff."""

    @abc.abstractmethod
    def poll(self) -> list[Family]:
        """Read the upstream once and return complete families for this moment."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release handles; called on shutdown and before a re-probe."""

    def notes(self) -> list[str]:
        """Short lines for the landing page that no metric can carry (names, reasons); called from the HTTP thread."""
        return []
