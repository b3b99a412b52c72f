"""vLLM, SGLang, NVIDIA Dynamo and NIM for LLMs under the same catalog names as Triton and trtllm-serve.

Each endpoint names its ``runtime``; the map for it (:mod:`exporter.sources.runtime_maps`) turns
the runtime's own exposition into ``blackwell_serving_*`` families. Per endpoint, each poll reads
the metrics URL and the runtime's health URL, and its version URL once while the server stays up
(vLLM ``/version``, SGLang ``/get_server_info``, NIM ``/v1/version``; Dynamo has none). A body
that is malformed or over ``max_bytes`` is refused whole with its reason (``up 0``); a version the
maps were not checked against is read all the same and logged once.

Dynamo: point one endpoint at the frontend (``runtime: dynamo-frontend``, latencies, tokens and
requests as the client sees them) and one per worker (``runtime: dynamo-worker``, on its
``DYN_SYSTEM_PORT``: KV cache, batch and preemptions of the engine behind it). A worker's role
(prefill, decode, aggregated) comes from the endpoint's ``role``, else from Dynamo's labels; it is
part of the worker's flavour (``vllm-prefill``); every series carries its endpoint, so prefill and
decode workers stay apart instead of adding up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import ClassVar, Literal

from pydantic import Field

from exporter.promtext import Exposition
from exporter.snapshot import Family
from exporter.sources.base import PollError, SourceConfig
from exporter.sources.http_upstream import Endpoint, json_object
from exporter.sources.runtime_maps import (
    DYNAMO_FRONTEND,
    NIM,
    SGLANG,
    UNDEFINED,
    VLLM,
    RuntimeMap,
    dynamo_worker,
    map_exposition,
    worker_role,
)
from exporter.sources.serving_endpoints import FamilyBuilder, Reading, RetiredTotals, ServingConfig, ServingSource

log = logging.getLogger(__name__)

RuntimeName = Literal["vllm", "sglang", "nim", "dynamo-frontend", "dynamo-worker"]
_MAPS: dict[str, RuntimeMap] = {"vllm": VLLM, "sglang": SGLANG, "nim": NIM, "dynamo-frontend": DYNAMO_FRONTEND}


class RuntimeEndpoint(Endpoint):
    runtime: RuntimeName = Field(description="what serves this URL: vllm, sglang, nim, dynamo-frontend or "
                                             "dynamo-worker (a worker's DYN_SYSTEM_PORT /metrics)")
    model: str | None = Field(None, description="model label for series that carry none (Dynamo's kvstats) "
                                                "or an undefined one; default: the model the endpoint names")
    role: Literal["prefill", "decode", "aggregated"] | None = Field(
        None, description="dynamo-worker only: the worker's disaggregation role; default: from Dynamo's "
                          "worker_type or dynamo_component label, else aggregated")


class RuntimesConfig(ServingConfig):
    endpoints: list[RuntimeEndpoint] = Field(  # type: ignore[assignment]
        default_factory=lambda: [RuntimeEndpoint(url="http://127.0.0.1:8000/metrics", runtime="vllm")],
        description="servers to read; each sets url and runtime, and may set model, role, timeout, interval, "
                    "tls_verify, ca_file, max_bytes")


def runtime_families(endpoint: RuntimeEndpoint, metrics: Exposition | None, health_status: int | None,
                     version: str, retired: RetiredTotals | None = None) -> list[Family]:
    """Catalog families for one endpoint; ``metrics`` is None when its body was refused or not read.
    ``retired`` (kept per endpoint by the source) keeps counters and histograms summed over upstream series
    rising."""
    runtime = "dynamo" if endpoint.runtime.startswith("dynamo") else endpoint.runtime
    out = FamilyBuilder(endpoint.url)
    out.add("blackwell_serving_up", (runtime,), int(metrics is not None))
    out.add("blackwell_serving_live", (runtime,), int(health_status is not None))
    out.add("blackwell_serving_ready", (runtime,), int(health_status == 200))
    flavour = "unknown"
    if metrics is not None:
        mapping = dynamo_worker(metrics) if endpoint.runtime == "dynamo-worker" else _MAPS[endpoint.runtime]
        map_exposition(metrics, mapping, endpoint.model or _only_model(metrics, mapping.model_label), out)
        flavour = mapping.flavour(metrics)
        if endpoint.runtime == "dynamo-worker":
            flavour = f"{flavour}-{endpoint.role or worker_role(metrics)}"
    out.add("blackwell_serving_runtime_info", (runtime, flavour, version or "unknown"), 1)
    return out.families(retired)


def _only_model(metrics: Exposition, label: str) -> str:
    """The model an endpoint serves when its series name exactly one; else ``unknown``."""
    models = {s.labels[label] for s in metrics.samples if s.labels.get(label, "") not in UNDEFINED}
    return models.pop() if len(models) == 1 else "unknown"


class RuntimesSource(ServingSource[RuntimeEndpoint]):
    name: ClassVar[str] = "runtimes"
    config_model: ClassVar[type[SourceConfig]] = RuntimesConfig

    def __init__(self, config: RuntimesConfig, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config, clock)
        self._versions: dict[str, str] = {}
        self._reported: set[tuple[str, str]] = set()

    def close(self) -> None:
        super().close()
        self._versions.clear()

    def unanswered(self, endpoint: RuntimeEndpoint) -> list[Family]:
        return runtime_families(endpoint, None, None, "")

    def read(self, endpoint: RuntimeEndpoint, timeout: float) -> Reading:
        deadline = self._clock() + timeout
        metrics, error = self.read_exposition(endpoint, deadline)
        mapping = _MAPS.get(endpoint.runtime, DYNAMO_FRONTEND)
        health: int | None = None
        try:
            health = self.fetch(endpoint, endpoint.base() + mapping.health_path, deadline, allow_status=True).status
            if mapping.version_path and not self._versions.get(endpoint.url):
                self._versions[endpoint.url] = self._version(endpoint, mapping, deadline)
        except PollError as exc:
            error = error or exc
        if error is not None:
            self._versions.pop(endpoint.url, None)  # it may come back as another build
        if metrics is not None:
            self._report(endpoint, metrics.problems)
        families = runtime_families(endpoint, metrics, health, self._versions.get(endpoint.url, ""),
                                    self.retired_totals(endpoint.url))
        return Reading(families, error)

    def _version(self, endpoint: RuntimeEndpoint, mapping: RuntimeMap, deadline: float) -> str:
        response = self.fetch(endpoint, endpoint.base() + str(mapping.version_path), deadline, allow_status=True)
        data = json_object(response.body) if response.status == 200 else None
        value = data.get(mapping.version_key) if data is not None else None
        version = value if isinstance(value, str) else ""
        if version and not version.startswith(mapping.known_versions):
            self._report(endpoint, [f"{mapping.runtime} {version} is not a version the mapping was checked "
                                    f"against ({', '.join(v + 'x' for v in mapping.known_versions)}); "
                                    "reading it all the same, families it renamed may be absent"])
        return version

    def _report(self, endpoint: RuntimeEndpoint, problems: list[str]) -> None:
        """Log each distinct problem of an endpoint once, not on every poll (at most 1000 kept)."""
        for problem in problems:
            if (endpoint.url, problem) not in self._reported and len(self._reported) < 1000:
                self._reported.add((endpoint.url, problem))
                log.warning("%s: %s", endpoint.url, problem)
