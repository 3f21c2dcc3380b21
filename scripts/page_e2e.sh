#!/usr/bin/env bash
# The job center page in a real browser: its own moto, `batchops serve`, a finished copy job and
# one awaiting confirmation, then headless Chromium (Debian's package, driven by playwright-core
# from npm; both installed here when missing) checks the overview's progress and cancels the
# waiting job from its page; the job must end Cancelled. Screenshots of the list and the job go to
# .local/page-e2e/ (docs/ holds copies for the README). Ends with `page-e2e: N passed, M failed`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/local-stack.sh
LOCAL_DIR="$BATCHOPS_ROOT/.local/page-e2e"
rm -rf "$LOCAL_DIR"
mkdir -p "$LOCAL_DIR/bin"
setup_failed() { echo "page-e2e: $1 failed" >&2; echo "page-e2e: 0 passed, 1 failed"; exit 1; }

ensure_chromium || setup_failed "installing chromium"
ensure_playwright || setup_failed "installing playwright-core"

log "page-e2e: building the CLI (debug)"
built="$(cargo build --quiet -p batchops-cli --bin batchops --message-format=json-render-diagnostics |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "batchops":
        print(m["executable"])')" || setup_failed "cargo build"
cp "$built" "$LOCAL_DIR/bin/batchops"
BATCHOPS="$LOCAL_DIR/bin/batchops"

local_stack_start
"$BATCHOPS" local init >/dev/null
"$VENV/bin/python" - <<'PY'
import boto3
s3 = boto3.client("s3")
for name in ("page-source", "page-destination", "page-reports"):
    s3.create_bucket(Bucket=name)
keys = [f"photos/picture {i:03}.jpg" for i in range(40)]
for key in keys:
    s3.put_object(Bucket="page-source", Key=key, Body=key.encode())
manifest = "".join(f"page-source,{key.replace(' ', '%20')}\n" for key in keys)
s3.put_object(Bucket="page-source", Key="manifests/page.csv", Body=manifest.encode())
PY
job_document() {  # $1 token, $2 ConfirmationRequired, $3 description
  cat <<JSON
{"AccountId": "123456789012", "ClientRequestToken": "$1", "ConfirmationRequired": $2,
 "Operation": {"S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::page-destination"}},
 "Report": {"Bucket": "arn:aws:s3:::page-reports", "Prefix": "reports", "Format": "Report_CSV_20180820",
            "Enabled": true, "ReportScope": "AllTasks"},
 "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
              "Location": {"ObjectArn": "arn:aws:s3:::page-source/manifests/page.csv"}},
 "Description": "$3", "Priority": 10, "RoleArn": "arn:aws:iam::123456789012:role/batchops-page"}
JSON
}
job_id() { "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["JobId"])'; }
job_status() { "$BATCHOPS" job describe "$1" --json | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["Job"]["Status"])'; }

job_document page-finished false "copy 40 photos" >"$LOCAL_DIR/finished.json"
job_document page-waiting true "copy 40 photos, after a look" >"$LOCAL_DIR/waiting.json"
FINISHED="$("$BATCHOPS" job create --cli-input-json "$LOCAL_DIR/finished.json" | job_id)"
WAITING="$("$BATCHOPS" job create --cli-input-json "$LOCAL_DIR/waiting.json" | job_id)"
"$BATCHOPS" run --until-idle --concurrency 4 --max-seconds 120 2>"$LOCAL_DIR/run.log"
[ "$(job_status "$FINISHED")" = Complete ] || setup_failed "the copy job"
[ "$(job_status "$WAITING")" = Suspended ] || setup_failed "the job awaiting confirmation"

PORT="$(free_port)"
"$BATCHOPS" serve --bind "127.0.0.1:$PORT" >"$LOCAL_DIR/serve.log" 2>&1 &
SERVE_PID=$!
trap 'kill $SERVE_PID 2>/dev/null || true; local_stack_stop' EXIT
wait_for_http "http://127.0.0.1:$PORT/" "$SERVE_PID" "batchops serve" "$LOCAL_DIR/serve.log" ||
  setup_failed "batchops serve"

log "page-e2e: headless Chromium against http://127.0.0.1:$PORT/"
set +e
BATCHOPS_NPM_PREFIX="$NPM_PREFIX" node scripts/page_e2e.mjs "http://127.0.0.1:$PORT" "$FINISHED" "$WAITING" \
  "$LOCAL_DIR" | tee "$LOCAL_DIR/browser.log"
browser=${PIPESTATUS[0]}
set -e
# The cancel was requested from the page; the finalizer ends the job.
"$BATCHOPS" run --until-idle --concurrency 2 --max-seconds 60 2>>"$LOCAL_DIR/run.log"
ended="$(job_status "$WAITING")"
if [ "$ended" = Cancelled ]; then echo "ok   the job cancelled from the page ended Cancelled"; else
  echo "FAIL the job cancelled from the page ended $ended"; browser=1; fi | tee -a "$LOCAL_DIR/browser.log"
passed=$(grep -c '^ok' "$LOCAL_DIR/browser.log" || true)
failed=$(grep -c '^FAIL' "$LOCAL_DIR/browser.log" || true)
[ "$browser" = 0 ] || [ "$failed" -gt 0 ] || failed=1
echo "page-e2e: $passed passed, $failed failed"
[ "$failed" = 0 ]
