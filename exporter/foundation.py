"""What several layers share and nothing else: the strict config base model and the staleness rule.

It imports only pydantic, so the mixin generator, the catalog and the sources can all depend on
it without loading the scheduler (APScheduler) or one another.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# A source's last good snapshot is served until it is this many intervals old; the mixin's
# staleness alert, dashboard panel and runbooks quote the same number.
STALE_INTERVALS = 3


class StrictModel(BaseModel):
    """Config models reject unknown keys, so a typo is an error with its key path."""

    model_config = ConfigDict(extra="forbid", frozen=True)
