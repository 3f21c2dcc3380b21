#!/usr/bin/env bash
# batchops end to end on the local AWS stack: starts moto, creates the table, queues and buckets,
# seeds a versioned source bucket, creates a Copy job from a CSV manifest in the S3 Batch
# Operations dialect, runs it with the local runtime while showing progress, and prints the
# final DescribeJob summary and the verified completion report. Then an S3PutObjectTagging job
# over the same versions, a LambdaInvoke job (the example function served by
# scripts/lambda_emulator.py), backups, and an export of the latest snapshot to a second moto.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/local-stack.sh

OBJECTS="${DEMO_OBJECTS:-3000}"
export BATCHOPS_MULTIPART_THRESHOLD_BYTES="${BATCHOPS_MULTIPART_THRESHOLD_BYTES:-8388608}"
export BATCHOPS_MULTIPART_PART_SIZE_BYTES="${BATCHOPS_MULTIPART_PART_SIZE_BYTES:-5242880}"
export RUST_LOG="${RUST_LOG:-warn}"

log "building the batchops CLI"
# Cargo says where it put the binary (CARGO_TARGET_DIR, a config'd target-dir, ...); a private
# copy keeps the demo on this build even if another build in a shared target dir replaces it.
built="$(cargo build --quiet -p batchops-cli --bin batchops --message-format=json-render-diagnostics |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "batchops":
        print(m["executable"])')"
if [ -z "$built" ] || [ ! -x "$built" ]; then
  echo "cargo build did not report the batchops binary" >&2
  exit 1
fi
mkdir -p "$LOCAL_DIR/bin"
cp "$built" "$LOCAL_DIR/bin/batchops"
BATCHOPS="$LOCAL_DIR/bin/batchops"

local_stack_start
log "batchops local init"
"$BATCHOPS" local init

log "seeding the source bucket"
"$VENV/bin/python" scripts/seed_demo.py --bucket demo-source --objects "$OBJECTS"
"$VENV/bin/python" - <<'PY'
import boto3
s3 = boto3.client("s3")
for name in ("demo-destination", "demo-reports"):
    s3.create_bucket(Bucket=name)
s3.put_bucket_versioning(Bucket="demo-destination", VersioningConfiguration={"Status": "Enabled"})
PY

mkdir -p "$LOCAL_DIR"
cat >"$LOCAL_DIR/demo-job.json" <<'JSON'
{
  "AccountId": "000000000000",
  "ConfirmationRequired": false,
  "Operation": {
    "S3PutObjectCopy": {
      "TargetResource": "arn:aws:s3:::demo-destination",
      "TargetKeyPrefix": "copy-of-source",
      "MetadataDirective": "COPY"
    }
  },
  "Report": {
    "Bucket": "arn:aws:s3:::demo-reports",
    "Prefix": "batch-reports",
    "Format": "Report_CSV_20180820",
    "Enabled": true,
    "ReportScope": "AllTasks"
  },
  "ClientRequestToken": "batchops-demo",
  "Manifest": {
    "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key", "VersionId"]},
    "Location": {"ObjectArn": "arn:aws:s3:::demo-source/manifests/demo.csv"}
  },
  "Description": "batchops demo: copy a versioned bucket",
  "Priority": 10,
  "RoleArn": "arn:aws:iam::000000000000:role/batchops-demo"
}
JSON

log "batchops job create --cli-input-json .local/demo-job.json"
JOB_ID="$("$BATCHOPS" job create --cli-input-json "$LOCAL_DIR/demo-job.json" | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["JobId"])')"
echo "JobId $JOB_ID"

log "batchops run --until-idle (local planner, workers and finalizer)"
start=$(date +%s.%N)
"$BATCHOPS" run --until-idle --concurrency 4 --max-seconds 900 2>"$LOCAL_DIR/run.log" &
RUN_PID=$!
"$BATCHOPS" job describe "$JOB_ID" --watch >/dev/null
wait "$RUN_PID"
end=$(date +%s.%N)

log "batchops job describe $JOB_ID"
"$BATCHOPS" job describe "$JOB_ID"
log "batchops serve: the same job through S3 Control's own API (aws s3control describe-job)"
SERVE_PORT="$(free_port)"
"$BATCHOPS" serve --bind "127.0.0.1:$SERVE_PORT" --access-key-id AKIDDEMO --secret-access-key demo-secret \
  2>"$LOCAL_DIR/serve.log" &
