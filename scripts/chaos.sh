#!/usr/bin/env bash
# Chaos run: proves a Copy job ends right under injected faults and under SIGKILLs of the local
# runtime. Starts moto and scripts/fault_proxy.py in front of it; only `batchops run` goes
# through the proxy, seeding and verification talk to moto directly.
#
#   scripts/chaos.sh [short|long]
#
#   faults  one `batchops run --until-idle` with every fault kind on: S3 503 SlowDown and 500
#           InternalError, DynamoDB 400 ThrottlingException, SQS 500, responses cut mid-way,
#           and every work-queue message sent twice.
#   kills   the runtime is SIGKILLed at seeded random moments and restarted until the jobs end
#           (at most CHAOS_KILLS kills, CHAOS_MAX_SECONDS per scenario): a Copy job and an
#           S3PutObjectTagging job over the same manifest, run side by side (row kills-tagging).
#
# Each is verified with boto3 against moto: status Complete, counters == report rows == manifest
# lines, every task once in the report, every copy byte-equal to its pinned source version (every
# pinned version carrying the tagging job's tags).
# CHAOS_PROXY_PORT picks the fault proxy's port (default: a free one); scripts/local-stack.sh's
# BATCHOPS_MOTO_PORT and BATCHOPS_VENV pick moto's port and the venv it runs from.
# Prints one table; exits non-zero if any check fails. short: a few hundred objects (test.sh);
# long: thousands, more kills (bench.sh chaos). CHAOS_SEED, CHAOS_OBJECTS, CHAOS_KILLS,
# CHAOS_MAX_SECONDS and the FAULT_* rates (FAULT_CUT or per service FAULT_CUT_S3,
# FAULT_CUT_DYNAMODB, FAULT_CUT_SQS) override the mode's values; CHAOS_SCENARIOS="kills" runs one
# scenario; CHAOS_NO_CUT lists actions never cut (see below).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/local-stack.sh
log() { printf '\033[1m==> [%3ds] %s\033[0m\n' "$SECONDS" "$*" >&2; }

MODE="${1:-short}"
case "$MODE" in
  short) objects=300 kills=4 chunk=50 max_seconds=240 kill_window="1.0 4.0" ;;
  long) objects=3000 kills=12 chunk=100 max_seconds=900 kill_window="1.0 8.0" ;;
  *) echo "usage: scripts/chaos.sh [short|long]" >&2; exit 2 ;;
esac
SEED="${CHAOS_SEED:-42}"
SCENARIOS="${CHAOS_SCENARIOS:-faults kills}"
OBJECTS="${CHAOS_OBJECTS:-$objects}"
MAX_KILLS="${CHAOS_KILLS:-$kills}"
MAX_SECONDS="${CHAOS_MAX_SECONDS:-$max_seconds}"
# Every action may be cut; CHAOS_NO_CUT="Action ..." exempts some (to isolate a failure).
NO_CUT="${CHAOS_NO_CUT-}"
NO_CUT_JSON="$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1].split()))' "$NO_CUT")"
DIR="$LOCAL_DIR/chaos"
rm -rf "$DIR"
mkdir -p "$DIR"

# Fast recovery and small steps (every variable is in functions/aws/src/config.rs).
export BATCHOPS_CHUNK_SIZE="${BATCHOPS_CHUNK_SIZE:-$chunk}"
export BATCHOPS_LOCAL_VISIBILITY_SECONDS="${BATCHOPS_LOCAL_VISIBILITY_SECONDS:-5}"
# A range lease outliving the visibility: a killed holder's own message comes back while its
# lease still lives, meets "Busy" and must come back again once the lease has run out.
export BATCHOPS_LEASE_SECONDS="${BATCHOPS_LEASE_SECONDS:-8}"
# A kill that lands while one of the two kills-scenario jobs is being planned leaves its planning
# lease behind: a short lease (renewed while a planner lives) hands the job on within seconds.
export BATCHOPS_PLAN_LEASE_SECONDS="${BATCHOPS_PLAN_LEASE_SECONDS:-6}"
export BATCHOPS_STATUS_CHECK_SECONDS="${BATCHOPS_STATUS_CHECK_SECONDS:-0.2}"
export BATCHOPS_RETRY_BASE_MS="${BATCHOPS_RETRY_BASE_MS:-10}"
export BATCHOPS_RETRY_CAP_MS="${BATCHOPS_RETRY_CAP_MS:-1000}"
export BATCHOPS_MULTIPART_THRESHOLD_BYTES="${BATCHOPS_MULTIPART_THRESHOLD_BYTES:-8388608}"
export BATCHOPS_MULTIPART_PART_SIZE_BYTES="${BATCHOPS_MULTIPART_PART_SIZE_BYTES:-5242880}"
export BATCHOPS_EVENT_BUS="${BATCHOPS_EVENT_BUS:-none}"
export RUST_LOG="${RUST_LOG:-warn}"

