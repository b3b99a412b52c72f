"""The rack dashboard: one NVLink domain (an NVL72 rack), then its trays, then their GPUs.

Built from :mod:`exporter.mixin.dashboards`'s panels, layout and variables. The instance variable
picks the trays; domain panels show the domains those trays belong to (all of them under All).
"""

from __future__ import annotations

from exporter.mixin import domain as dom
from exporter.mixin.config import MixinConfig
from exporter.mixin.dashboards import INSTANCE, INSTANCE_GPU, Panel, Query, dashboard
from exporter.mixin.promql import number

TRAY = INSTANCE
TRAY_GPU = INSTANCE_GPU
_TRAY_LEGEND = "{{instance}}"


def _of_trays(record: str) -> str:
    """A domain-level series, for the domains the selected trays belong to."""
    return f"({record}\nand on (job, cluster_uuid, clique_id) group by (job, cluster_uuid, clique_id) ({dom.MEMBER_1H}{{{INSTANCE}}}))"
_GPU_LEGEND = "{{instance}} gpu {{gpu}}"


def _domain_panels(config: MixinConfig) -> list[Panel]:
    return [
        Panel("Healthy GPUs in the domain", "Share of the domain's GPUs of the last hour that report, answer NVML and "
              "are registered with a clean fabric health mask.", "percentunit",
              [Query(f"min({_of_trays(dom.HEALTHY_RATIO)})")], "stat", 6, 4, min=0, max=1, thresholds=[(1, "green")]),
        Panel("Trays reporting", "Trays (exporter instances) with GPUs in the domain now.", "none",
              [Query(f"sum({_of_trays(dom.DOMAIN_INSTANCES)})")], "stat", 6, 4),
        Panel("Rack GPU power", "Sum of the domain's GPU power draw.", "watt",
              [Query(f"sum({_of_trays(dom.RACK_POWER)})")], "stat", 6, 4),
        Panel("Rack GPU power of budget", "Domain GPU board power as a share of the rack's GPU power budget "
              f"(mixin.domain_gpu_power_budget_watts, {config.domain_gpu_power_budget_watts:g} W); highest domain "
              "under All.", "percentunit", [Query(f"max({_of_trays(dom.RACK_POWER_BUDGET_RATIO)})")],
              "stat", 6, 4, min=0, max=1,
              thresholds=[(0, "green"), (config.domain_gpu_power_budget_ratio, "red")]),
        Panel("Domain median utilization", "Median 5-minute utilization over the domain's GPUs; the line GPUs are "
              "judged against.", "percentunit",
              [Query(_of_trays(dom.UTIL_MEDIAN), "{{cluster_uuid}} clique {{clique_id}}")], min=0, max=1),
        Panel("Rack GPU power by domain", "Sum of GPU board power per NVLink domain (no Grace, switch trays or pumps) "
              "against the sum of the GPUs' enforced limits and the rack's GPU power budget.", "watt",
              [Query(_of_trays(dom.RACK_POWER), "{{cluster_uuid}} draw"),
               Query(_of_trays(dom.RACK_POWER_LIMIT), "{{cluster_uuid}} limit"),
               Query(f"0 * {_of_trays(dom.RACK_POWER)} + {number(config.domain_gpu_power_budget_watts)}",
                     "{{cluster_uuid}} budget")]),
    ]


def _tray_panels(config: MixinConfig) -> list[Panel]:
    return [
        Panel("Tray NVLink traffic vs the domain", "Each tray's NVLink data tx rate over the domain's median tray.",
              "percentunit", [Query(f"{dom.TRAY_NVLINK_TX_RATIO}{{{TRAY}}}", _TRAY_LEGEND)],
              thresholds=[(config.domain_tray_nvlink_bandwidth_ratio_min, "green")]),
        Panel("Tray NVLink errors (5m)", "NVLink errors, replays and recoveries per tray in 5 minutes (busiest "
              "counter per link, summed over the tray).", "none",
              [Query(f"{dom.TRAY_NVLINK_ERRORS}{{{TRAY}}}", _TRAY_LEGEND)]),
        Panel("Unhealthy GPUs per tray", "GPUs of the tray missing from the domain, off the bus or with fabric "
              "trouble.", "none", [Query(f"{dom.TRAY_UNHEALTHY}{{{TRAY}}}", _TRAY_LEGEND)], thresholds=[(1, "red")]),
        Panel("Tray GPU power", "Sum of each tray's GPU board power; a tray far under the others is idle, capped "
              "or short of GPUs.", "watt", [Query(f"{dom.TRAY_POWER}{{{TRAY}}}", _TRAY_LEGEND)]),
        Panel("Tray share of the domain's GPU power", "Each tray's GPU power over its domain's; 1/18 (5.6%) each on a "
              "full NVL72 running one even workload.", "percentunit",
              [Query(f"{dom.TRAY_POWER}{{{TRAY}}}\n/ on (job, cluster_uuid, clique_id) group_left () {dom.RACK_POWER}",
                     _TRAY_LEGEND)], min=0),
    ]


def _gpu_panels(config: MixinConfig) -> list[Panel]:
    return [
        Panel("GPU deviation from the domain median", "Each GPU's 5-minute utilization minus its domain's median; a "
              "domain straggler sits far below 0.", "percentunit",
              [Query(f"{dom.UTIL_DEVIATION}{{{TRAY_GPU}}}", _GPU_LEGEND)],
              thresholds=[(-config.domain_straggler_utilization_gap, "green")], width=24),
        Panel("Slowest GPUs of the domain", "The ten GPUs furthest under the domain's median utilization.",
              "percentunit", [Query(f"bottomk(10, {dom.UTIL_DEVIATION}{{{TRAY_GPU}}})", _GPU_LEGEND)], "table", 24),
    ]


def rack_dashboard(config: MixinConfig) -> dict:
    return dashboard(dom.RACK, "Blackwell / NVL72 rack (NVLink domain)",
                      "One NVLink domain across its trays: domain health and power, each tray against the domain, "
                      "each GPU against the domain's median.",
                      _domain_panels(config) + _tray_panels(config) + _gpu_panels(config), config, ["rack"])