SERVE_PID=$!
trap 'kill "$SERVE_PID" 2>/dev/null || true; local_stack_stop' EXIT
for _ in $(seq 1 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $SERVE_PORT), 0.2)" 2>/dev/null && break
  sleep 0.1
done
# The CLI calls <account>.127.0.0.1:PORT; scripts/aws_loopback.py resolves that to loopback.
AWS_ACCESS_KEY_ID=AKIDDEMO AWS_SECRET_ACCESS_KEY=demo-secret "$VENV/bin/python" scripts/aws_loopback.py \
  s3control describe-job --account-id "${BATCHOPS_ACCOUNT_ID:-000000000000}" --job-id "$JOB_ID" \
  --endpoint-url "http://127.0.0.1:$SERVE_PORT" --query 'Job.{JobId: JobId, Status: Status, Priority: Priority, ProgressSummary: ProgressSummary}' --output json
kill "$SERVE_PID" 2>/dev/null || true
log "batchops job report $JOB_ID"
"$BATCHOPS" job report "$JOB_ID"

STATUS="$("$BATCHOPS" job describe "$JOB_ID" --json | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["Job"]["Status"])')"
TASKS="$("$BATCHOPS" job describe "$JOB_ID" --json | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["Job"]["ProgressSummary"]["NumberOfTasksSucceeded"])')"
"$VENV/bin/python" - "$start" "$end" "$TASKS" <<'PY'
import sys
start, end, tasks = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
print(f"copied {tasks} objects in {end - start:.1f}s: {tasks / (end - start):.0f} objects/s (debug build, moto on loopback)")
PY
if [ "$STATUS" != "Complete" ]; then
  echo "demo job ended $STATUS" >&2
  exit 1
fi
log "copy job complete: job $STATUS, report verified against the job's counters"

# ---- a tagging job over the same manifest: every listed version gets the job's tag set ----
log "S3PutObjectTagging job over the same manifest (version-pinned)"
"$VENV/bin/python" - "$LOCAL_DIR/demo-job.json" "$LOCAL_DIR/demo-tagging-job.json" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))
job["Operation"] = {"S3PutObjectTagging": {"TagSet": [{"Key": "reviewed", "Value": "batchops demo"},
                                                       {"Key": "class", "Value": "demo-data"}]}}
job["ClientRequestToken"] = "batchops-demo-tagging"
# A role in moto's default account: moto keeps object tags per calling account, and the check
# below reads them with the demo's own credentials.
job["RoleArn"] = "arn:aws:iam::123456789012:role/batchops-demo"
job["Description"] = "batchops demo: tag every listed version"
json.dump(job, open(sys.argv[2], "w"), indent=2)
PY
TAG_JOB="$("$BATCHOPS" job create --cli-input-json "$LOCAL_DIR/demo-tagging-job.json" | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["JobId"])')"
"$BATCHOPS" run --until-idle --concurrency 4 --max-seconds 600 2>>"$LOCAL_DIR/run.log"
"$BATCHOPS" job describe "$TAG_JOB"
"$BATCHOPS" job report "$TAG_JOB"
"$VENV/bin/python" - <<'PY'
import boto3, csv, urllib.parse
s3 = boto3.client("s3")
rows = list(csv.reader(s3.get_object(Bucket="demo-source", Key="manifests/demo.csv")["Body"].read().decode().splitlines()))
for bucket, key, version in rows[:: max(1, len(rows) // 5)]:
    key = urllib.parse.unquote(key)
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key, VersionId=version)["TagSet"]}
    assert tags == {"reviewed": "batchops demo", "class": "demo-data"}, (key, version, tags)
print(f"tag sets checked on {len(rows[:: max(1, len(rows) // 5)])} of {len(rows)} listed versions")
PY
TAG_STATUS="$("$BATCHOPS" job describe "$TAG_JOB" --json | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["Job"]["Status"])')"
[ "$TAG_STATUS" = Complete ] || { echo "tagging job ended $TAG_STATUS" >&2; exit 1; }
log "tagging job complete: every listed version tagged, report verified"

