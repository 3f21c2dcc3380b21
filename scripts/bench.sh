#!/usr/bin/env bash
# Benchmarks, each printing ratios measured side by side in the same run.
#
#   scripts/bench.sh planner   the prepare step (`batchops plan`, the planner's own code) over
#                              CSV and gzip S3 Inventory manifests of 1M and 10M lines: lines/s,
#                              peak RSS, and the ratio to `gzip -dc FILE > /dev/null` on the same
#                              gzip file.
#
#   scripts/bench.sh backup    a backup run's prepare step (`batchops plan --backup-policy`, the
#                              planner's own code) against scripts/bench_s3.py, a fake S3 endpoint
#                              that generates a versioned bucket of 1M keys (no per-key requests,
#                              no per-key storage): a full run and an incremental run over 1M
#                              unchanged catalog entries, side by side: requests by kind, requests
#                              per object (target: below 0.002 when unchanged, i.e. listing only),
#                              diff rate, peak RSS. Fails if the incremental run would copy
#                              anything or needs 0.002 requests per object or more.
#
#                              Then the completion case (debug build, like finalize below): a
#                              run's snapshot completion plus the retention it applies, over 10M
#                              objects (`backup::complete_snapshot`, the finalizer's own code,
#                              driven by functions/aws/examples/snapshot_bench.rs; the table on
#                              moto): bench_s3.py generates the run's draft parts and copy results
#                              (every 100th object changed) and serves the previous snapshot's
#                              catalog; the new catalog is written by multipart upload and read
#                              back, ranged, by retention, which expires the previous snapshot and
#                              frees the 100k versions only it referenced. Requests by kind, wall
#                              time, peak RSS; fails at 256 MiB of RSS or more, or if the snapshot
#                              or retention is not what the data says.
#
#   scripts/bench.sh export    one object exported to a second moto (an S3-compatible store with
#                              its own credentials) by the export job's planner, worker and
#                              finalizer in one process (functions/aws/examples/export_bench.rs,
#                              debug build): 64 MiB and 1 GiB side by side, MiB/s and peak RSS,
#                              which must not grow with the object (fails at 256 MiB or more).
#                              BENCH_EXPORT_MIB="64 1024" changes the sizes.
#   scripts/bench.sh chaos     the long chaos run (scripts/chaos.sh long): thousands of objects
#                              through a fault-injecting proxy, then under repeated SIGKILLs of
#                              the local runtime; verified against moto, one table. Debug build.
#   scripts/bench.sh finalize  the finalizer's report roll (`finalizer::roll_report`, driven by
#                              functions/aws/examples/report_bench.rs) over jobs of 1M and 10M
#                              tasks: the table (moto) holds the job and its committed ranges of
#                              1,000 tasks; scripts/bench_s3.py generates each range's staged rows
#                              and takes the result files' multipart uploads. Requests by kind,
#                              wall time, peak RSS (debug build); fails at 256 MiB of RSS or more.
#
# Set BENCH_SIZES="1000000 10000000" (planner, lines), BENCH_BACKUP_SIZES="1000000" (backup
# prepare step, objects; empty: skip it and its release build) or BENCH_COMPLETION_SIZES="10000000"
# (backup completion, objects; empty: skip it) and BENCH_COMPLETION_CHANGED_EVERY=100 to change
# the sizes. Data goes to .local/bench (kept between runs; delete it to
# regenerate).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
WHAT="${1:-planner}"
# ---- chaos: its own script (debug build, moto, fault proxy); nothing below is needed ----
if [ "$WHAT" = chaos ]; then
  exec scripts/chaos.sh long
fi
# ---- end of chaos ----
SIZES="${BENCH_SIZES:-1000000 10000000}"
BACKUP_SIZES="${BENCH_BACKUP_SIZES-1000000}"
DATA="$ROOT/.local/bench"
mkdir -p "$DATA"

command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
command -v taskset >/dev/null || { apt-get update -qq && apt-get install -y -qq util-linux >/dev/null; }

if [ "$WHAT" = planner ] || { [ "$WHAT" = backup ] && [ -n "$BACKUP_SIZES" ]; }; then
  echo "==> cargo build --release -p batchops-cli" >&2
  cargo build --release --quiet -p batchops-cli
fi
BATCHOPS="$ROOT/target/release/batchops"

human() { python3 -c "import sys; n=int(sys.argv[1]); print(f'{n/1e6:.0f}M' if n>=1e6 else f'{n/1e3:.0f}k')" "$1"; }

