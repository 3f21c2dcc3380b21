"""The chaos run's seeding and verification (scripts/chaos.sh), with boto3 straight against moto.

  seed     a versioned source bucket of N objects (varied sizes, awkward keys, a few multipart
           sized), each pinned by the version first written; a third are overwritten afterwards
           and some get a delete marker, so copying anything but the pinned version shows. Writes
           the CSV manifest (Bucket,Key,VersionId) and a state file with every task's MD5.
  job      a CreateJob document: Copy to <destination>/<scenario>/ (or, --operation tagging,
           S3PutObjectTagging of each pinned version with chaos=<scenario>), report AllTasks.
  verify   checks one scenario's job: status Complete, counters == report rows == manifest lines,
           every task exactly once in the report, every copy byte-equal to its pinned version
           (tagging: every pinned version carries the job's tag).
           Writes one table row (JSON); prints what is wrong.
  table    prints the rows as a Markdown table; exits 1 if any row failed.
"""

import argparse
import collections
import concurrent.futures
import hashlib
import json
import random
import sys
import urllib.parse

AWKWARD = ["with space", "plus+sign", "percent%25", "ünïcödé", "日本語", "emoji 🎉", "a/b/c/d/e/f/deep", "comma,quote\"", "tilde~&=?#"]
MANIFEST_KEY = "manifests/chaos.csv"


def s3_client():
    import boto3
    import botocore.config

    return boto3.client("s3", config=botocore.config.Config(max_pool_connections=32, retries={"mode": "standard", "max_attempts": 5}))


def seed(args):
    rng = random.Random(args.seed)
    s3 = s3_client()
    for bucket in (args.source, args.destination, args.reports):
        s3.create_bucket(Bucket=bucket)
    for bucket in (args.source, args.destination):
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    plans = []
    for i in range(args.objects):
        if i % 5 == 0:
            key = f"{AWKWARD[(i // 5) % len(AWKWARD)]}/object {i:05d}.bin"
        else:
            key = f"data/{i % 7}/object-{i:05d}.bin"
        roll = rng.random()
        size = 0 if roll < 0.03 else rng.randint(1, 1024) if roll < 0.6 else rng.randint(1025, 64 * 1024) if roll < 0.97 else rng.randint(64 * 1024, 512 * 1024)
        plans.append((key, size, rng.random() < 0.34, i % 25 == 7, rng.getrandbits(64)))
    for j in range(args.large):
        plans.append((f"large/blob {j}.bin", args.large_bytes + j, j % 2 == 0, False, rng.getrandbits(64)))

    def body(size, salt):
        return random.Random(salt).randbytes(size)

    def write(plan):
        key, size, overwrite, delete, salt = plan
        data = body(size, salt)
        version = s3.put_object(Bucket=args.source, Key=key, Body=data)["VersionId"]
        if overwrite:  # what is latest now differs from what the manifest pins
            s3.put_object(Bucket=args.source, Key=key, Body=body(size // 2 + 3, salt + 1))
        if delete:  # a delete marker on top: only the pinned version can still be copied
            s3.delete_object(Bucket=args.source, Key=key)
        return {"key": key, "version": version, "size": size, "md5": hashlib.md5(data).hexdigest()}

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        tasks = list(pool.map(write, plans))
    lines = [f"{args.source},{urllib.parse.quote(t['key'], safe='/')},{t['version']}" for t in tasks]
    s3.put_object(Bucket=args.source, Key=MANIFEST_KEY, Body=("\n".join(lines) + "\n").encode())
    state = {"source": args.source, "destination": args.destination, "reports": args.reports, "manifest_key": MANIFEST_KEY, "tasks": tasks}
    with open(args.state, "w") as out:
        json.dump(state, out)
    big = sum(1 for t in tasks if t["size"] >= args.large_bytes)
    print(f"seeded s3://{args.source}: {len(tasks)} objects ({big} multipart-sized, {sum(t['size'] for t in tasks)} bytes), manifest s3://{args.source}/{MANIFEST_KEY}")


def tag_set(scenario):
    """The tags a tagging scenario's job puts on every pinned version."""
    return [{"Key": "chaos", "Value": scenario}]


def job(args):
    state = json.load(open(args.state))
    if args.operation == "tagging":
        operation = {"S3PutObjectTagging": {"TagSet": tag_set(args.scenario)}}
    else:
        operation = {"S3PutObjectCopy": {"TargetResource": f"arn:aws:s3:::{state['destination']}", "TargetKeyPrefix": f"{args.scenario}/", "MetadataDirective": "COPY"}}
    document = {
        "AccountId": "000000000000",
        "ConfirmationRequired": False,
        "Operation": operation,
        "Report": {"Bucket": f"arn:aws:s3:::{state['reports']}", "Prefix": f"reports/{args.scenario}", "Format": "Report_CSV_20180820", "Enabled": True, "ReportScope": "AllTasks"},
        "ClientRequestToken": f"chaos-{args.scenario}-{args.token}",
        "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key", "VersionId"]}, "Location": {"ObjectArn": f"arn:aws:s3:::{state['source']}/{state['manifest_key']}"}},
        "Description": f"chaos run: {args.scenario}",
        "Priority": 10,
        # In moto's default account (123456789012), where the checks' credentials act: moto keeps
        # object tags per account, and a job's requests act in its assumed role's account.
        "RoleArn": "arn:aws:iam::123456789012:role/batchops-chaos",
    }
    with open(args.out, "w") as out:
        json.dump(document, out, indent=1)


