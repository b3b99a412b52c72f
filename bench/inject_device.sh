#!/bin/sh
# The injection library's GPU proof, as run on the H200 device machine (see bench/results/inject_h200.md).
#   sh bench/inject_device.sh probe|proof|cupti12|bench|timeline|all OUT
# Builds native/ with gcc against the CUPTI and CUDA headers of the pip wheels torch brought
# (as setup.py does), then runs bench/inject_proof.py / bench/inject_bench.py under it.
# probe: bench/cupti_detach_probe.cu (CUPTI's cost per launch in each state, CUDA graphs across
# cuptiFinalize); cupti12: the C++ proof under the libcupti.so.12 in CUPTI12 (CUDA 12.8's);
# WHEELS=DIR holds cupti-python wheels (the one matching the image's Python is installed) where the
# image has none; CPUS=4-7 pins the bench's processes; MODES, ROUNDS, SECONDS_PER_BLOCK, DELAY and
# BENCH_PERIOD set the bench; TIMELINE_SECONDS and TIMELINE_DUTY the timeline.
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
if [ "$stage" = probe ] || [ "$stage" = all ]; then
  cupti_inc=$(echo $inc | tr ' ' '\n' | sed 's/^-I//' | while read d; do [ -f $d/cupti.h ] && echo $d; done | head -1)
  cupti_lib=$(dirname $(ls $(dirname $cupti_inc)/lib/libcupti.so* | head -1))
  nvcc -O2 -arch=sm_90 -o build/probe bench/cupti_detach_probe.cu -I$cupti_inc -L$cupti_lib -l:libcupti.so.13 -lcuda \
    -Xlinker -rpath=$cupti_lib || exit 1
  [ -n "${PROBE_SKIP_COST:-}" ] || ./build/probe cost 12 20000 | tee "$OUT/probe_cost.json"
  for domains in ${PROBE_DOMAINS_LIST:-runtime driver sites}; do for taker in self app; do for check in ${PROBE_CHECKS:-0 1}; do
    for case in captured-before-any-window captured-in-window-stay-attached captured-in-window-then-detach \
        captured-in-window-detach-reattach captured-detached-after-a-window detached-during-capture \
        replays-in-flight-at-detach; do
      said=$(PROBE_DOMAINS=$domains PROBE_TAKER=$taker PROBE_CHECK=$check PROBE_DISABLE=${PROBE_DISABLE:-close} \
        timeout 60 ./build/probe graph $case 2>&1); rc=$?
      line=$(echo "$said" | grep '^{' | tail -1)
      [ -n "$line" ] || line="{\"case\": \"$case\", \"domains\": \"$domains\", \"taker\": \"$taker\", \"check\": $check, \"ok\": false}"
      echo "$line" | sed "s/}\$/, \"rc\": $rc}/"
    done
  done; done; done | tee "$OUT/probe_graphs.jsonl"
fi
if [ "$stage" = cupti12 ] || [ "$stage" = all ]; then
  nvcc -O2 -o build/lt_mix bench/inject_lt_mix.cu -lcublasLt && \
    BLACKWELL_DISPATCH_CUPTI=$CUPTI12 run_injected lt12 ./build/lt_mix 60000 3 1 && \
    python3 bench/inject_proof.py shares $S/lt12 | tee "$OUT/cupti12_shares.json"
fi
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
  python3 bench/inject_bench.py "$OUT" $LIB --rounds ${ROUNDS:-2} --seconds ${SECONDS_PER_BLOCK:-16} \
    --delay ${DELAY:-8} --period ${BENCH_PERIOD:-4} ${CPUS:+--cpus $CPUS} ${MODES:+--modes "$MODES"}
fi
if [ "$stage" = timeline ]; then
  python3 bench/inject_timeline.py "$OUT" $LIB --seconds ${TIMELINE_SECONDS:-60} --period ${BENCH_PERIOD:-2} \
    ${TIMELINE_DUTY:+--duty $TIMELINE_DUTY} ${MODES:+--modes "$MODES"}
fi
tar czf "$OUT/states.tar.gz" -C $S .
