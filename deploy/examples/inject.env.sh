# Sourced by the other examples: the CUPTI injection library for every CUDA process started from
# this shell, C++ or Python, and the directory the exporter's dispatch source reads.
# The driver loads the library at cuInit in each process that inherits the variable.
CUDA_INJECTION64_PATH="$(blackwell-exporter inject-path)" || { echo "blackwell-exporter inject-path failed" >&2; exit 1; }
export CUDA_INJECTION64_PATH
export BLACKWELL_DISPATCH_STATE_DIR="${BLACKWELL_DISPATCH_STATE_DIR:-/tmp/blackwell-exporter/dispatch}"
mkdir -p "$BLACKWELL_DISPATCH_STATE_DIR"