def load_json(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        return {"_error": f"{what} ({path}): {err}"}


def verify(args):
    import csv
    import io

    state = json.load(open(args.state))
    s3 = s3_client()
    tasks = state["tasks"]
    expected = len(tasks)
    problems = []
    describe = load_json(args.describe, "batchops job describe --json")
    report = load_json(args.report, "batchops job report --json")
    faults = load_json(args.faults, "fault proxy counters") if args.faults else {}
    for doc in (describe, report, faults):
        if "_error" in doc:
            problems.append(doc["_error"])

    job_doc = describe.get("Job", {})
    status = job_doc.get("Status", "?")
    progress = job_doc.get("ProgressSummary", {})
    counted = progress.get("TotalNumberOfTasks")
    succeeded = progress.get("NumberOfTasksSucceeded")
    failed = progress.get("NumberOfTasksFailed")
    if status != "Complete":
        problems.append(f"job status {status}, expected Complete ({job_doc.get('FailureReasons') or job_doc.get('StatusUpdateReason') or ''})")
    if (counted, succeeded, failed) != (expected, expected, 0):
        problems.append(f"counters total={counted} succeeded={succeeded} failed={failed}, expected {expected}/{expected}/0")
    if report and "_error" not in report:
        if not report.get("Consistent"):
            problems.append(f"batchops job report: not consistent: {json.dumps(report)}")
        if (report.get("SucceededRows"), report.get("FailedRows")) != (expected, 0):
            problems.append(f"report rows succeeded={report.get('SucceededRows')} failed={report.get('FailedRows')}, expected {expected}/0")

    # The report read back here, independently of batchops: every (key, version) exactly once.
    wanted = collections.Counter((t["key"], t["version"]) for t in tasks)
    seen = collections.Counter()
    reported = 0
    bad_rows = []
    job_id = job_doc.get("JobId", args.job_id)
    manifest_key = f"reports/{args.scenario}/job-{job_id}/manifest.json"
    unreadable = []
    try:
        results = json.loads(s3.get_object(Bucket=state["reports"], Key=manifest_key)["Body"].read()).get("Results", [])
    except Exception as err:  # noqa: BLE001 - any failure to read the report is a finding
        problems.append(f"reading s3://{state['reports']}/{manifest_key}: {err}")
        results = []
    for result in results:
        bucket = result["Bucket"].split(":::")[-1]
        try:
            text = s3.get_object(Bucket=bucket, Key=result["Key"])["Body"].read().decode("utf-8")
        except Exception as err:  # noqa: BLE001 - a listed shard that cannot be read is a finding
            unreadable.append(f"s3://{bucket}/{result['Key']}: {err}")
            continue
        for row in csv.reader(io.StringIO(text)):
            if not row:
                continue
            reported += 1
            if len(row) != 7 or row[3] != "succeeded":
                bad_rows.append(",".join(row))
            seen[(urllib.parse.unquote_plus(row[1]), row[2])] += 1
    if unreadable:
        problems.append(f"{len(unreadable)} of {len(results)} result shards listed in {manifest_key} cannot be read, e.g. {unreadable[:2]}")
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    missing = sum(1 for task in wanted if task not in seen)
    unexpected = sum(n for task, n in seen.items() if task not in wanted)
    if reported != expected:
        problems.append(f"report has {reported} rows, manifest {expected} lines")
    if duplicates:
        problems.append(f"{duplicates} tasks reported more than once, e.g. {[t for t, n in seen.items() if n > 1][:3]}")
    if missing:
        problems.append(f"{missing} tasks missing from the report, e.g. {[t for t in wanted if t not in seen][:3]}")
    if unexpected:
        problems.append(f"{unexpected} report rows name no manifest task")
    if bad_rows:
        problems.append(f"{len(bad_rows)} report rows not succeeded, e.g. {bad_rows[:3]}")

    # Every copy byte-equal to the version the manifest pinned (latest at the destination).
    prefix = f"{args.scenario}/"

    def check_tags(task):
        try:
            tags = s3.get_object_tagging(Bucket=state["source"], Key=task["key"], VersionId=task["version"])["TagSet"]
        except Exception as err:  # noqa: BLE001 - an unreadable tag set is a finding
            return f"{task['key']} version {task['version']}: {err}"
        if tags != tag_set(args.scenario):
            return f"{task['key']} version {task['version']}: tags {tags}, expected {tag_set(args.scenario)}"
        return None

    def check(task):
        key = prefix + task["key"]
        try:
            data = s3.get_object(Bucket=state["destination"], Key=key)["Body"].read()
        except Exception as err:  # noqa: BLE001 - a missing copy is a wrong copy
            return f"{key}: {err}"
        if hashlib.md5(data).hexdigest() != task["md5"]:
            return f"{key}: {len(data)} bytes, md5 {hashlib.md5(data).hexdigest()}; pinned version has {task['size']} bytes, md5 {task['md5']}"
        return None

    tagging = args.operation == "tagging"
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        wrong = [w for w in pool.map(check_tags if tagging else check, tasks) if w]
    if wrong and tagging:
        problems.append(f"{len(wrong)} pinned source versions lack the job's tags, e.g. {wrong[:3]}")
    elif wrong:
        problems.append(f"{len(wrong)} destination objects differ from their pinned source version, e.g. {wrong[:3]}")

    # Copies written more than once (allowed: a redelivered task copies again; counted once).
    versions = expected
    if not tagging:
        versions = 0
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=state["destination"], Prefix=prefix):
            versions += len(page.get("Versions", []))

    row = {
        "scenario": args.scenario,
        "job": job_id,
        "status": status,
        "faults": {k: v for k, v in faults.get("faults", {}).items() if v},
        "requests": faults.get("requests", {}),
        "expected": expected,
        "counted": counted,
        "reported": reported,
        "duplicates": duplicates,
        "missing": missing,
        "wrong_bytes": len(wrong),
        "recopies": max(0, versions - expected),
        "kills": args.kills,
        "wall": args.wall,
        "ok": not problems,
        "problems": problems,
    }
    with open(args.out, "w") as out:
        json.dump(row, out, indent=1)
    for problem in problems:
        print(f"FAIL {args.scenario}: {problem}", file=sys.stderr)
    return 0


