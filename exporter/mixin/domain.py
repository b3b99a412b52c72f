"""NVLink-domain rules: the GPUs of one NVL72 rack compared across its trays (one exporter each).

On an NVL72 every GPU of the rack is an NVLink peer of the others and a tensor- or expert-parallel
group spans trays, so the per-instance rules (a GPU against the GPUs of its own box) miss a tray
that is slow as a whole, or a GPU whose shortfall only the rack's median shows. These rules join
each GPU to its NVLink domain through ``blackwell_gpu_fabric_info`` (cluster UUID and clique id from
NVML's ``nvmlDeviceGetGpuFabricInfoV``, the same for every GPU of one NVLink domain) and compare trays
and GPUs within it.
Levels: ``domain`` keeps ``job, cluster_uuid, clique_id``; ``domain_instance`` adds the tray's
``instance``; ``domain_instance_gpu`` adds ``gpu``.

Power is GPU board power only (``blackwell_gpu_power_watts``, NVML's power usage of each GPU): the
Grace CPUs, NVSwitch trays, NICs, fans and pumps of the rack are not in it, since no exporter reads them.
"""

from __future__ import annotations

from exporter.mixin import recording as rec
from exporter.mixin.config import MixinConfig
from exporter.mixin.model import Alert, Group, Recording
from exporter.mixin.promql import duration, number

RACK = "blackwell-rack-domain"  # the rack dashboard's uid
DOMAIN = "job, cluster_uuid, clique_id"
TRAY = "job, instance, cluster_uuid, clique_id"
_NO_DOMAIN = "|00000000-0000-0000-0000-000000000000"  # GPUs outside any NVLink domain report no cluster

MEMBER = "domain_instance_gpu:blackwell_gpu_fabric_info:member"
MEMBER_1H = "domain_instance_gpu:blackwell_gpu_fabric_info:member_max1h"
GPU_UTIL = "domain_instance_gpu:blackwell_gpu_utilization_ratio:avg5m"
UTIL_MEDIAN = "domain:blackwell_gpu_utilization_ratio:median5m"
UTIL_DEVIATION = "domain_instance_gpu:blackwell_gpu_utilization_ratio:domain_deviation5m"
DOMAIN_INSTANCES = "domain:blackwell_gpu_fabric_info:instances"
TRAY_NVLINK_TX = "domain_instance:blackwell_nvlink_throughput_tx_bytes:rate5m"
NVLINK_TX_MEDIAN = "domain:blackwell_nvlink_throughput_tx_bytes:tray_median_rate5m"
TRAY_NVLINK_TX_RATIO = "domain_instance:blackwell_nvlink_throughput_tx_bytes:ratio_to_median_rate5m"
TRAY_NVLINK_ERRORS = "domain_instance:blackwell_nvlink_errors:increase5m"
NVLINK_ERRORS_MEDIAN = "domain:blackwell_nvlink_errors:tray_median_increase5m"
HEALTHY = "domain_instance_gpu:blackwell_gpu_fabric:healthy"
TRAY_UNHEALTHY = "domain_instance:blackwell_gpu_fabric:unhealthy_gpus"
HEALTHY_RATIO = "domain:blackwell_gpu_fabric:healthy_ratio"
TRAY_POWER = "domain_instance:blackwell_gpu_power_watts:sum"
RACK_POWER = "domain:blackwell_gpu_power_watts:sum"
RACK_POWER_LIMIT = "domain:blackwell_gpu_power_limit_watts:sum"
RACK_POWER_BUDGET_RATIO = "domain:blackwell_gpu_power_watts:budget_ratio"

_WHERE_TRAY = "tray {{ $labels.instance }} of NVLink domain {{ $labels.cluster_uuid }}/{{ $labels.clique_id }}"


def _in_domain(expr: str, by: str = "job, instance, gpu") -> str:
    """``expr`` (per ``by``) with the domain's labels added from the fabric membership."""
    return f"{expr}\n* on ({by}) group_left (cluster_uuid, clique_id) {MEMBER}"