generate() {
  local kind=$1 lines=$2 name
  name="$(human "$lines")"
  if [ "$kind" = csv ]; then
    local file="$DATA/csv-$name.csv"
    [ -s "$file" ] || { echo "==> generating $file" >&2; python3 scripts/gen_manifest.py csv "$lines" >"$file"; }
    echo "$file"
  else
    local dir="$DATA/inventory-$name"
    if [ ! -s "$dir/manifest.json" ]; then
      echo "==> generating $dir" >&2
      mkdir -p "$dir/data"
      python3 scripts/gen_manifest.py inventory "$lines" | gzip -6 >"$dir/data/part-0.csv.gz"
      python3 - "$dir" <<'PY'
import hashlib, json, os, sys
d = sys.argv[1]
data = os.path.join(d, "data", "part-0.csv.gz")
md5 = hashlib.md5(open(data, "rb").read()).hexdigest()
manifest = {"sourceBucket": "bench-source", "destinationBucket": "arn:aws:s3:::bench-inventory",
            "version": "2016-11-30", "creationTimestamp": "1763769600000", "fileFormat": "CSV",
            "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass",
            "files": [{"key": "data/part-0.csv.gz", "size": os.path.getsize(data), "MD5checksum": md5}]}
body = json.dumps(manifest).encode()
open(os.path.join(d, "manifest.json"), "wb").write(body)
open(os.path.join(d, "manifest.checksum"), "w").write(hashlib.md5(body).hexdigest())
PY
    fi
    echo "$dir/manifest.json"
  fi
}

# Runs a command under /usr/bin/time; prints "<wall seconds> <peak RSS KiB>".
measure() {
  local log
  log="$(mktemp)"
  /usr/bin/time -f "%e %M" -o "$log" "$@" >/dev/null
  cat "$log"
  rm -f "$log"
}

planner_bench() {
  printf '| manifest | lines | plan wall s | lines/s | lines/s on 1 core | peak RSS MiB | gzip -dc s | plan / gzip -dc |\n'
  printf '|---|---:|---:|---:|---:|---:|---:|---:|\n'
  for kind in csv inventory; do
    for lines in $SIZES; do
      local input format gz
      input="$(generate "$kind" "$lines")"
      format="$kind"
      read -r wall rss <<<"$(measure "$BATCHOPS" plan --manifest "$input" --format "$format" --json)"
      read -r wall1 _ <<<"$(measure taskset -c 0 "$BATCHOPS" plan --manifest "$input" --format "$format" --json)"
      local rate rate1 ratio="n/a (not gzip)" gzip_s="-"
      rate="$(python3 -c "import sys; print(f'{int(sys.argv[1])/float(sys.argv[2]):,.0f}')" "$lines" "$wall")"
      rate1="$(python3 -c "import sys; print(f'{int(sys.argv[1])/float(sys.argv[2]):,.0f}')" "$lines" "$wall1")"
      if [ "$kind" = inventory ]; then
        gz="$(dirname "$input")/data/part-0.csv.gz"
        read -r gzip_s _ <<<"$(measure sh -c "gzip -dc '$gz' > /dev/null")"
        ratio="$(python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.2f}x')" "$wall" "$gzip_s")"
      fi
      printf '| %s | %s | %s | %s | %s | %.1f | %s | %s |\n' "$kind" "$(human "$lines")" "$wall" "$rate" "$rate1" "$(python3 -c "print($rss/1024)")" "$gzip_s" "$ratio"
    done
  done
}

# The fake endpoint's buckets and the previous snapshot's catalog, named as a completed run names it.
BACKUP_SOURCE=bench-source
BACKUP_VAULT=bench-vault
BACKUP_PREFIX=backups/source/
BACKUP_CATALOG_KEY="${BACKUP_PREFIX}.batchops/snapshots/bench/20261101T000000Z.catalog.gz"
BACKUP_TARGET=0.002
SERVER_PID=""
ENDPOINT=""

stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}

# Starts bench_s3.py for $1 objects and catalog file $2 (and further `serve` options) on a free
# loopback port; sets SERVER_PID and ENDPOINT.
start_server() {
  local objects=$1 catalog=$2 port_file="$DATA/bench_s3.port"
  shift 2
  rm -f "$port_file"
  python3 scripts/bench_s3.py serve --objects "$objects" --source-bucket "$BACKUP_SOURCE" \
    --catalog-bucket "$BACKUP_VAULT" --catalog-key "$BACKUP_CATALOG_KEY" --catalog-file "$catalog" \
    "$@" --port 0 --port-file "$port_file" 2>>"$DATA/bench_s3.log" &
  SERVER_PID=$!
  for _ in $(seq 100); do
    [ -s "$port_file" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "bench_s3.py exited; see $DATA/bench_s3.log" >&2; exit 1; }
    sleep 0.1
  done
  [ -s "$port_file" ] || { echo "bench_s3.py did not start within 10 s; see $DATA/bench_s3.log" >&2; exit 1; }
  ENDPOINT="http://127.0.0.1:$(cat "$port_file")"
}