# ---- LambdaInvoke: the example function, invoked once per object of a manifest ----------------
job_status() { "$BATCHOPS" job describe "$1" --json | "$VENV/bin/python" -c 'import json,sys; j=json.load(sys.stdin)["Job"]; p=j["ProgressSummary"]; print(j["Status"], p["TotalNumberOfTasks"], p["NumberOfTasksSucceeded"])'; }
log "LambdaInvoke: building the example function (functions/example-invoke)"
built="$(cargo build --quiet -p batchops-example-invoke --message-format=json-render-diagnostics |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "example-invoke":
        print(m["executable"])')"
[ -n "$built" ] && [ -x "$built" ] || { echo "cargo build did not report the example-invoke binary" >&2; exit 1; }
cp "$built" "$LOCAL_DIR/bin/example-invoke"
log "LambdaInvoke: serving it on Lambda's Invoke API (scripts/lambda_emulator.py --invoke-port)"
EXAMPLE_STATE_BUCKET=demo-reports "$VENV/bin/python" scripts/lambda_emulator.py --name demo-example-invoke \
  --alias live --timeout 30 --invoke-port 0 -- "$LOCAL_DIR/bin/example-invoke" \
  >"$LOCAL_DIR/invoke-endpoint.json" 2>"$LOCAL_DIR/example-invoke.log" &
INVOKE_PID=$!
stop_invoke() { kill "$INVOKE_PID" 2>/dev/null || true; wait "$INVOKE_PID" 2>/dev/null || true; }
trap 'stop_invoke; local_stack_stop' EXIT
for _ in $(seq 1 100); do [ -s "$LOCAL_DIR/invoke-endpoint.json" ] && break; sleep 0.1; done
AWS_ENDPOINT_URL_LAMBDA="$("$VENV/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["invoke_endpoint"])' "$LOCAL_DIR/invoke-endpoint.json")"
export AWS_ENDPOINT_URL_LAMBDA
echo "demo-example-invoke on $AWS_ENDPOINT_URL_LAMBDA"
# 100 objects of the copy job's manifest (pinned first versions), a key the function fails
# twice with TemporaryFailure before it succeeds, and a version deleted since (PermanentFailure).
"$VENV/bin/python" - <<'PY'
import boto3
s3 = boto3.client("s3")
lines = s3.get_object(Bucket="demo-source", Key="manifests/demo.csv")["Body"].read().decode().splitlines()[:100]
version = s3.put_object(Bucket="demo-source", Key="invoke/temporary-failure.txt", Body=b"retried")["VersionId"]
lines.append(f"demo-source,invoke/temporary-failure.txt,{version}")
gone = s3.put_object(Bucket="demo-source", Key="invoke/deleted.txt", Body=b"gone")["VersionId"]
s3.delete_object(Bucket="demo-source", Key="invoke/deleted.txt", VersionId=gone)
lines.append(f"demo-source,invoke/deleted.txt,{gone}")
s3.put_object(Bucket="demo-source", Key="manifests/invoke.csv", Body=("\n".join(lines) + "\n").encode())
PY
cat >"$LOCAL_DIR/demo-invoke-job.json" <<'JSON'
{
  "AccountId": "000000000000",
  "Operation": {
    "LambdaInvoke": {
      "FunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:demo-example-invoke:live",
      "InvocationSchemaVersion": "2.0",
      "UserArguments": {"label": "demo"}
    }
  },
  "Report": {"Bucket": "arn:aws:s3:::demo-reports", "Prefix": "invoke-reports", "Format": "Report_CSV_20180820",
             "Enabled": true, "ReportScope": "AllTasks"},
  "ClientRequestToken": "batchops-demo-invoke",
  "Manifest": {
    "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key", "VersionId"]},
    "Location": {"ObjectArn": "arn:aws:s3:::demo-source/manifests/invoke.csv"}
  },
  "Description": "batchops demo: the example function for every object",
  "Priority": 10,
  "RoleArn": "arn:aws:iam::000000000000:role/batchops-demo"
}
JSON
INVOKE_JOB="$("$BATCHOPS" job create --cli-input-json "$LOCAL_DIR/demo-invoke-job.json" | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["JobId"])')"
"$BATCHOPS" run --until-idle --concurrency 4 --max-seconds 300 2>>"$LOCAL_DIR/run.log"
"$BATCHOPS" job describe "$INVOKE_JOB"
"$BATCHOPS" job report "$INVOKE_JOB"
echo "report rows of the retried key, the deleted version and the first object (ResultMessage: the function's resultString):"
"$VENV/bin/python" - "$INVOKE_JOB" <<'PY'
import boto3, sys
s3 = boto3.client("s3")
prefix = f"invoke-reports/job-{sys.argv[1]}/results/"
rows = []
for o in s3.list_objects_v2(Bucket="demo-reports", Prefix=prefix).get("Contents", []):
    rows += s3.get_object(Bucket="demo-reports", Key=o["Key"])["Body"].read().decode().splitlines()
