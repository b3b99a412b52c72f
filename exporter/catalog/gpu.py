"""Per-GPU health and activity. Filled by the nvml source (or dcgm), or by the simulation."""

from exporter.catalog import dcgm_compat
from exporter.catalog.model import COMPAT_SOURCE, counter, gauge, info

_HW = ("nvml", "dcgm", "simulated")
_COMPAT = ("nvml", "dcgm", COMPAT_SOURCE)
_G = ("gpu",)

METRICS = [
    info(
        "blackwell_gpu_info",
        "Identity of each GPU; join on gpu to add uuid or name to any series.",
        ("gpu", "uuid", "name", "pci_bus_id", "architecture", "compute_capability",
         "driver_version", "vbios_version", "module_id"),
        sources=_HW,
    ),
    gauge("blackwell_gpu_up", "1 while the GPU answers NVML, 0 after it fell off the bus or needs a reset, and "
          "for every GPU the host should have that does not answer (uuid empty when it never did).",
          ("gpu", "uuid"), sources=_HW),
    gauge("blackwell_gpu_utilization_ratio", "Fraction of the last sample period a kernel was running (0-1).",
          _G, sources=_HW, unit="ratio"),
    gauge("blackwell_gpu_memory_utilization_ratio",
          "Fraction of the last sample period device memory was being read or written (0-1).",
          _G, sources=_HW, unit="ratio"),
    gauge("blackwell_gpu_memory_used_bytes",
          "Framebuffer memory allocated, without the driver's reserve (nvidia-smi's FB Memory Usage Used; "
          "NVML v2 memory info, DCGM field 252).", _G, sources=_HW, unit="bytes"),
    gauge("blackwell_gpu_memory_reserved_bytes",
          "Framebuffer memory the driver reserves for itself (nvidia-smi's FB Memory Usage Reserved; NVML v2 "
          "memory info, DCGM field 253). Used + reserved + free = total.", _G, sources=_HW, unit="bytes"),
    gauge("blackwell_gpu_memory_total_bytes", "Framebuffer memory installed.", _G, sources=_HW, unit="bytes"),
    gauge("blackwell_gpu_power_watts", "Power draw.", _G, sources=_HW, unit="watts"),
    gauge("blackwell_gpu_power_limit_watts", "Enforced power limit.", _G, sources=_HW, unit="watts"),
    counter("blackwell_gpu_energy_joules_total", "Energy consumed since the driver loaded.",
            _G, sources=_HW, unit="joules"),
    gauge("blackwell_gpu_temperature_celsius", "GPU core temperature.", _G, sources=_HW, unit="celsius"),
    gauge("blackwell_gpu_memory_temperature_celsius", "HBM temperature.", _G, sources=_HW, unit="celsius"),
    gauge("blackwell_gpu_sm_clock_hertz", "Current SM clock.", _G, sources=_HW, unit="hertz"),
    gauge("blackwell_gpu_memory_clock_hertz", "Current memory clock.", _G, sources=_HW, unit="hertz"),
    gauge("blackwell_gpu_performance_state", "Performance state, 0 (P0, maximum) to 15.", _G, sources=_HW),
    gauge("blackwell_gpu_pcie_link_generation", "Current PCIe link generation.", _G, sources=_HW),
    gauge("blackwell_gpu_pcie_link_width", "Current PCIe link width (lanes).", _G, sources=_HW),
    counter("blackwell_gpu_clock_event_seconds_total",
            "Time the clocks were held down, by reason (sw_power_cap, hw_slowdown, sw_thermal, hw_thermal, "
            "hw_power_brake, sync_boost, display_clock).",
            ("gpu", "reason"), sources=_HW, unit="seconds"),
    gauge("blackwell_gpu_clock_event_active",
          "1 while the clocks are held down for this reason (from the current clock-event bitmask).",
          ("gpu", "reason"), sources=_HW),
    counter("blackwell_gpu_ecc_errors_total",
            "ECC errors by error_type (corrected, uncorrected) and counter (volatile since boot, aggregate "
            "over the GPU's life).",
            ("gpu", "error_type", "counter"), sources=_HW),
    counter("blackwell_gpu_remapped_rows_total", "HBM rows remapped, by cause (correctable, uncorrectable).",
            ("gpu", "cause"), sources=_HW),
    gauge("blackwell_gpu_remapped_rows_pending", "1 when a row remap waits for a GPU reset.", _G, sources=_HW),
    gauge("blackwell_gpu_remapped_rows_failure", "1 when a row remap failed: the GPU needs service.",
          _G, sources=_HW),
    counter("blackwell_gpu_pcie_replay_total", "PCIe replays.", _G, sources=_HW),
    counter("blackwell_gpu_xid_errors_total",
            "XID events by code, counted from the NVML event stream (every event, not the last value).",
            ("gpu", "xid"), sources=_HW),
    gauge("blackwell_gpu_tensor_active_ratio",
          "GPM: fraction of time a tensor pipe was active, by pipe (any, hmma, imma, dfma, dmma).",
          ("gpu", "pipe"), sources=_HW, unit="ratio"),
    gauge("blackwell_gpu_dram_bandwidth_utilization_ratio",
          "GPM: fraction of peak HBM bandwidth in use (reads and writes).", _G, sources=_HW, unit="ratio"),
    gauge("blackwell_gpu_sm_active_ratio", "GPM: fraction of time SMs were busy.", _G, sources=_HW, unit="ratio"),
    gauge("blackwell_gpu_sm_occupancy_ratio", "GPM: achieved warp occupancy.", _G, sources=_HW, unit="ratio"),
    gauge("blackwell_gpu_hbm_peak_bandwidth_bytes_per_second",
          "Peak HBM bandwidth from NVML (max memory clock x bus width x 2 / 8); multiply by "
          "blackwell_gpu_dram_bandwidth_utilization_ratio for bytes/s moved.",
          _G, sources=_HW, unit="bytes"),
    gauge("blackwell_c2c_enabled", "1 when the GPU is joined to a Grace CPU over NVLink-C2C.",
          _G, sources=_HW),
    gauge("blackwell_c2c_link_up", "NVLink-C2C link status (1 up).", _G, sources=_HW),
    gauge("blackwell_c2c_rx_bytes_per_second",
          "GPM: bytes/s the GPU received over NVLink-C2C, kind total or data (payload only).",
          ("gpu", "kind"), sources=_HW, unit="bytes"),
    gauge("blackwell_c2c_tx_bytes_per_second",
          "GPM: bytes/s the GPU sent over NVLink-C2C, kind total or data (payload only).",
          ("gpu", "kind"), sources=_HW, unit="bytes"),
    gauge("blackwell_gpu_nvml_stalled",
          "1 while an NVML call on this GPU is past the source's gpu_deadline; its other series are left out "
          "until the call returns.", ("gpu", "uuid"), sources=_HW),
    counter("blackwell_gpu_nvml_read_errors_total",
            "NVML calls on this GPU that failed without the GPU being lost (Timeout, NoData, a bindings error), "
            "by call; that call's series are left out of the poll, the GPU's other series stay.",
            ("gpu", "uuid", "call"), sources=("nvml", "simulated")),
    gauge("blackwell_gpu_nvml_partial_read",
          "1 when the last poll of this GPU left series out because an NVML call failed (see "
          "blackwell_gpu_nvml_read_errors_total), 0 when every call answered.", ("gpu", "uuid"), sources=("nvml", "simulated")),
    counter("blackwell_gpu_pcie_errors_total",
            "PCIe error counters by kind (NVML_FI_DEV_PCIE_COUNT_*: correctable, naks_received, receiver, "
            "bad_tlp, naks_sent, bad_dllp, non_fatal, fatal, unsupported_request, lcrc, lane).",
            ("gpu", "kind"), sources=_HW),
    info("blackwell_gpu_platform_info",
         "Where the GPU sits (nvmlDeviceGetPlatformInfo; GB200 trays): chassis serial, slot, tray, host, "
         "peer type, module.",
         ("gpu", "chassis_serial_number", "slot_number", "tray_index", "host_id", "peer_type", "module_id"),
         sources=_HW),
    info("blackwell_gpu_fabric_info",
         "NVLink fabric membership (nvmlDeviceGetGpuFabricInfoV): clique, cluster UUID, registration state "
         "and status (an NVML return code, 0 = success).",
         ("gpu", "clique_id", "cluster_uuid", "state", "status"), sources=_HW),
    gauge("blackwell_gpu_fabric_health_mask", "NVLink fabric health bitmask from nvmlDeviceGetGpuFabricInfoV "
          "(0 = healthy; bits per nvml.h NVML_GPU_FABRIC_HEALTH_MASK_*).", _G, sources=_HW),
    # dcgm-exporter's names and labels per generation (nvml or dcgm option dcgm_compat_names), in its units.
    *(gauge(name, f"dcgm-exporter compatible {name} ({help_text}).", labels, sources=_COMPAT)
      for name, help_text, labels in dcgm_compat.help_rows()),
]