# Runs `batchops plan ... --json` against the fake endpoint under /usr/bin/time: its JSON goes to
# $1, "<wall seconds> <peak RSS KiB> <user CPU seconds> <system CPU seconds>" to $2.
measure_plan() {
  local out=$1 timing=$2
  shift 2
  if ! env -u AWS_PROFILE -u AWS_SESSION_TOKEN AWS_ENDPOINT_URL="$ENDPOINT" \
    AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 \
    /usr/bin/time -f "%e %M %U %S" -o "$timing" "$BATCHOPS" plan "$@" --json >"$out"; then
    echo "FAILED: batchops plan $* (output in $out)" >&2
    exit 1
  fi
}

backup_bench() {
  command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
  local policy="$DATA/backup-policy.json"
  printf '{"name": "bench", "source": {"bucket": "%s", "prefix": ""}, "destination": {"bucket": "%s", "prefix": "%s"}, "deletes": "record"}\n' \
    "$BACKUP_SOURCE" "$BACKUP_VAULT" "$BACKUP_PREFIX" >"$policy"
  trap stop_server EXIT
  local rows=() failures=() objects name catalog run out stats wall rss user sys result line
  for objects in $BACKUP_SIZES; do
    name="$(human "$objects")"
    catalog="$DATA/backup-catalog-$name.tsv.gz"
    if [ ! -s "$catalog" ]; then
      echo "==> generating $catalog" >&2
      python3 scripts/bench_s3.py catalog --objects "$objects" --dest-prefix "$BACKUP_PREFIX" --out "$catalog"
    fi
    start_server "$objects" "$catalog"
    # (a) full: no previous catalog, every object a copy task; (b) incremental: every object unchanged.
    for run in full incremental; do
      local args=(--backup-policy "$policy")
      [ "$run" = incremental ] && args+=(--previous-catalog "s3://$BACKUP_VAULT/$BACKUP_CATALOG_KEY")
      out="$DATA/backup-$run-$name.json"
      stats="$DATA/backup-$run-$name.stats.json"
      echo "==> $run run over $name objects" >&2
      curl -fsS -X POST "$ENDPOINT/__reset" >/dev/null
      measure_plan "$out" "$out.time" "${args[@]}"
      read -r wall rss user sys <"$out.time"
      curl -fsS "$ENDPOINT/__stats" >"$stats"
      result="$(python3 scripts/bench_s3.py table-row --run "$run" --objects "$objects" --wall "$wall" \
        --user "$user" --sys "$sys" --rss-kib "$rss" --plan "$out" --stats "$stats" --target "$BACKUP_TARGET")"
      while IFS= read -r line; do
        case "$line" in
          FAIL*) failures+=("${line#FAIL }") ;;
          *) rows+=("$line") ;;
        esac
      done <<<"$result"
    done
    stop_server
  done
  if [ ${#rows[@]} -gt 0 ]; then
    python3 scripts/bench_s3.py table-header --target "$BACKUP_TARGET"
    printf '%s\n' "${rows[@]}"
  fi
  completion_bench
  if [ ${#failures[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${failures[@]}" >&2
    exit 1
  fi
}

COMPLETION_SIZES="${BENCH_COMPLETION_SIZES-10000000}"
COMPLETION_CHANGED_EVERY="${BENCH_COMPLETION_CHANGED_EVERY:-100}"
COMPLETION_DRAFT_ROWS=10000
COMPLETION_CHUNK_TASKS=1000
COMPLETION_RSS_LIMIT_MIB=256

# The completion case of the backup bench (adds to `failures` of backup_bench).
completion_bench() {
  [ -n "$COMPLETION_SIZES" ] || return 0
  echo "==> cargo build -p batchops-aws --example snapshot_bench (debug)" >&2
  cargo build --quiet -p batchops-aws --example snapshot_bench
  local bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/snapshot_bench"
  # shellcheck source=scripts/local-stack.sh
  source scripts/local-stack.sh
  local_stack_start
  trap 'stop_server; local_stack_stop' EXIT
  export BATCHOPS_CONTROL_BUCKET=bench-control BATCHOPS_EVENT_BUS=none
  local spool="$DATA/spool" completion_rows=() objects name catalog etag job out stats wall rss user sys line
  for objects in $COMPLETION_SIZES; do
    name="$(human "$objects")"
    catalog="$DATA/backup-catalog-$name.tsv.gz"
    if [ ! -s "$catalog" ]; then
      echo "==> generating $catalog" >&2
      python3 scripts/bench_s3.py catalog --objects "$objects" --dest-prefix "$BACKUP_PREFIX" --out "$catalog"
    fi
    etag="$(md5sum "$catalog" | cut -d' ' -f1)"
    export BATCHOPS_TABLE="bench-completion-$name-$$"
    rm -rf "$spool"
    start_server "$objects" "$catalog" --spool "$spool" --changed-every "$COMPLETION_CHANGED_EVERY" \
      --draft-rows "$COMPLETION_DRAFT_ROWS" --chunk-tasks "$COMPLETION_CHUNK_TASKS" --dest-prefix "$BACKUP_PREFIX"
    echo "==> seeding a completed run over $name objects (every ${COMPLETION_CHANGED_EVERY}th changed) in moto" >&2
    job="$(AWS_ENDPOINT_URL_S3="$ENDPOINT" "$bin" seed --objects "$objects" --changed-every "$COMPLETION_CHANGED_EVERY" \
      --draft-rows "$COMPLETION_DRAFT_ROWS" --chunk-tasks "$COMPLETION_CHUNK_TASKS" --catalog-etag "$etag")"
    curl -fsS -X POST "$ENDPOINT/__reset" >/dev/null
    out="$DATA/completion-$name.json"
    stats="$DATA/completion-$name.stats.json"
    echo "==> completing the snapshot of $name objects, then retention" >&2
    # S3 is the fake endpoint; DynamoDB stays on moto.
    AWS_ENDPOINT_URL_S3="$ENDPOINT" /usr/bin/time -f "%e %M %U %S" -o "$out.time" "$bin" complete --job "$job" >"$out" \
      || { echo "FAILED: snapshot_bench complete (see $out)" >&2; exit 1; }
    read -r wall rss user sys <"$out.time"
    curl -fsS "$ENDPOINT/__stats" >"$stats"
    stop_server
    rm -rf "$spool"
    while IFS= read -r line; do
      case "$line" in
        FAIL*) failures+=("completion $name: ${line#FAIL }") ;;
        *) completion_rows+=("$line") ;;
      esac
    done <<<"$(python3 scripts/bench_s3.py completion-row --objects "$objects" --changed-every "$COMPLETION_CHANGED_EVERY" \
      --wall "$wall" --user "$user" --sys "$sys" --rss-kib "$rss" --rss-limit-mib "$COMPLETION_RSS_LIMIT_MIB" \
      --stats "$stats" --result "$out")"
  done
  python3 scripts/bench_s3.py completion-header
  printf '%s\n' "${completion_rows[@]}"
}

FINALIZE_SIZES="${BENCH_FINALIZE_SIZES:-1000000 10000000}"
FINALIZE_RSS_LIMIT_MIB=256

finalize_bench() {
  command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
  echo "==> cargo build -p batchops-aws --example report_bench (debug)" >&2
  cargo build --quiet -p batchops-aws --example report_bench
  local bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/report_bench"
  # shellcheck source=scripts/local-stack.sh
  source scripts/local-stack.sh
  local_stack_start
  trap 'stop_server; local_stack_stop' EXIT
  export BATCHOPS_CONTROL_BUCKET=bench-control BATCHOPS_EVENT_BUS=none
  local port_file="$DATA/bench_s3.port" rows=() failures=() tasks name job out stats wall rss user sys
  for tasks in $FINALIZE_SIZES; do
    name="$(human "$tasks")"
    export BATCHOPS_TABLE="bench-report-$name-$$"
    echo "==> seeding a job of $name tasks ($((tasks / 1000)) committed ranges) in moto" >&2
    job="$("$bin" seed --tasks "$tasks")"
    rm -f "$port_file"
    python3 scripts/bench_s3.py serve --objects 0 --source-bucket bench-source --port 0 \
      --port-file "$port_file" 2>>"$DATA/bench_s3.log" &
    SERVER_PID=$!
    for _ in $(seq 100); do [ -s "$port_file" ] && break; sleep 0.1; done
    [ -s "$port_file" ] || { echo "bench_s3.py did not start; see $DATA/bench_s3.log" >&2; exit 1; }
    ENDPOINT="http://127.0.0.1:$(cat "$port_file")"
    out="$DATA/finalize-$name.json"
    stats="$DATA/finalize-$name.stats.json"
    echo "==> rolling the report of $name tasks" >&2
    # S3 is the fake endpoint; DynamoDB stays on moto.
    AWS_ENDPOINT_URL_S3="$ENDPOINT" /usr/bin/time -f "%e %M %U %S" -o "$out.time" "$bin" roll --job "$job" >"$out" \
      || { echo "FAILED: report_bench roll (see $out)" >&2; exit 1; }
    read -r wall rss user sys <"$out.time"
    curl -fsS "$ENDPOINT/__stats" >"$stats"
    stop_server
    rows+=("$(python3 scripts/bench_s3.py finalize-row --tasks "$tasks" --wall "$wall" --rss-kib "$rss" \
      --user "$user" --sys "$sys" --stats "$stats" --roll "$out")")
    if [ "$rss" -ge $((FINALIZE_RSS_LIMIT_MIB * 1024)) ]; then
      failures+=("$name tasks: peak RSS $((rss / 1024)) MiB, limit $FINALIZE_RSS_LIMIT_MIB MiB")
    fi
  done
  python3 scripts/bench_s3.py finalize-header
  printf '%s\n' "${rows[@]}"
  if [ ${#failures[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${failures[@]}" >&2
    exit 1
  fi
}

EXPORT_MIB="${BENCH_EXPORT_MIB:-64 1024}"
EXPORT_RSS_LIMIT_MIB=256

export_bench() {
  echo "==> cargo build -p batchops-aws --example export_bench (debug)" >&2
  cargo build --quiet -p batchops-aws --example export_bench
  local bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/export_bench"
  # shellcheck source=scripts/local-stack.sh
  source scripts/local-stack.sh
  local_stack_start
  other_store_start
  export BATCHOPS_CONTROL_BUCKET=bench-control BATCHOPS_EVENT_BUS=none BATCHOPS_TABLE="bench-export-$$"
  # One delivery streams the whole object (a cut-short one would start again from byte 0).
  export BATCHOPS_LOCAL_CHUNK_DEADLINE_SECONDS=3600
  local rows=() failures=() mib key out wall rss user sys result
  for mib in $EXPORT_MIB; do
    key="object-${mib}MiB.bin"
    echo "==> seeding bench-source/$key ($mib MiB) in moto" >&2
    "$bin" seed --key "$key" --mib "$mib"
    out="$DATA/export-$mib.json"
    echo "==> exporting $key to the second moto" >&2
    /usr/bin/time -f "%e %M %U %S" -o "$out.time" "$bin" export --key "$key" --to "$BATCHOPS_TEST_OTHER_S3" >"$out" \
      || { echo "FAILED: export_bench export (see $out)" >&2; exit 1; }
    read -r wall rss user sys <"$out.time"
    result="$(python3 - "$out" "$mib" "$wall" "$rss" "$user" "$sys" <<'PY'
import json, sys
out, mib, wall, rss, user, sys_s = sys.argv[1:]
r = json.load(open(out))
ok = r["status"] == "Success" and r["bytes"] == int(mib) * 1024 * 1024
print(f"| {int(mib):>5} MiB | {r['seconds']:7.1f} s | {int(mib) / r['seconds']:6.1f} MiB/s | {int(rss) / 1024:6.1f} MiB "
      f"| {float(user) + float(sys_s):6.1f} s | {r['status']}{'' if ok else ' (FAILED: ' + str(r['bytes']) + ' bytes)'} |")
PY
)"
    rows+=("$result")
    [[ "$result" == *FAILED* ]] && failures+=("$mib MiB: $result")
    if [ "$rss" -ge $((EXPORT_RSS_LIMIT_MIB * 1024)) ]; then
      failures+=("$mib MiB: peak RSS $((rss / 1024)) MiB, limit $EXPORT_RSS_LIMIT_MIB MiB")
    fi
  done
  echo "export of one object to a second moto (part ${BATCHOPS_EXPORT_PART_BYTES:-8388608} bytes, ${BATCHOPS_EXPORT_PART_CONCURRENCY:-4} in flight; debug build; wall: export created .. job done)"
  echo "| object | wall | throughput | peak RSS | CPU | status |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  if [ ${#failures[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${failures[@]}" >&2
    exit 1
  fi
}

case "$WHAT" in
  planner) planner_bench ;;
  export) export_bench ;;
  backup) backup_bench ;;
  finalize) finalize_bench ;;
  *) echo "usage: scripts/bench.sh planner|backup|finalize|export|chaos" >&2; exit 2 ;;
esac
