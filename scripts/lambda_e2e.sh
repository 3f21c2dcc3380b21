#!/usr/bin/env bash
# The Lambda binaries themselves, end to end: builds api, planner, worker, finalizer and events
# (debug, host), runs each under the Lambda Runtime API emulator (scripts/lambda_emulator.py)
# against its own moto server, and drives a copy job from creation to Complete through them
# alone (scripts/lambda_e2e.py plays the Lambda service: API Gateway events, the schedule, SQS
# event source mappings). Ends with `lambda-e2e: N passed, M failed`; exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/local-stack.sh
# Its own moto and logs, so it neither sees nor clobbers a stack the caller already runs.
LOCAL_DIR="$BATCHOPS_ROOT/.local/lambda-e2e"
rm -rf "$LOCAL_DIR"
mkdir -p "$LOCAL_DIR/bin"
# A set-up step that fails still ends the run with the closing line test.sh counts.
setup_failed() { echo "lambda-e2e: $1 failed" >&2; echo "lambda-e2e: 0 passed, 1 failed"; exit 1; }

log "lambda-e2e: building the function binaries and the CLI (debug)"
# Copies of the built executables: a shared target dir may be rebuilt under us while they run.
cargo build --quiet -p batchops-api -p batchops-planner -p batchops-worker -p batchops-finalizer \
  -p batchops-events -p batchops-cli --message-format=json-render-diagnostics >"$LOCAL_DIR/build.json" \
  || setup_failed "cargo build"
python3 - "$LOCAL_DIR/build.json" "$LOCAL_DIR/bin" <<'PY' || setup_failed "finding the built executables"
import json, shutil, sys
wanted = {"api", "planner", "worker", "finalizer", "events", "batchops"}
found = set()
for line in open(sys.argv[1], encoding="utf-8"):
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        continue
    if message.get("reason") == "compiler-artifact" and message.get("executable") \
            and message["target"]["name"] in wanted:
        shutil.copy2(message["executable"], f"{sys.argv[2]}/{message['target']['name']}")
        found.add(message["target"]["name"])
missing = wanted - found
if missing:
    sys.exit(f"lambda-e2e: cargo build reported no executable for {sorted(missing)}")
PY

local_stack_start || setup_failed "starting moto"
export RUST_LOG="${RUST_LOG:-info}"
# Small chunks so the job spans several work batches.
export BATCHOPS_CHUNK_SIZE="${BATCHOPS_CHUNK_SIZE:-20}"
log "lambda-e2e: batchops local init (stands in for the SAM stack's table, queues, bucket)"
"$LOCAL_DIR/bin/batchops" local init >"$LOCAL_DIR/init.log" || setup_failed "batchops local init"

"$VENV/bin/python" scripts/lambda_e2e.py --bin-dir "$LOCAL_DIR/bin" --log-dir "$LOCAL_DIR" "$@"
