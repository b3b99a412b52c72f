"""NVML field ids the source reads, and how each maps onto the catalog.

Ids are spelled as numbers (from nvml.h, the same as ``pynvml.NVML_FI_DEV_*``) so this table
does not depend on the installed bindings knowing a field: a driver that does not know one
answers NOT_SUPPORTED for it, and the probe drops it.
"""

from __future__ import annotations

from dataclasses import dataclass

NVLINK_LINK_COUNT = 91


@dataclass(frozen=True)
class DeviceField:
    """An unscoped field: one value per GPU."""

    field_id: int
    metric: str
    labels: tuple[str, ...] = ()  # label values after ``gpu``
    scale: float = 1.0


# Device-wide counters and gauges that NVML answers through field values: these ride in the
# one batched call per GPU per cycle instead of separate calls.
DEVICE_FIELDS: tuple[DeviceField, ...] = (
    # Energy is not read through field 83 (TOTAL_ENERGY_CONSUMPTION): the driver reported 6.6 ms for
    # that field on an H200 against 3.3 ms for nvmlDeviceGetTotalEnergyConsumption.
    DeviceField(82, "blackwell_gpu_memory_temperature_celsius"),  # MEMORY_TEMP
    DeviceField(3, "blackwell_gpu_ecc_errors_total", ("corrected", "volatile")),  # ECC_SBE_VOL_TOTAL
    DeviceField(4, "blackwell_gpu_ecc_errors_total", ("uncorrected", "volatile")),  # ECC_DBE_VOL_TOTAL
    DeviceField(5, "blackwell_gpu_ecc_errors_total", ("corrected", "aggregate")),  # ECC_SBE_AGG_TOTAL
    DeviceField(6, "blackwell_gpu_ecc_errors_total", ("uncorrected", "aggregate")),  # ECC_DBE_AGG_TOTAL
    DeviceField(142, "blackwell_gpu_remapped_rows_total", ("correctable",)),  # REMAPPED_COR
    DeviceField(143, "blackwell_gpu_remapped_rows_total", ("uncorrectable",)),  # REMAPPED_UNC
    DeviceField(144, "blackwell_gpu_remapped_rows_pending"),  # REMAPPED_PENDING
    DeviceField(145, "blackwell_gpu_remapped_rows_failure"),  # REMAPPED_FAILURE
    DeviceField(94, "blackwell_gpu_pcie_replay_total"),  # PCIE_REPLAY_COUNTER
    # Clock-event durations are cumulative nanoseconds.
    DeviceField(74, "blackwell_gpu_clock_event_seconds_total", ("sw_power_cap",), 1e-9),
    DeviceField(76, "blackwell_gpu_clock_event_seconds_total", ("sync_boost",), 1e-9),
    DeviceField(269, "blackwell_gpu_clock_event_seconds_total", ("sw_thermal",), 1e-9),
    DeviceField(270, "blackwell_gpu_clock_event_seconds_total", ("hw_thermal",), 1e-9),
    DeviceField(271, "blackwell_gpu_clock_event_seconds_total", ("hw_power_brake",), 1e-9),
    # PCIe error counters (PCIE_COUNT_*).
    DeviceField(173, "blackwell_gpu_pcie_errors_total", ("correctable",)),
    DeviceField(174, "blackwell_gpu_pcie_errors_total", ("naks_received",)),
    DeviceField(175, "blackwell_gpu_pcie_errors_total", ("receiver",)),
    DeviceField(176, "blackwell_gpu_pcie_errors_total", ("bad_tlp",)),
    DeviceField(177, "blackwell_gpu_pcie_errors_total", ("naks_sent",)),
    DeviceField(178, "blackwell_gpu_pcie_errors_total", ("bad_dllp",)),
    DeviceField(179, "blackwell_gpu_pcie_errors_total", ("non_fatal",)),
    DeviceField(180, "blackwell_gpu_pcie_errors_total", ("fatal",)),
    DeviceField(181, "blackwell_gpu_pcie_errors_total", ("unsupported_request",)),
    DeviceField(182, "blackwell_gpu_pcie_errors_total", ("lcrc",)),
    DeviceField(183, "blackwell_gpu_pcie_errors_total", ("lane",)),
    # Grace C2C (GB200): link count 170 is read at probe; status here.
    DeviceField(171, "blackwell_c2c_link_up"),  # C2C_LINK_GET_STATUS
)


