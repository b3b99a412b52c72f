#!/bin/sh
# The injection library's GPU proof, as run on the H200 device machine (see bench/results/inject_h200.md).
#   sh bench/inject_device.sh proof|bench|all OUT
# Builds native/ with gcc against the CUPTI and CUDA headers of the pip wheels torch brought
# (as setup.py does), then runs bench/inject_proof.py / bench/inject_bench.py under it.
# BASELINE_SRC=DIR (a folder holding another native/) also builds that library, and the bench
# runs it side by side; WHEELS=DIR holds cupti-python wheels (the one matching the image's Python
# is installed) where the image has none; CPUS=4-7 pins the bench's processes; MODES picks modes.
set -u
stage=$1 OUT=$2
export PYTHONPATH=$PWD
site=$(python3 -c 'import nvidia, os; print(os.pathsep.join(nvidia.__path__))')
inc=$(for d in $(echo "$site" | tr : ' '); do ls -d $d/*/include 2>/dev/null; done | while read d; do
  [ -f $d/cupti.h ] || [ -f $d/cuda.h ] && printf -- '-I%s ' $d; done)
echo "include: $inc"
build() { # SOURCE_DIR LIBRARY
  gcc -std=c11 -O2 -Wall -fPIC -shared -fvisibility=hidden -pthread -I$1 $inc -idirafter $1/shim \
    -DBLACKWELL_VERSION='"0.1.0"' $1/inject.c $1/table.c -ldl -o $2 && echo "built $2 from $1"
}
mkdir -p build
LIB=$PWD/build/libblackwell_inject.so
build native $LIB || exit 1
BASELINE=""
if [ -n "${BASELINE_SRC:-}" ]; then
  BASELINE=$PWD/build/libblackwell_inject_baseline.so
  build "$BASELINE_SRC/native" $BASELINE || exit 1
fi
{
  echo '{'
  echo "\"nvidia_smi\": \"$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)\","
  echo "\"cuda_driver\": \"$(nvidia-smi | grep -o 'CUDA Version: [0-9.]*')\","
  echo "\"nvcc\": \"$(nvcc --version | tail -2 | head -1)\","
  echo "\"packages\": \"$(python3 -m pip list 2>/dev/null | grep -i -E '^(torch|nvidia-cuda-cupti|nvidia-cuda-runtime|cupti-python|cuda-bindings|pyyaml|nvidia-cublas) ' | tr -s ' ' | tr '\n' ';')\""
  echo '}'
} >"$OUT/versions.json"
cat "$OUT/versions.json"
# cupti-python for the side-by-side runs: carried wheels (wheels/) where the image has none
python3 -c 'import cupti' 2>/dev/null || { python3 -m pip install -q --no-deps --no-index --find-links ${WHEELS:-wheels} --target /tmp/cupti-python cupti-python \
  && export PYTHONPATH=$PYTHONPATH:/tmp/cupti-python; python3 -c 'import cupti; print("cupti-python", cupti.__file__)'; }
S=/tmp/inject-states; rm -rf $S; mkdir -p $S
run_injected() { # DIR then command: only the injection variable (and where to write) set
  d=$S/$1; shift; mkdir -p $d
  env CUDA_INJECTION64_PATH=$LIB BLACKWELL_DISPATCH_STATE_DIR=$d BLACKWELL_DISPATCH_PERIOD=${PERIOD:-1} \
    BLACKWELL_DISPATCH_DUTY_CYCLE=${DUTY:-0.5} "$@"
}
if [ "$stage" = proof ] || [ "$stage" = all ]; then
  python3 bench/inject_proof.py kernels >"$OUT/kernels.json"
  nvcc -O2 -o build/lt_mix bench/inject_lt_mix.cu -lcublasLt && \
    run_injected lt ./build/lt_mix 60000 3 1 && python3 bench/inject_proof.py shares $S/lt
  run_injected spawn python3 bench/inject_proof.py spawn $S/spawn
  # torch.profiler first (before any window), then one started between windows; default duty 0.1
  PERIOD=4 DUTY=0.1 BLACKWELL_DISPATCH_PROCESS=first run_injected profiler python3 bench/inject_proof.py profiler $S/profiler 0
  PERIOD=4 DUTY=0.1 BLACKWELL_DISPATCH_PROCESS=later run_injected profiler python3 bench/inject_proof.py profiler $S/profiler 9
  BLACKWELL_DISPATCH_PROCESS=library run_injected compare python3 bench/inject_proof.py mix 6 3 1
  BLACKWELL_DISPATCH_STATE_DIR=$S/compare python3 bench/inject_proof.py mix 6 3 1 python-sampler $S/compare
  python3 bench/inject_proof.py shares $S/compare
fi
if [ "$stage" = profiler ] || [ "$stage" = bench ]; then  # torch.profiler started between windows, duty 0.01
  for delay in 5 7 9; do
    PERIOD=4 DUTY=0.01 BLACKWELL_DISPATCH_PROCESS=later$delay run_injected profiler \
      python3 bench/inject_proof.py profiler $S/profiler $delay >"$OUT/profiler_later$delay.json"
  done
fi
if [ "$stage" = bench ] || [ "$stage" = all ]; then
  python3 bench/inject_bench.py "$OUT" $LIB --rounds ${ROUNDS:-2} --seconds ${SECONDS_PER_BLOCK:-10} \
    ${BASELINE:+--baseline $BASELINE} ${CPUS:+--cpus $CPUS} ${MODES:+--modes "$MODES"}
fi
tar czf "$OUT/states.tar.gz" -C $S .
