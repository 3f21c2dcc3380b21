#!/usr/bin/env bash
# Benchmarks, each printing ratios measured side by side in the same run.
#
#   scripts/bench.sh planner   the prepare step (`batchops plan`, the planner's own code) over
#                              CSV and gzip S3 Inventory manifests of 1M and 10M lines: lines/s,
#                              peak RSS, and the ratio to `gzip -dc FILE > /dev/null` on the same
#                              gzip file.
#
# Set BENCH_SIZES="1000000 10000000" to change the sizes. Data goes to .local/bench (kept between
# runs; delete it to regenerate).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
WHAT="${1:-planner}"
SIZES="${BENCH_SIZES:-1000000 10000000}"
DATA="$ROOT/.local/bench"
mkdir -p "$DATA"

command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
command -v taskset >/dev/null || { apt-get update -qq && apt-get install -y -qq util-linux >/dev/null; }

echo "==> cargo build --release -p batchops-cli" >&2
cargo build --release --quiet -p batchops-cli
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

case "$WHAT" in
  planner) planner_bench ;;
  *) echo "usage: scripts/bench.sh planner" >&2; exit 2 ;;
esac