@dataclass(frozen=True)
class LinkField:
    """A field scoped to one NVLink: asked for as (field_id, link)."""

    field_id: int
    metric: str
    labels: tuple[str, ...] = ()  # label values after ``gpu`` and ``link``
    scale: float = 1.0
    ber: bool = False  # value is NVML's encoded bit error rate
    # Exported as one per-GPU series, the sum over links (labels then follow ``gpu`` directly).
    sum_over_links: bool = False


LINK_STATE = 165  # NVLINK_GET_STATE: 0 inactive, 1 active, 2 sleep
# Speed and version are line properties that only change when a link retrains: they are read at
# probe and again for a link whose state changed, not every cycle (~0.33 ms per link each on H200).
LINK_SPEED = 164  # NVLINK_GET_SPEED, MB/s per direction
LINK_VERSION = 166  # NVLINK_GET_VERSION

LINK_FIELDS: tuple[LinkField, ...] = (
    LinkField(LINK_STATE, "blackwell_nvlink_link_up"),
    # Hopper data-link counters 161-163: what nvidia-smi nvlink -e prints there.
    LinkField(161, "blackwell_nvlink_dl_replay_errors_total"),
    LinkField(162, "blackwell_nvlink_dl_recovery_errors_total"),
    LinkField(163, "blackwell_nvlink_dl_crc_errors_total"),
    # Blackwell NVLink5 NVML_FI_DEV_NVLINK_COUNT_* (205 and 216-218 are deprecated: not read).
    LinkField(201, "blackwell_nvlink5_packets_total", ("tx",)),
    LinkField(202, "blackwell_nvlink_tx_bytes_total"),
    LinkField(203, "blackwell_nvlink5_packets_total", ("rx",)),
    LinkField(204, "blackwell_nvlink_rx_bytes_total"),
    LinkField(206, "blackwell_nvlink5_errors_total", ("malformed_packet",)),
    LinkField(207, "blackwell_nvlink5_errors_total", ("buffer_overrun",)),
    LinkField(208, "blackwell_nvlink5_errors_total", ("rcv",)),
    LinkField(209, "blackwell_nvlink5_errors_total", ("rcv_remote",)),
    LinkField(210, "blackwell_nvlink5_errors_total", ("rcv_general",)),
    LinkField(211, "blackwell_nvlink5_errors_total", ("local_link_integrity",)),
    LinkField(212, "blackwell_nvlink5_errors_total", ("xmit_discards",)),
    LinkField(213, "blackwell_nvlink5_recovery_events_total", ("successful",)),
    LinkField(214, "blackwell_nvlink5_recovery_events_total", ("failed",)),
    LinkField(215, "blackwell_nvlink5_recovery_events_total", ("total",)),
    LinkField(219, "blackwell_nvlink5_errors_total", ("effective",)),
    LinkField(220, "blackwell_nvlink5_bit_error_rate", ("effective",), ber=True),
    LinkField(221, "blackwell_nvlink5_errors_total", ("symbol",)),
    LinkField(222, "blackwell_nvlink5_bit_error_rate", ("symbol",), ber=True),
    *(LinkField(235 + n, "blackwell_nvlink5_fec_history_total", (str(n),)) for n in range(16)),
    # Throughput 138-141, cumulative KiB. These are per link: asked with scope = link they count
    # that link only (20 GiB copied GPU0->GPU1 over 18 links moved the link-0 counter by 1/18 of it,
    # bench/results/nvml_hw_report.md). The catalog's per-GPU series is the sum over links.
    LinkField(138, "blackwell_nvlink_throughput_bytes_total", ("tx", "data"), 1024.0, sum_over_links=True),
    LinkField(139, "blackwell_nvlink_throughput_bytes_total", ("rx", "data"), 1024.0, sum_over_links=True),
    LinkField(140, "blackwell_nvlink_throughput_bytes_total", ("tx", "raw"), 1024.0, sum_over_links=True),
    LinkField(141, "blackwell_nvlink_throughput_bytes_total", ("rx", "raw"), 1024.0, sum_over_links=True),
)