def _tray_in_domain(expr: str) -> str:
    return f"{expr}\n* on (job, instance) group_left (cluster_uuid, clique_id) group by ({TRAY}) ({MEMBER})"


def _membership() -> list[Recording]:
    return [
        Recording(record=MEMBER, expr=f"max by (job, instance, gpu, cluster_uuid, clique_id) "
                                      f'(blackwell_gpu_fabric_info{{cluster_uuid!~"{_NO_DOMAIN}"}})'),
        # A GPU or tray that stops reporting stays a member for an hour: it is what the domain misses.
        Recording(record=MEMBER_1H, expr=f"max_over_time({MEMBER}[1h])"),
        Recording(record=DOMAIN_INSTANCES, expr=f"count by ({DOMAIN}) (group by ({TRAY}) ({MEMBER}))"),
    ]


def _utilization() -> list[Recording]:
    return [
        Recording(record=GPU_UTIL, expr=_in_domain(rec.GPU_UTIL)),
        Recording(record=UTIL_MEDIAN, expr=f"quantile by ({DOMAIN}) (0.5, {GPU_UTIL})"),
        Recording(record=UTIL_DEVIATION, expr=f"{GPU_UTIL}\n- on ({DOMAIN}) group_left {UTIL_MEDIAN}"),
    ]


def _nvlink() -> list[Recording]:
    tx = 'sum by (job, instance) (rate(blackwell_nvlink_throughput_bytes_total{direction="tx", kind="data"}[5m]))'
    # max over the counter families per link: on Hopper two NVML paths count the same errors.
    errors = f"sum by (job, instance) (max by (job, instance, gpu, link) ({rec.NVLINK_ERRORS}))"
    return [
        Recording(record=TRAY_NVLINK_TX, expr=_tray_in_domain(tx)),
        Recording(record=NVLINK_TX_MEDIAN, expr=f"quantile by ({DOMAIN}) (0.5, {TRAY_NVLINK_TX})"),
        Recording(record=TRAY_NVLINK_TX_RATIO,
                  expr=f"{TRAY_NVLINK_TX}\n/ on ({DOMAIN}) group_left () ({NVLINK_TX_MEDIAN} > 0)"),
        Recording(record=TRAY_NVLINK_ERRORS, expr=_tray_in_domain(errors)),
        Recording(record=NVLINK_ERRORS_MEDIAN, expr=f"quantile by ({DOMAIN}) (0.5, {TRAY_NVLINK_ERRORS})"),
    ]


def _fabric() -> list[Recording]:
    unhealthy = ('blackwell_gpu_fabric_info{state!="completed"} or blackwell_gpu_fabric_health_mask != 0 '
                 "or max by (job, instance, gpu) (blackwell_gpu_up) == 0")
    return [
        # Healthy: a member of the last hour that reports now, answers NVML, is registered and has a clean mask.
        Recording(record=HEALTHY, expr=f"{MEMBER_1H}\n and on (job, instance, gpu) {MEMBER}\n"
                                       f"unless on (job, instance, gpu) ({unhealthy})"),
        Recording(record=TRAY_UNHEALTHY, expr=f"count by ({TRAY}) ({MEMBER_1H})\n"
                                              f"- (count by ({TRAY}) ({HEALTHY}) or 0 * count by ({TRAY}) ({MEMBER_1H}))"),
        Recording(record=HEALTHY_RATIO, expr=f"(count by ({DOMAIN}) ({HEALTHY}) or 0 * count by ({DOMAIN}) ({MEMBER_1H}))\n"
                                             f"/ count by ({DOMAIN}) ({MEMBER_1H})"),
    ]


def _power(config: MixinConfig) -> list[Recording]:
    """GPU board power per tray and per domain, the enforced limits, and the domain's share of its budget."""
    return [
        Recording(record=TRAY_POWER, expr=f"sum by ({TRAY}) ({_in_domain('blackwell_gpu_power_watts')})"),
        Recording(record=RACK_POWER, expr=f"sum by ({DOMAIN}) ({TRAY_POWER})"),
        Recording(record=RACK_POWER_LIMIT,
                  expr=f"sum by ({DOMAIN}) ({_in_domain('blackwell_gpu_power_limit_watts')})"),
        Recording(record=RACK_POWER_BUDGET_RATIO, expr=f"{RACK_POWER} / {number(config.domain_gpu_power_budget_watts)}"),
    ]


