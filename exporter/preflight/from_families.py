"""Facts from the exporter's own metric families (the catalog's names), e.g. a simulated box.

Only what the catalog exports can be known this way: ECC mode, persistence mode and the CUDA
version are not metrics, so they come back unknown with the reason, and their checks skip.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

from exporter.preflight.facts import ErrorKey, GpuFacts, HostFacts, LinkFacts, ServingFacts
from exporter.snapshot import Family

Sample = tuple[str, dict[str, str], float]

# Per-link error counters of the catalog and the (path, counter) each one is.
_LINK_ERRORS: dict[str, ErrorKey] = {
    "blackwell_nvlink_crc_flit_errors_total": ("legacy", "crc_flit"),
    "blackwell_nvlink_crc_data_errors_total": ("legacy", "crc_data"),
    "blackwell_nvlink_replay_errors_total": ("legacy", "replay"),
    "blackwell_nvlink_recovery_errors_total": ("legacy", "recovery"),
    "blackwell_nvlink_ecc_data_errors_total": ("legacy", "ecc_data"),
    "blackwell_nvlink_dl_crc_errors_total": ("dl", "crc"),
    "blackwell_nvlink_dl_replay_errors_total": ("dl", "replay"),
    "blackwell_nvlink_dl_recovery_errors_total": ("dl", "recovery"),
}


def samples(families: Iterable[Family]) -> Iterator[Sample]:
    for family in families:
        names = family.metric.labels
        for values, value in family.samples:
            if isinstance(value, (int, float)):
                yield family.metric.name, dict(zip(names, values, strict=True)), float(value)


def host_facts(all_samples: Iterable[Sample], origin: str) -> HostFacts:
    by_name: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for name, labels, value in all_samples:
        by_name[name].append((labels, value))
    not_exported = f"{origin} does not export it"

    up = {int(lb["gpu"]): value == 1 for lb, value in by_name["blackwell_gpu_up"]}
    info = {int(lb["gpu"]): lb for lb, _ in by_name["blackwell_gpu_info"]}
    pending = {int(lb["gpu"]): bool(v) for lb, v in by_name["blackwell_gpu_remapped_rows_pending"]}
    failure = {int(lb["gpu"]): bool(v) for lb, v in by_name["blackwell_gpu_remapped_rows_failure"]}
    links: dict[int, dict[int, dict]] = defaultdict(dict)
    for lb, _ in by_name["blackwell_nvlink_link_info"]:
        links[int(lb["gpu"])][int(lb["link"])] = {
            "remote_type": lb["remote_device_type"], "remote_bus_id": lb["remote_pci_bus_id"], "errors": {}}
    for lb, value in by_name["blackwell_nvlink_link_up"]:
        links[int(lb["gpu"])].setdefault(int(lb["link"]), {"errors": {}})["active"] = value == 1
    for metric, key in _LINK_ERRORS.items():
        for lb, value in by_name[metric]:
            links[int(lb["gpu"])].setdefault(int(lb["link"]), {"errors": {}})["errors"][key] = value
    for lb, value in by_name["blackwell_nvlink5_errors_total"]:
        links[int(lb["gpu"])].setdefault(int(lb["link"]), {"errors": {}})["errors"][("nvlink5", lb["kind"])] = value
    for lb, value in by_name["blackwell_nvlink5_recovery_events_total"]:
        if lb["result"] in ("successful", "failed"):
            key = ("nvlink5", f"recovery_{lb['result']}")
            links[int(lb["gpu"])].setdefault(int(lb["link"]), {"errors": {}})["errors"][key] = value

    gpus = []
    for index in sorted(set(up) | set(info)):
        lb = info.get(index, {})
        gpu_links = tuple(
            LinkFacts(link=n, active=d.get("active"), remote_type=d.get("remote_type"),
                      remote_bus_id=d.get("remote_bus_id"), errors=d["errors"])
            for n, d in sorted(links.get(index, {}).items()))
        gpus.append(GpuFacts(
            index=index,
            up=up.get(index, True),
            down_reason="" if up.get(index, True) else "blackwell_gpu_up is 0 (GPU lost)",
            uuid=lb.get("uuid"),
            name=lb.get("name"),
            bus_id=lb.get("pci_bus_id"),
            compute_capability=_capability(lb.get("compute_capability")),
            remap_pending=pending.get(index),
            remap_failure=failure.get(index),
            links=gpu_links,
            unknown={"ecc": not_exported, "persistence": not_exported, "links": "no NVLink metrics"},
        ))
    drivers = sorted({lb["driver_version"] for lb in info.values()})
    return HostFacts(
        origin=origin,
        driver_version=drivers[0] if len(drivers) == 1 else None,
        cuda_version=None,
        gpus=tuple(gpus),
        error=None if gpus else "no blackwell_gpu_* metrics",
        unknown={"cuda_version": not_exported,
                 "driver_version": f"GPUs disagree: {', '.join(drivers)}" if len(drivers) > 1 else not_exported},
    )


def serving_facts(all_samples: Iterable[Sample]) -> list[ServingFacts]:
    ready: dict[tuple[str, str], bool] = {}
    served = 0.0
    for name, labels, value in all_samples:
        if name == "blackwell_serving_ready":
            ready[(labels["runtime"], labels["endpoint"])] = value == 1
        elif name == "blackwell_serving_request_success_total":
            served += value
    return [ServingFacts(runtime=runtime, endpoint=endpoint, ready=ok,
                         detail="blackwell_serving_ready is " + ("1" if ok else "0"),
                         requests_served=served, requests_detail="sum of blackwell_serving_request_success_total")
            for (runtime, endpoint), ok in sorted(ready.items())]


def _capability(text: str | None) -> tuple[int, int] | None:
    if not text or "." not in text:
        return None
    major, _, minor = text.partition(".")
    return (int(major), int(minor)) if major.isdigit() and minor.isdigit() else None