log "building the batchops CLI (debug)"
cargo build --quiet -p batchops-cli
# The target dir may be shared: run a copy of our own.
BATCHOPS="$DIR/batchops"
cp "${CARGO_TARGET_DIR:-$BATCHOPS_ROOT/target}/debug/batchops" "$BATCHOPS"

local_stack_start
MOTO_URL="$AWS_ENDPOINT_URL"
PY="$VENV/bin/python"

PROXY_PID=""
stop_all() {
  if [ -n "$PROXY_PID" ] && kill -0 "$PROXY_PID" 2>/dev/null; then
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
  fi
  local_stack_stop
}
trap stop_all EXIT

python3 scripts/fault_proxy.py --upstream "$MOTO_URL" --seed "$SEED" --port "${CHAOS_PROXY_PORT:-0}" --port-file "$DIR/proxy.port" \
  --counts-file "$DIR/proxy-exit.json" 2>"$DIR/proxy.log" &
PROXY_PID=$!
for _ in $(seq 100); do
  [ -s "$DIR/proxy.port" ] && break
  kill -0 "$PROXY_PID" 2>/dev/null || { cat "$DIR/proxy.log" >&2; echo "fault proxy exited" >&2; exit 1; }
  sleep 0.1
done
[ -s "$DIR/proxy.port" ] || { echo "fault proxy did not start within 10 s" >&2; exit 1; }
PROXY_URL="http://127.0.0.1:$(cat "$DIR/proxy.port")"
log "fault proxy $PROXY_URL -> moto $MOTO_URL (seed $SEED)"

proxy() { # proxy METHOD PATH [JSON]: the proxy's control path
  python3 - "$PROXY_URL$2" "$1" "${3:-}" <<'PY'
import sys, urllib.request
url, method, body = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(url, data=body.encode() if body else None, method=method)
print(urllib.request.urlopen(req).read().decode())
PY
}

faults_off() { proxy POST /__faults/config '{"s3_slowdown": 0, "s3_internal": 0, "ddb_throttle": 0, "ddb_conflict": 0, "sqs_500": 0, "cut": 0, "work_queue": ""}' >/dev/null; }

"$BATCHOPS" local init >"$DIR/init.log"
"$PY" scripts/chaos_verify.py seed --state "$DIR/state.json" --objects "$OBJECTS" --seed "$SEED"

create_job() { # create_job SCENARIO [OPERATION] -> prints the job ID
  "$PY" scripts/chaos_verify.py job --state "$DIR/state.json" --scenario "$1" --operation "${2:-copy}" --token "$SEED-$$" --out "$DIR/$1-job.json"
  "$BATCHOPS" job create --cli-input-json "$DIR/$1-job.json" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["JobId"])'
}

# One `batchops run` through the proxy; returns its exit status.
run_through_proxy() { # run_through_proxy MAX_SECONDS LOGFILE
  AWS_ENDPOINT_URL="$PROXY_URL" "$BATCHOPS" run --until-idle --max-seconds "$1" >>"$2" 2>&1
}

verify() { # verify SCENARIO JOB_ID KILLS WALL [OPERATION]
  local scenario=$1 job=$2 operation=${5:-copy}
  # Straight to moto: the checks must not see injected faults.
  "$BATCHOPS" job describe "$job" --json >"$DIR/$scenario-describe.json" 2>>"$DIR/$scenario-verify.log" || true
  "$BATCHOPS" job report "$job" --json >"$DIR/$scenario-report.json" 2>>"$DIR/$scenario-verify.log" || true
  "$PY" scripts/chaos_verify.py verify --state "$DIR/state.json" --scenario "$scenario" --job-id "$job" \
    --describe "$DIR/$scenario-describe.json" --report "$DIR/$scenario-report.json" \
    --faults "$DIR/$scenario-faults.json" --kills "$3" --wall "$4" --operation "$operation" --out "$DIR/$scenario-row.json"
}

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

