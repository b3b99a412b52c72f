"""Preflight results: the production checklist, refreshed by the daemon on its interval."""

from exporter.catalog.model import gauge

_PRE = ("preflight",)

METRICS = [
    gauge("blackwell_preflight_check",
          "1 when the preflight check passed (or passed with a warning), 0 when it failed; absent when skipped. "
          "The check names are listed in docs/preflight.md.",
          ("check",), sources=_PRE),
    gauge("blackwell_preflight_check_status",
          "1 for the status (pass, warn, fail, skip) the preflight check ended in, 0 for the others.",
          ("check", "status"), sources=_PRE),
]