SHORT = {
    "s3_slowdown_503": "S3 503",
    "s3_internal_500": "S3 500",
    "cut_s3": "S3 cut",
    "ddb_throttle_400": "DDB 400",
    "ddb_conflict_400": "DDB conflict",
    "cut_dynamodb": "DDB cut",
    "sqs_500": "SQS 500",
    "cut_sqs": "SQS cut",
    "work_duplicates": "dup msgs",
}


def table(args):
    rows = [load_json(path, "row") for path in args.rows]
    print("| scenario | faults injected | tasks expected / counted / reported | duplicates | missing | wrong bytes | re-copies | kills | wall s | result |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    failed = False
    for row in rows:
        if "_error" in row:
            print(f"| ? | | | | | | | | | FAIL: {row['_error']} |")
            failed = True
            continue
        faults = ", ".join(f"{SHORT.get(k, k)} {v}" for k, v in row["faults"].items()) or "none"
        result = "ok" if row["ok"] else f"FAIL ({len(row['problems'])})"
        failed |= not row["ok"]
        print(
            f"| {row['scenario']} | {faults} | {row['expected']} / {row['counted']} / {row['reported']} | {row['duplicates']} | {row['missing']} | "
            f"{row['wrong_bytes']} | {row['recopies']} | {row['kills']} | {row['wall']} | {result} |"
        )
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("seed")
    p.add_argument("--state", required=True)
    p.add_argument("--source", default="chaos-source")
    p.add_argument("--destination", default="chaos-destination")
    p.add_argument("--reports", default="chaos-reports")
    p.add_argument("--objects", type=int, required=True)
    p.add_argument("--large", type=int, default=2)
    p.add_argument("--large-bytes", type=int, default=11 * 1024 * 1024 + 17)
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=seed)
    p = sub.add_parser("job")
    p.add_argument("--state", required=True)
    p.add_argument("--scenario", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--operation", choices=["copy", "tagging"], default="copy")
    p.set_defaults(func=job)
    p = sub.add_parser("verify")
    p.add_argument("--state", required=True)
    p.add_argument("--scenario", required=True)
    p.add_argument("--job-id", required=True)
    p.add_argument("--describe", required=True)
    p.add_argument("--report", required=True)
    p.add_argument("--faults")
    p.add_argument("--kills", type=int, default=0)
    p.add_argument("--wall", default="?")
    p.add_argument("--out", required=True)
    p.add_argument("--operation", choices=["copy", "tagging"], default="copy")
    p.set_defaults(func=verify)
    p = sub.add_parser("table")
    p.add_argument("rows", nargs="+")
    p.set_defaults(func=table)
    args = parser.parse_args()
    sys.exit(args.func(args) or 0)


if __name__ == "__main__":
    main()
