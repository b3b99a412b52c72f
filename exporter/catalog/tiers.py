"""Detail tiers: how much of the catalog a box exports, switched globally and per family group.

node_exporter lets an operator switch collectors on and off; here the unit is the metric family and
the switch has three positions, chosen with ``detail.tier`` (``--detail``) and overridden per family
group with ``detail.groups`` (``--detail-group nvlink=full``):

- ``basic``: what every alert and recording rule reads, and the identity families that name GPUs,
  serving endpoints and the exporter itself.
- ``standard`` (the default): ``basic`` plus what the dashboards read. At most 1,500 series on an
  8-GPU Blackwell box (tests/unit/test_detail_tiers.py counts them per simulated profile).
- ``full``: every counter the sources read, FEC histograms, legacy paths and all.

Below ``full`` two more things are trimmed, each declared in a table here:

- :data:`KEPT_VALUES`: of a few per-link families only some label values (``kind="rcv"`` of the
  nine NVLink5 error kinds); the others stay in ``full``.
- :data:`SUPERSEDED_BY`: where one error is visible through two NVML paths on the same hardware, the
  older path is dropped when the newer one is in the same source's snapshot. On Blackwell the
  NVLink5 counters replace the DL fields and the legacy error counter; on Hopper (no NVLink5
  counters) the DL fields are exported and the legacy error counter, which reads the same hardware
  counters, is dropped; the legacy counter is exported only where neither newer path exists.

A family not named in :data:`TIERS` is ``standard``. The filter runs where snapshots are published
(:meth:`DetailSelection.apply`, called by :class:`exporter.snapshot.SnapshotStore`), so every
source is trimmed the same way and a scrape never pays for it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from exporter.catalog import exporter as _exporter
from exporter.catalog import gpu as _gpu
from exporter.catalog import nvlink as _nvlink
from exporter.catalog import precision as _precision
from exporter.catalog import preflight as _preflight
from exporter.catalog import serving as _serving


class Tier(enum.IntEnum):
    BASIC = 0
    STANDARD = 1
    FULL = 2


TIER_NAMES = tuple(tier.name.lower() for tier in Tier)

# Family group -> the catalog module it is declared in; the group is what detail.groups switches.
GROUPS: dict[str, tuple[str, ...]] = {
    group: tuple(metric.name for metric in module.METRICS)
    for group, module in (("exporter", _exporter), ("gpu", _gpu), ("nvlink", _nvlink), ("serving", _serving),
                          ("precision", _precision), ("preflight", _preflight))
}
GROUP_OF: dict[str, str] = {name: group for group, names in GROUPS.items() for name in names}

_BASIC = (
    # identity and health
    "blackwell_exporter_build_info", "blackwell_exporter_source_up", "blackwell_exporter_source_interval_seconds",
    "blackwell_exporter_source_last_success_timestamp_seconds", "blackwell_exporter_simulation_scenario",
    "blackwell_gpu_info", "blackwell_gpu_up", "blackwell_gpu_fabric_info",
    "blackwell_gpu_nvml_read_errors_total", "blackwell_gpu_nvml_partial_read", "blackwell_serving_up",
    "blackwell_serving_ready", "blackwell_serving_runtime_info", "blackwell_engine_info",
    # what the alerts and recording rules read
    "blackwell_gpu_utilization_ratio", "blackwell_gpu_power_watts", "blackwell_gpu_xid_errors_total",
    "blackwell_gpu_ecc_errors_total", "blackwell_gpu_remapped_rows_failure", "blackwell_gpu_clock_event_seconds_total",
    "blackwell_gpu_dram_bandwidth_utilization_ratio", "blackwell_gpu_hbm_peak_bandwidth_bytes_per_second",
    "blackwell_c2c_rx_bytes_per_second", "blackwell_nvlink5_errors_total", "blackwell_nvlink5_recovery_events_total",
    "blackwell_nvlink_dl_crc_errors_total", "blackwell_nvlink_dl_replay_errors_total",
    "blackwell_nvlink_dl_recovery_errors_total", "blackwell_nvlink_link_up",
    "blackwell_nvlink_crc_flit_errors_total", "blackwell_nvlink_replay_errors_total",
    "blackwell_nvlink_recovery_errors_total",
    # the NVLink-domain rules: a tray's NVLink traffic, each GPU's fabric health
    "blackwell_nvlink_throughput_bytes_total", "blackwell_gpu_fabric_health_mask",
    "blackwell_serving_generation_tokens_total", "blackwell_serving_prompt_tokens_total",
    "blackwell_serving_ttft_seconds", "blackwell_serving_inter_token_latency_seconds",
    "blackwell_serving_kv_cache_blocks", "blackwell_serving_pending_requests",
    "blackwell_serving_request_success_total", "blackwell_serving_request_failure_total",
    "blackwell_gemm_kernel_launches_total", "blackwell_te_promotion_events_total",
)
_FULL = (
    # NVLink5 FEC history: 16 bins per link, 2,304 series on an 8-GPU box
    "blackwell_nvlink5_fec_history_total", "blackwell_nvlink5_packets_total",
    # per-link detail the per-GPU families already sum (throughput, identity, line rate)
    "blackwell_nvlink_link_info", "blackwell_nvlink_link_speed_bytes_per_second",
    "blackwell_nvlink_tx_bytes_total", "blackwell_nvlink_rx_bytes_total",
    "blackwell_nvlink_link_rx_bytes_per_second", "blackwell_nvlink_link_tx_bytes_per_second",
    # a gauge view of what clock_event_seconds_total counts
    "blackwell_gpu_clock_event_active",
    # PCIe errors by cause, 11 per GPU (the node dashboard reads the replay counter, which stays);
    # where a GPU sits in its chassis, constant; GPM warp occupancy, a profiling figure
    "blackwell_gpu_pcie_errors_total", "blackwell_gpu_platform_info", "blackwell_gpu_sm_occupancy_ratio",
)
TIERS: dict[str, Tier] = {**{name: Tier.BASIC for name in _BASIC}, **{name: Tier.FULL for name in _FULL}}

# family -> (label, values kept below full). Of the nine NVLink5 error kinds, rcv counts the
# receive-side errors (remote, general and malformed packets among them), effective the ones FEC
# could not correct and local_link_integrity the link's own integrity faults (a failing cable or
# connector, before the link goes down); symbol errors, which FEC corrects, the alert ignores
# anyway. The other kinds are in full: 144 series each on an 8-GPU box.
KEPT_VALUES: dict[str, tuple[str, frozenset[str]]] = {
    "blackwell_nvlink5_errors_total": ("kind", frozenset({"rcv", "effective", "local_link_integrity"})),
    "blackwell_nvlink5_recovery_events_total": ("result", frozenset({"total"})),
    "blackwell_nvlink5_bit_error_rate": ("kind", frozenset({"effective"})),
    "blackwell_gpu_tensor_active_ratio": ("pipe", frozenset({"any"})),
}

# family -> the family that replaces it below full when both are in one source's snapshot.
# The legacy nvmlDeviceGetNvLinkErrorCounter reads the same hardware counters as the DL fields.
SUPERSEDED_BY: dict[str, str] = {
    "blackwell_nvlink_crc_flit_errors_total": "blackwell_nvlink_dl_crc_errors_total",
    "blackwell_nvlink_crc_data_errors_total": "blackwell_nvlink_dl_crc_errors_total",
    "blackwell_nvlink_ecc_data_errors_total": "blackwell_nvlink_dl_crc_errors_total",
    "blackwell_nvlink_replay_errors_total": "blackwell_nvlink_dl_replay_errors_total",
    "blackwell_nvlink_recovery_errors_total": "blackwell_nvlink_dl_recovery_errors_total",
    "blackwell_nvlink_dl_crc_errors_total": "blackwell_nvlink5_errors_total",
    "blackwell_nvlink_dl_replay_errors_total": "blackwell_nvlink5_errors_total",
    "blackwell_nvlink_dl_recovery_errors_total": "blackwell_nvlink5_recovery_events_total",
}


def tier_of(name: str) -> Tier:
    return TIERS.get(name, Tier.STANDARD)


class DetailConfig(BaseModel):
    """``detail:`` in the config file."""

    model_config = ConfigDict(extra="forbid")

    tier: str = Field("standard", description="basic | standard | full: how much of the catalog to export")
    groups: dict[str, str] = Field(
        {}, description=f"per family group ({', '.join(GROUPS)}) a tier that overrides detail.tier"
    )

    @field_validator("tier")
    @classmethod
    def _known_tier(cls, value: str) -> str:
        return _tier_name(value)

    @field_validator("groups")
    @classmethod
    def _known_groups(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(GROUPS))
        if unknown:
            raise ValueError(f"unknown family group {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
        return {group: _tier_name(tier) for group, tier in value.items()}


def _tier_name(value: str) -> str:
    if value not in TIER_NAMES:
        raise ValueError(f"unknown detail tier {value!r}; choose one of {' | '.join(TIER_NAMES)}")
    return value


def detail_flags(tier: str | None, group_flags: list[str]) -> dict:
    """``--detail full --detail-group nvlink=basic`` as a config layer; the config models validate it
    (a flag without ``=`` reads as an empty tier, which they reject by name)."""
    layer: dict = {}
    if tier:
        layer["tier"] = tier
    for flag in group_flags:
        group, _, group_tier = flag.partition("=")
        layer.setdefault("groups", {})[group.strip()] = group_tier.strip()
    return {"detail": layer} if layer else {}


class DetailSelection:
    """Which families, and which of their label values, one exporter publishes."""

    def __init__(self, config: DetailConfig | None = None) -> None:
        config = config or DetailConfig()
        self._tier = {name: Tier[config.groups.get(group, config.tier).upper()] for name, group in GROUP_OF.items()}

    @property
    def everything(self) -> bool:
        return all(tier is Tier.FULL for tier in self._tier.values())

    def exports(self, name: str) -> bool:
        """Whether family ``name`` is in the selected tier of its group (before value and path trimming)."""
        return tier_of(name) <= self._tier.get(name, Tier.STANDARD)

    def trims(self, name: str) -> bool:
        """Whether values and superseded paths are trimmed for ``name`` (everywhere below full)."""
        return self._tier.get(name, Tier.STANDARD) < Tier.FULL

    def apply(self, rendered: Mapping[str, str]) -> dict[str, str]:
        """One source's rendered families (name -> sample lines), trimmed to the selection."""
        kept: dict[str, str] = {}
        for name, lines in rendered.items():
            if not self.exports(name):
                continue
            if self.trims(name):
                replacement = SUPERSEDED_BY.get(name)
                if replacement is not None and replacement in rendered:
                    continue
                if name in KEPT_VALUES:
                    lines = _keep_values(lines, *KEPT_VALUES[name])
                    if not lines:
                        continue
            kept[name] = lines
        return kept


def _keep_values(lines: str, label: str, values: frozenset[str]) -> str:
    pattern = re.compile(r'[{,]' + re.escape(label) + r'="((?:[^"\\]|\\.)*)"')
    out = []
    for line in lines.splitlines(keepends=True):
        found = pattern.search(line)
        if found is None or found.group(1) in values:
            out.append(line)
    return "".join(out)


def series_count(rendered: Mapping[str, str]) -> int:
    """Series in rendered families: one per sample line (histograms: every bucket, sum and count)."""
    return sum(lines.count("\n") for lines in rendered.values())
