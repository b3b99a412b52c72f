"""Reading an engine's or checkpoint's quantization config (REFERENCE.md section 5)."""