def domain_recording_groups(config: MixinConfig) -> list[Group]:
    """Recording groups of the NVLink domain; they read the per-instance GPU rules, so they run after them."""
    return [Group("blackwell-domain.rules", _membership() + _utilization() + _nvlink() + _fabric() + _power(config))]


def domain_alerts(config: MixinConfig) -> list[Alert]:
    gap, busy = number(config.domain_straggler_utilization_gap), number(config.straggler_min_peer_utilization)
    ratio = number(config.domain_tray_nvlink_bandwidth_ratio_min)
    factor, floor = number(config.domain_tray_nvlink_errors_factor), number(config.domain_tray_nvlink_errors_min)
    behind = dict(severity="warning", summary="A tray's NVLink falls behind the other trays of its NVLink domain.",
                  dashboard=RACK, for_="5m")
    return [
        Alert(name="BlackwellDomainGPUStraggler",
              expr=f"{UTIL_DEVIATION} < -{gap}\n"
              f"and on ({DOMAIN}) {UTIL_MEDIAN} > {busy}\n"
              f"and on ({DOMAIN}) {DOMAIN_INSTANCES} > 1",
              severity="warning", summary="A GPU is far less busy than the median GPU of its NVLink domain.",
              description=f"GPU {{{{ $labels.gpu }}}} in {_WHERE_TRAY} is {{{{ $value | humanizePercentage }}}} "
              "(absolute) from the domain's median utilization; every GPU of a parallel group spanning the rack "
              "waits for it.", dashboard=RACK, for_="10m"),
        Alert(name="BlackwellDomainTrayLinksBehind", expr=f"{TRAY_NVLINK_TX_RATIO} < {ratio}", labels={"signal": "bandwidth"},
              description=f"{_WHERE_TRAY} moves {{{{ $value | humanizePercentage }}}} of the domain's median "
              "NVLink traffic per tray.", **behind),
        Alert(name="BlackwellDomainTrayLinksBehind",
              expr=f"{TRAY_NVLINK_ERRORS}\n> on ({DOMAIN}) group_left clamp_min({factor} * {NVLINK_ERRORS_MEDIAN}, {floor})",
              labels={"signal": "errors"},
              description=f"{_WHERE_TRAY} counted {{{{ $value | humanize }}}} NVLink errors, replays or recoveries "
              f"in 5 minutes, over {factor}x the domain's median tray.", **behind),
        Alert(name="BlackwellDomainFabricDegraded", expr=f"{TRAY_UNHEALTHY} > 0", severity="critical",
              summary="GPUs of an NVLink domain are missing from it or unhealthy in it.",
              description=f"{{{{ $value }}}} GPUs of {_WHERE_TRAY} stopped reporting, fell off the bus or report "
              "fabric trouble (state not completed, health mask set).", dashboard=RACK, for_="2m"),
        _power_near_budget(config),
    ]


def _power_near_budget(config: MixinConfig) -> Alert:
    budget, ratio = config.domain_gpu_power_budget_watts, config.domain_gpu_power_budget_ratio
    return Alert(name="BlackwellDomainPowerNearBudget", expr=f"{RACK_POWER_BUDGET_RATIO} > {number(ratio)}",
                 severity="warning", summary="The GPUs of an NVLink domain (rack) draw close to its GPU power budget.",
                 description="The GPUs of NVLink domain {{ $labels.cluster_uuid }}/{{ $labels.clique_id }} draw "
                 f"{{{{ $value | humanizePercentage }}}} of the rack's {number(budget)} W GPU power budget "
                 f"(warns over {ratio:.0%}): the rack has no power headroom left.",
                 dashboard=RACK, for_=duration(config.domain_gpu_power_budget_for_seconds),
                 dashboard_vars="var-instance=$__all")
