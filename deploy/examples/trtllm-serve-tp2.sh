#!/usr/bin/env bash
# trtllm-serve with tensor parallelism 2: the GEMMs run in one MPI worker per rank (or one Ray actor
# per rank with --orchestrator_type ray), not in the process you start. The variable reaches them all
# because they inherit its environment; expect one state file per rank in $BLACKWELL_DISPATCH_STATE_DIR.
#
#   deploy/examples/trtllm-serve-tp2.sh openai/gpt-oss-120b
set -euo pipefail
source "$(dirname "$0")/inject.env.sh"
# Ray on a cluster started earlier with `ray start`: its workers inherit the raylet's environment, not
# this shell's: export the two variables before `ray start` on every node instead.
exec trtllm-serve "${1:?model}" --tp_size 2 --host 0.0.0.0 --port 8000
