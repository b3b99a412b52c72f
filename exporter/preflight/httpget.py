"""The few HTTP GETs preflight makes (health endpoints, Prometheus API), through the serving
sources' bounded GET (one deadline for the whole request, a size cap). Failures are answers
too: a check reports them instead of raising."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from exporter.sources.http_upstream import UpstreamError
from exporter.sources.http_upstream import get as bounded_get

MAX_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Answer:
    status: int | None  # None when no HTTP answer came (refused, timeout, too large)
    body: bytes
    error: str = ""

    def json(self) -> Any:
        return json.loads(self.body)

    def describe(self) -> str:
        return self.error if self.status is None else f"HTTP {self.status}"


def get(url: str, timeout: float) -> Answer:
    try:
        response = bounded_get(url, timeout=timeout, max_bytes=MAX_BYTES, allow_status=True)
    except UpstreamError as exc:
        return Answer(None, b"", f"no answer from {url}: {exc}")
    return Answer(response.status, response.body)
