"""Reading an engine's or checkpoint's quantization config (the shapes are listed in :mod:`exporter.quant.config`)."""
