"""The GPUs this host has had: UUID -> NVML index, kept in a small JSON file across restarts.

With ``sources.nvml.known_gpus_file`` set, a GPU that fell off the bus stays reported down after
the exporter (or its pod) restarts, under its UUID, instead of vanishing from ``blackwell_gpu_up``
and resolving BlackwellGPULost. A GPU removed on purpose stays "down" until its line is removed
from the file (or the file is deleted). A missing file is an empty list; an unreadable one is
logged and ignored, never fatal; writes go to a temporary file renamed over the old one.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

MAX_BYTES = 1 << 20


def load_known(path: str) -> dict[str, int]:
    """UUID -> last NVML index from ``path``; empty when the file is missing or unreadable."""
    file = Path(path)
    try:
        if file.stat().st_size > MAX_BYTES:
            raise ValueError(f"larger than {MAX_BYTES} bytes")
        entries = json.loads(file.read_text(encoding="utf-8"))["gpus"]
        return {str(entry["uuid"]): int(entry["index"]) for entry in entries if str(entry["uuid"])}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("nvml: known_gpus_file %s is not readable (%s); starting from what NVML lists", path, exc)
        return {}


def save_known(path: str, known: Mapping[str, int]) -> None:
    """Write ``known`` (UUID -> index) to ``path``; a failure is logged, the source carries on."""
    body = json.dumps({"gpus": [{"uuid": uuid, "index": index} for uuid, index in sorted(known.items())]}, indent=1)
    temporary = f"{path}.tmp"
    try:
        Path(temporary).write_text(body + "\n", encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        log.warning("nvml: cannot write known_gpus_file %s: %s", path, exc)