ROWS=()
# ---- (a) faults: every kind on, one run ----
if [[ " $SCENARIOS " == *" faults "* ]]; then
log "scenario faults: one run with every fault kind on"
JOB="$(create_job faults)"
proxy POST /__faults/reset >/dev/null
proxy POST /__faults/config "{\"seed\": $SEED, \"s3_slowdown\": ${FAULT_S3_SLOWDOWN:-0.05}, \"s3_internal\": ${FAULT_S3_INTERNAL:-0.03}, \"ddb_throttle\": ${FAULT_DDB_THROTTLE:-0.05}, \"ddb_conflict\": ${FAULT_DDB_CONFLICT:-0.1}, \"sqs_500\": ${FAULT_SQS_500:-0.05}, \"cut_s3\": ${FAULT_CUT_S3:-${FAULT_CUT:-0.02}}, \"cut_dynamodb\": ${FAULT_CUT_DYNAMODB:-${FAULT_CUT:-0.02}}, \"cut_sqs\": ${FAULT_CUT_SQS:-${FAULT_CUT:-0.02}}, \"work_queue\": \"${BATCHOPS_WORK_QUEUE:-batchops-work}\", \"no_cut\": $NO_CUT_JSON}" >/dev/null
start="$(now)"
run_through_proxy "$MAX_SECONDS" "$DIR/faults-run.log" || log "faults: batchops run exited $? (see $DIR/faults-run.log)"
wall="$(elapsed "$start")"
proxy GET /__faults >"$DIR/faults-faults.json"
faults_off
verify faults "$JOB" 0 "$wall"
ROWS+=("$DIR/faults-row.json")
fi

# ---- (b) kills: SIGKILL the runtime at seeded random moments, restart until the job ends ----
if [[ " $SCENARIOS " == *" kills "* ]]; then
log "scenario kills: up to $MAX_KILLS SIGKILLs of the local runtime"
JOB="$(create_job kills)"
# A tagging job over the same pinned versions, killed with the copy job in the same runtimes.
TAG_JOB="$(create_job kills-tagging tagging)"
faults_off
proxy POST /__faults/reset >/dev/null
read -r -a DELAYS <<<"$(python3 -c "import random,sys; r=random.Random(int(sys.argv[1])); a,b=map(float,sys.argv[3:5]); print(' '.join(f'{r.uniform(a,b):.2f}' for _ in range(int(sys.argv[2]))))" "$SEED" "$MAX_KILLS" $kill_window)"
start="$(now)"
killed=0
while :; do
  left="$(python3 -c "import sys; print(max(1, int(float(sys.argv[1]) - (float(sys.argv[3]) - float(sys.argv[2])))))" "$MAX_SECONDS" "$start" "$(now)")"
  AWS_ENDPOINT_URL="$PROXY_URL" "$BATCHOPS" run --until-idle --max-seconds "$left" >>"$DIR/kills-run.log" 2>&1 &
  RUN_PID=$!
  if [ "$killed" -lt "$MAX_KILLS" ]; then
    # Poll so a run that ends before its kill moment is not killed (or waited on) for nothing.
    deadline="$(python3 -c "import sys; print(float(sys.argv[1]) + float(sys.argv[2]))" "$(now)" "${DELAYS[$killed]}")"
    while kill -0 "$RUN_PID" 2>/dev/null && python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$(now)" "$deadline"; do
      sleep 0.1
    done
    if kill -9 "$RUN_PID" 2>/dev/null; then
      wait "$RUN_PID" 2>/dev/null || true
      killed=$((killed + 1))
      echo "kill $killed after ${DELAYS[$((killed - 1))]} s" >>"$DIR/kills-run.log"
      continue
    fi
  fi
  wait "$RUN_PID" || log "kills: batchops run exited $? (see $DIR/kills-run.log)"
  break
done
wall="$(elapsed "$start")"
proxy GET /__faults >"$DIR/kills-faults.json"
cp "$DIR/kills-faults.json" "$DIR/kills-tagging-faults.json"
verify kills "$JOB" "$killed" "$wall"
verify kills-tagging "$TAG_JOB" "$killed" "$wall" tagging
ROWS+=("$DIR/kills-row.json" "$DIR/kills-tagging-row.json")
fi

visibility="$("$PY" -c "
import boto3
sqs = boto3.client('sqs')
url = sqs.get_queue_url(QueueName='${BATCHOPS_WORK_QUEUE:-batchops-work}')['QueueUrl']
print(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=['VisibilityTimeout'])['Attributes']['VisibilityTimeout'])")"
echo
echo "chaos $MODE: seed $SEED, $OBJECTS objects + 2 multipart-sized, chunk size $BATCHOPS_CHUNK_SIZE, work queue visibility ${visibility} s (a killed runtime's messages come back after that)"
[ -z "$NO_CUT" ] || echo "never cut: $NO_CUT"
echo "range lease ${BATCHOPS_LEASE_SECONDS} s (a killed holder's range is taken over once it has run out)"
"$PY" scripts/chaos_verify.py table "${ROWS[@]}"