shown = [r for r in rows if ",invoke/" in r] + sorted(r for r in rows if ",invoke/" not in r)[:1]
print("\n".join(f"  {r}" for r in shown))
assert any("invoke/temporary-failure.txt" in r and ",succeeded,200,," in r for r in rows), rows
PY
read -r status tasks succeeded <<<"$(job_status "$INVOKE_JOB")"
failed=$((tasks - succeeded))
echo "LambdaInvoke job $INVOKE_JOB: $status, $succeeded of $tasks tasks succeeded, $failed failed (the deleted version)"
[ "$status" = Complete ] && [ "$tasks" = 102 ] && [ "$succeeded" = 101 ] \
  || { echo "LambdaInvoke job: expected Complete with 101 of 102 tasks succeeded" >&2; exit 1; }

# ---- backups: a full backup, changes, an incremental run, a restore from the first snapshot ----
run_backup() {
  local id
  id="$("$BATCHOPS" backup run demo-app | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["jobId"])')"
  "$BATCHOPS" run --until-idle --concurrency 4 --max-seconds 600 2>>"$LOCAL_DIR/run.log"
  read -r status tasks copied <<<"$(job_status "$id")"
  echo "backup run $id: $status, $copied of $tasks objects copied"
  [ "$status" = Complete ] || { echo "backup run ended $status" >&2; exit 1; }
}

log "backup: seeding s3://demo-app (versioned) and the policy"
"$VENV/bin/python" - <<'PY'
import boto3
s3 = boto3.client("s3")
for name in ("demo-app", "demo-vault", "demo-restore"):
    s3.create_bucket(Bucket=name)
# demo-restore too: a restore into an unversioned bucket needs --allow-overwrite.
for name in ("demo-app", "demo-vault", "demo-restore"):
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
for i in range(300):
    s3.put_object(Bucket="demo-app", Key=f"{['config', 'images', 'orders'][i % 3]}/item {i:03d}.json", Body=f"v1 of {i}".encode())
PY
cat >"$LOCAL_DIR/demo-policy.yaml" <<'YAML'
name: demo-app
source: {bucket: demo-app, prefix: ""}
destination: {bucket: demo-vault, prefix: "backups/demo-app/"}
schedule: "cron(0 2 * * ? *)"
timeZone: Europe/Paris
retention: {keepLast: 30, keepDays: 30}
deletes: record
maxDeletes: 100
versions: current
continuous: true
YAML
"$BATCHOPS" backup policy put "$LOCAL_DIR/demo-policy.yaml" >/dev/null
"$BATCHOPS" backup policy list

log "backup: first run (full)"
run_backup
FIRST_SNAPSHOT="$("$BATCHOPS" backup snapshots demo-app --json | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')"

log "backup: changing the source (10 overwritten, 5 added, 3 deleted)"
"$VENV/bin/python" - <<'PY'
import boto3
s3 = boto3.client("s3")
for i in range(0, 30, 3):
    s3.put_object(Bucket="demo-app", Key=f"config/item {i:03d}.json", Body=f"v2 of {i}".encode())
for i in range(5):
    s3.put_object(Bucket="demo-app", Key=f"orders/new {i}.json", Body=b"new")
for i in (1, 4, 7):
    s3.delete_object(Bucket="demo-app", Key=f"images/item {i:03d}.json")
PY
sleep 1
log "backup: incremental run (copies only the changes)"
run_backup
"$BATCHOPS" backup snapshots demo-app