# The legacy per-link call nvmlDeviceGetNvLinkErrorCounter(handle, link, counter): counter id -> metric.
LEGACY_COUNTERS: dict[int, str] = {
    0: "blackwell_nvlink_replay_errors_total",  # NVML_NVLINK_ERROR_DL_REPLAY
    1: "blackwell_nvlink_recovery_errors_total",  # DL_RECOVERY
    2: "blackwell_nvlink_crc_flit_errors_total",  # DL_CRC_FLIT
    3: "blackwell_nvlink_crc_data_errors_total",  # DL_CRC_DATA
    4: "blackwell_nvlink_ecc_data_errors_total",  # DL_ECC_DATA
}

# GPM metric ids (nvmlGpmMetricId_t): id -> (metric, labels after gpu, scale).
_MIB = 1024.0 * 1024.0
GPM_DEVICE_METRICS: dict[int, tuple[str, tuple[str, ...], float]] = {
    5: ("blackwell_gpu_tensor_active_ratio", ("any",), 0.01),
    7: ("blackwell_gpu_tensor_active_ratio", ("hmma",), 0.01),
    9: ("blackwell_gpu_tensor_active_ratio", ("imma",), 0.01),
    6: ("blackwell_gpu_tensor_active_ratio", ("dfma",), 0.01),
    8: ("blackwell_gpu_tensor_active_ratio", ("dmma",), 0.01),
    10: ("blackwell_gpu_dram_bandwidth_utilization_ratio", (), 0.01),
    2: ("blackwell_gpu_sm_active_ratio", (), 0.01),
    3: ("blackwell_gpu_sm_occupancy_ratio", (), 0.01),
    100: ("blackwell_c2c_tx_bytes_per_second", ("total",), _MIB),
    101: ("blackwell_c2c_rx_bytes_per_second", ("total",), _MIB),
    102: ("blackwell_c2c_tx_bytes_per_second", ("data",), _MIB),
    103: ("blackwell_c2c_rx_bytes_per_second", ("data",), _MIB),
}
GPM_C2C_IDS = frozenset({100, 101, 102, 103})
# NVLINK_L{n}_RX_PER_SEC = 62 + 2n, TX = 63 + 2n, for n < 18 (MiB/s).
GPM_NVLINK_FIRST = 62
GPM_NVLINK_LINKS = 18


def gpm_link_ids(links: int) -> dict[int, tuple[str, int]]:
    """GPM ids of the per-link NVLink rates for ``links`` links: id -> (metric, link)."""
    ids: dict[int, tuple[str, int]] = {}
    for link in range(min(links, GPM_NVLINK_LINKS)):
        ids[GPM_NVLINK_FIRST + 2 * link] = ("blackwell_nvlink_link_rx_bytes_per_second", link)
        ids[GPM_NVLINK_FIRST + 2 * link + 1] = ("blackwell_nvlink_link_tx_bytes_per_second", link)
    return ids


def decode_ber(raw: int) -> float:
    """NVML's encoded BER: mantissa in bits 8-11, exponent in bits 0-7, value mantissa x 10^-exponent."""
    mantissa = (int(raw) >> 8) & 0xF
    exponent = int(raw) & 0xFF
    return mantissa * 10.0 ** (-exponent)


# NVML_FI_DEV_NVLINK_GET_VERSION answers nvmlNvlinkVersion_t (6 = NVLink 4.0 on Hopper, 7 = 5.0 on
# Blackwell); the catalog's version label is the NVLink generation ("4", "5", "2.2", "3.1").
NVLINK_VERSIONS = {1: "1", 2: "2", 3: "2.2", 4: "3", 5: "3.1", 6: "4", 7: "5", 8: "6"}
NVLINK_REMOTE_TYPES = {0: "gpu", 1: "ibmnpu", 2: "switch", 0xFF: "unknown"}
ARCHITECTURES = {2: "kepler", 3: "maxwell", 4: "pascal", 5: "volta", 6: "turing", 7: "ampere", 8: "ada",
                 9: "hopper", 10: "blackwell"}
FABRIC_STATES = {0: "not_supported", 1: "not_started", 2: "in_progress", 3: "completed"}
