"""blackwell-exporter: GPU, NVLink and serving telemetry for TensorRT-LLM on Blackwell."""

__version__ = "0.1.0"