log "backup: continuous mode: S3 event notifications of demo-app go to the events queue"
"$VENV/bin/python" - <<'PY'
import boto3
s3 = boto3.client("s3")
# moto's default account; on AWS this is the stack's EventsQueueArn output.
queue_arn = "arn:aws:sqs:us-east-1:123456789012:batchops-events"
s3.put_bucket_notification_configuration(Bucket="demo-app", NotificationConfiguration={
    "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]})
for i in range(3):
    s3.put_object(Bucket="demo-app", Key=f"live/note {i}.txt", Body=f"written live {i}".encode())
PY
start=$(date +%s.%N)
"$BATCHOPS" run --until-idle --max-seconds 300 2>>"$LOCAL_DIR/run.log"
end=$(date +%s.%N)
"$VENV/bin/python" - "$start" "$end" <<'PY'
import sys, boto3
s3 = boto3.client("s3")
keys = [o["Key"] for o in s3.list_objects_v2(Bucket="demo-vault", Prefix="backups/demo-app/live/").get("Contents", [])]
print(f"{len(keys)} objects in the backup {float(sys.argv[2]) - float(sys.argv[1]):.1f}s after their events were queued: {keys}")
assert len(keys) == 3, keys
PY
log "backup: the next run records the continuous copies without copying them again"
run_backup
"$BATCHOPS" backup snapshots demo-app

log "backup: restore config/ from the first snapshot ($FIRST_SNAPSHOT) to s3://demo-restore/config-as-of-first/"
"$BATCHOPS" backup restore demo-app --snapshot "$FIRST_SNAPSHOT" --prefix config/ --to s3://demo-restore/config-as-of-first/ --dry-run
RESTORE_ID="$("$BATCHOPS" backup restore demo-app --snapshot "$FIRST_SNAPSHOT" --prefix config/ --to s3://demo-restore/config-as-of-first/ | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["jobId"])')"
"$BATCHOPS" run --until-idle --concurrency 4 --max-seconds 600 2>>"$LOCAL_DIR/run.log"
"$BATCHOPS" job describe "$RESTORE_ID"
"$VENV/bin/python" - <<'PY'
import boto3
s3 = boto3.client("s3")
body = s3.get_object(Bucket="demo-restore", Key="config-as-of-first/config/item 000.json")["Body"].read().decode()
count = s3.list_objects_v2(Bucket="demo-restore").get("KeyCount", 0)
print(f"restored {count} objects; config/item 000.json is {body!r} (the first snapshot's version)")
assert body == "v1 of 0", body
PY
log "backup verify demo-app: every version the newest and the first snapshot reference is in demo-vault"
# Exits 1 (and so ends the demo) if any backup version is missing or different.
"$BATCHOPS" backup verify demo-app
"$BATCHOPS" backup verify demo-app --snapshot "$FIRST_SNAPSHOT"

log "export: the latest snapshot of demo-app to another S3-compatible store (a second moto, its own credentials)"
other_store_start
EXPORT_SECRET="$("$VENV/bin/python" - "$BATCHOPS_TEST_OTHER_S3" <<'PY'
import json, sys, boto3
# The other store's credentials live in Secrets Manager (here moto's); never on the command line.
other = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="demo-other",
                     aws_secret_access_key="demo-other-secret", region_name="us-east-1")
other.create_bucket(Bucket="demo-export")
secret = boto3.client("secretsmanager").create_secret(
    Name="demo-export-store",
    SecretString=json.dumps({"accessKeyId": "demo-other", "secretAccessKey": "demo-other-secret"}))
print(secret["ARN"])
PY
)"
EXPORT_ID="$("$BATCHOPS" export create --policy demo-app --to s3://demo-export/demo-app-latest \
  --endpoint "$BATCHOPS_TEST_OTHER_S3" --region us-east-1 --path-style --secret "$EXPORT_SECRET" |
  "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["ExportId"])')"
"$BATCHOPS" run --until-idle --concurrency 4 --max-seconds 600 2>>"$LOCAL_DIR/run.log"
"$BATCHOPS" export describe "$EXPORT_ID" | tee "$LOCAL_DIR/demo-export.json"
"$VENV/bin/python" - "$LOCAL_DIR/demo-export.json" <<'PY'
import json, sys
described = json.load(open(sys.argv[1]))
summary = described["ProgressSummary"]
print(f"export {described['Status']}: {summary['NumberOfTasksSucceeded']} of {summary['TotalNumberOfTasks']} objects")
assert described["Status"] == "Success" and summary["NumberOfTasksFailed"] == 0, described
PY
log "export verify: every object the export manifest lists is at the destination, same size and MD5"
"$BATCHOPS" export verify "$EXPORT_ID"
log "demo complete: copy and tagging jobs verified, a LambdaInvoke job, three backup runs, continuous copies, one restore, backups verified, the latest snapshot exported and verified"
