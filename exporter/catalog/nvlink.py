"""Per-link NVLink state and errors. Names say which NVML path each counter came from."""

from exporter.catalog.model import counter, gauge, info

_HW = ("nvml", "dcgm", "simulated")
_L = ("gpu", "link")

METRICS = [
    info("blackwell_nvlink_link_info", "Per-link identity: NVLink version and what sits at the far end.",
         ("gpu", "link", "version", "remote_device_type", "remote_pci_bus_id"), sources=_HW),
    gauge("blackwell_nvlink_link_up", "1 when the link is active.", _L, sources=_HW),
    gauge("blackwell_nvlink_link_speed_bytes_per_second", "Link line rate per direction.",
          _L, sources=_HW, unit="bytes"),
    # Legacy per-link call nvmlDeviceGetNvLinkErrorCounter (Hopper and older).
    counter("blackwell_nvlink_crc_flit_errors_total",
            "Legacy per-link counter (nvmlDeviceGetNvLinkErrorCounter CRC_FLIT): data-link flit CRC errors.",
            _L, sources=_HW),
    counter("blackwell_nvlink_crc_data_errors_total",
            "Legacy per-link counter (CRC_DATA). Not what nvidia-smi nvlink -e prints; see README.",
            _L, sources=_HW),
    counter("blackwell_nvlink_replay_errors_total", "Legacy per-link counter (REPLAY).", _L, sources=_HW),
    counter("blackwell_nvlink_recovery_errors_total", "Legacy per-link counter (RECOVERY).", _L, sources=_HW),
    counter("blackwell_nvlink_ecc_data_errors_total", "Legacy per-link counter (ECC_DATA).", _L, sources=_HW),
    # Field values 161-163 NVML_FI_DEV_NVLINK_ERROR_DL_*: what nvidia-smi nvlink -e prints on Hopper.
    counter("blackwell_nvlink_dl_crc_errors_total",
            "Data-link CRC errors (field NVLINK_ERROR_DL_CRC, as nvidia-smi nvlink -e prints on Hopper).",
            _L, sources=_HW),
    counter("blackwell_nvlink_dl_replay_errors_total", "Data-link replays (field NVLINK_ERROR_DL_REPLAY).",
            _L, sources=_HW),
    counter("blackwell_nvlink_dl_recovery_errors_total", "Data-link recoveries (field NVLINK_ERROR_DL_RECOVERY).",
            _L, sources=_HW),
    # Blackwell NVLink5 NVML_FI_DEV_NVLINK_COUNT_* fields.
    counter("blackwell_nvlink5_errors_total",
            "NVLink5 error counters by kind (malformed_packet, buffer_overrun, rcv, rcv_remote, rcv_general, "
            "local_link_integrity, xmit_discards, effective, symbol).",
            ("gpu", "link", "kind"), sources=_HW),
    counter("blackwell_nvlink5_recovery_events_total",
            "NVLink5 link recovery events by result (successful, failed, total).",
            ("gpu", "link", "result"), sources=_HW),
    gauge("blackwell_nvlink5_bit_error_rate", "NVLink5 bit error rate, decoded from NVML's encoding, "
          "kind effective or symbol.", ("gpu", "link", "kind"), sources=_HW),
    counter("blackwell_nvlink_tx_bytes_total", "Bytes transmitted on the link (NVLink5 COUNT_XMIT_BYTES).",
            _L, sources=_HW, unit="bytes"),
    counter("blackwell_nvlink_rx_bytes_total", "Bytes received on the link (NVLink5 COUNT_RCV_BYTES).",
            _L, sources=_HW, unit="bytes"),
    # Fields 138-141: cumulative per-GPU throughput (NVML reports KiB; exported in bytes).
    counter("blackwell_nvlink_throughput_bytes_total",
            "Cumulative NVLink traffic of the GPU over all links, direction tx/rx, kind data (payload) or raw.",
            ("gpu", "direction", "kind"), sources=_HW, unit="bytes"),
    gauge("blackwell_nvlink_link_rx_bytes_per_second", "GPM: receive rate on the link.",
          _L, sources=_HW, unit="bytes"),
    gauge("blackwell_nvlink_link_tx_bytes_per_second", "GPM: transmit rate on the link.",
          _L, sources=_HW, unit="bytes"),
    counter("blackwell_nvlink5_packets_total", "NVLink5 packets by direction (COUNT_XMIT_PACKETS / COUNT_RCV_PACKETS).",
            ("gpu", "link", "direction"), sources=_HW),
    counter("blackwell_nvlink5_fec_history_total",
            "NVLink5 FEC history bins 0-15 (COUNT_FEC_HISTORY_n): codewords by number of corrected symbols.",
            ("gpu", "link", "bin"), sources=_HW),
]
