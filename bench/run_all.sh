#!/usr/bin/env bash
# Runs every benchmark whose figures bench/RESULTS.md quotes, writing bench/results/*.{json,txt}.
# Each output starts with the command and the machine's load, since this 2-core VM is shared.
# Usage: bench/run_all.sh [BASE_REVISION [HEAD_REVISION]] [-- STEP...]
#   BASE_REVISION: what the A/B runs compare against (the tree before the perf changes);
#   HEAD_REVISION: the poll-path A/B's other side, a revision whose simulation emits the same
#   series as BASE (later revisions fill more families, which the byte-identical check refuses).
#   STEP...: run only these steps (names below), e.g. -- ab-8 poll
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BASE=6379416
HEAD_REV=34d95a8
if [[ $# -gt 0 && $1 != -- ]]; then BASE=$1; shift; fi
if [[ $# -gt 0 && $1 != -- ]]; then HEAD_REV=$1; shift; fi
[[ ${1:-} == -- ]] && shift
STEPS=" $* "
OUT=bench/results
mkdir -p "$OUT"

run() {  # run NAME COMMAND...: output to $OUT/NAME.txt, headed by the command, date and load
    local name=$1
    shift
    [[ $STEPS == "  " || $STEPS == *" $name "* ]] || return 0
    { echo "\$ $*"; echo "# $(date -u +%FT%TZ) $(uptime | sed 's/.*load/load/')"; "$@"; } 2>&1 | tee "$OUT/$name.txt"
}

run scrape-hgx-b200-text $PY bench/scrape.py --scrapes 500 --base "$BASE" --out "$OUT/scrape-hgx-b200-text.json"
run scrape-hgx-b200-gzip $PY bench/scrape.py --scrapes 500 --gzip --openmetrics --base "$BASE" \
    --out "$OUT/scrape-hgx-b200-gzip.json"
run scrape-hgx-b200-gzip-fresh $PY bench/scrape.py --scrapes 500 --gzip --openmetrics --fresh --base "$BASE" \
    --out "$OUT/scrape-hgx-b200-gzip-fresh.json"
# The cache alone (no other server's work between its scrapes), three times: the tail is the VM's.
run scrape-hgx-b200-alone bash -c "for i in 1 2 3; do $PY bench/scrape.py --alone --gzip --openmetrics --fresh \
    --scrapes 2000 --out $OUT/scrape-hgx-b200-alone-\$i.json; done"
run scrape-72-alone $PY bench/scrape.py --gpus 72 --every-family --alone --gzip --openmetrics --fresh --scrapes 500 \
    --out "$OUT/scrape-72-alone.json"
run scrape-72-text $PY bench/scrape.py --gpus 72 --every-family --scrapes 100 --base "$BASE" \
    --out "$OUT/scrape-72-text.json"
run scrape-72-gzip-fresh $PY bench/scrape.py --gpus 72 --every-family --scrapes 100 --gzip --openmetrics --fresh \
    --base "$BASE" --out "$OUT/scrape-72-gzip-fresh.json"
run ab-8 $PY bench/ab.py --base "$BASE" --head "$HEAD_REV" --gpus 8 --cycles 60
run ab-72 $PY bench/ab.py --base "$BASE" --head "$HEAD_REV" --gpus 72 --cycles 16
run poll $PY bench/poll.py --gpus 1 8 72 --cycles 30 --out "$OUT/poll.json"
run ingest $PY bench/ingest.py --lines 500000 --series 50000 --repeat 3 --out "$OUT/ingest.json"
run proposals $PY bench/proposals.py --lines 200000 --series 50000 --rounds 5
run scheduler_race $PY bench/scheduler_race.py --gpus 8 72 --polls 40
run live $PY bench/live.py --interval 1 --seconds 90 --rate 20 --out "$OUT/live.json"
run scaling $PY bench/scaling.py --gpus 1 8 72 --out-dir "$OUT"
# bench/process.py takes ~4 minutes and loads the machine; run it on its own:
#   $PY bench/process.py --gpus 1 8 72 --intervals 10 1 --fix-poll-race both --window 150 --out $OUT/process.json
