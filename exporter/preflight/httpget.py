"""The few HTTP GETs preflight makes (health endpoints, Prometheus API), with the stdlib only."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int | None  # None when no HTTP answer came (refused, timeout, DNS)
    body: bytes
    error: str = ""

    def json(self) -> Any:
        return json.loads(self.body)

    def describe(self) -> str:
        return self.error if self.status is None else f"HTTP {self.status}"


def get(url: str, timeout: float) -> Answer:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - URLs come from the config
            return Answer(response.status, response.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read() or b"")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Answer(None, b"", f"no answer from {url}: {reason}")
