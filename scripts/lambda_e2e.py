#!/usr/bin/env python3
"""End to end through the Lambda binaries only (no `batchops run`), against the local AWS stack.

This script plays the Lambda service: it runs the api, planner, worker, finalizer and events
binaries under the Runtime API emulator (scripts/lambda_emulator.py) and feeds them what AWS
would, as template.yaml wires them: API Gateway HTTP API (payload 2.0) requests to api, the
minute schedule to planner, and SQS event source mappings (plan queue -> planner, batch 1; work
queue -> worker, batch 10; finalize queue -> finalizer, batch 10; events queue -> events) that
delete a batch's messages except those named in `batchItemFailures`, and none when the
invocation fails. The schedule is compressed to a tick every couple of seconds.

Expects the table, queues and control bucket to exist (`batchops local init`) and the AWS_*
and BATCHOPS_* variables the binaries read to be set. Prints `lambda-e2e: N passed, M failed`.
"""

import argparse
import base64
import datetime
import json
import os
import sys
import time
import traceback
import urllib.parse
import uuid

import boto3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lambda_emulator import Function  # noqa: E402

REGION = os.environ.get("AWS_REGION", "us-east-1")
ACCOUNT = os.environ.get("BATCHOPS_ACCOUNT_ID", "000000000000")
# Timeouts and batch sizes as in template.yaml.
FUNCTIONS = {"api": 30, "planner": 900, "worker": 300, "finalizer": 120, "events": 120}
SOURCE, DESTINATION, REPORTS = "e2e-source", "e2e-destination", "e2e-reports"
APP, VAULT = "e2e-app", "e2e-vault"
TERMINAL = {"Complete", "Failed", "Cancelled"}


def log(message: str) -> None:
    print(f"lambda-e2e: {message}", flush=True)


def queue_name(variable: str, default: str) -> str:
    return os.environ.get(variable) or default


class LambdaService:
    """The parts of the Lambda service the functions see: invocations and SQS polling."""

    def __init__(self, bin_dir: str, log_dir: str):
        self.sqs = boto3.client("sqs")
        self.functions = {
            name: Function(name, os.path.join(bin_dir, name), timeout, 1024,
                           log_path=os.path.join(log_dir, f"{name}.log"))
            for name, timeout in FUNCTIONS.items()
        }
        self.invocations = {name: 0 for name in FUNCTIONS}

    def start(self):
        for function in self.functions.values():
            function.start()

    def stop(self):
        for function in self.functions.values():
            function.stop()

    def invoke(self, name: str, event) -> tuple:
        self.invocations[name] += 1
        return self.functions[name].invoke(event)

    # -- API Gateway HTTP API -------------------------------------------------------------------
    def http(self, method: str, path: str, body=None, query=None) -> tuple:
        now = datetime.datetime.now(datetime.timezone.utc)
        event = {
            "version": "2.0", "routeKey": "$default", "rawPath": path,
            "rawQueryString": urllib.parse.urlencode(query or {}),
            "headers": {"content-type": "application/json", "host": "api.local"},
            "requestContext": {
                "accountId": ACCOUNT, "apiId": "local", "domainName": "api.local", "domainPrefix": "api",
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                         "sourceIp": "127.0.0.1", "userAgent": "lambda-e2e"},
                "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"), "timeEpoch": int(now.timestamp() * 1000),
            },
            "isBase64Encoded": False,
        }
        if query:
            event["queryStringParameters"] = query
        if body is not None:
            event["body"] = body if isinstance(body, str) else json.dumps(body)
        status, response = self.invoke("api", event)
        if status != "ok":
            raise AssertionError(f"api {method} {path}: function error {response}")
        return response["statusCode"], json.loads(response.get("body") or "null")

    # -- EventBridge schedule -------------------------------------------------------------------
    def schedule_tick(self, n: int):
        # The template's ScheduleV2 Input on even ticks, a classic EventBridge rule event on odd.
        if n % 2 == 0:
            event = {"source": "batchops.scheduler", "detail-type": "Scheduled Event"}
        else:
            event = {
                "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
                "source": "aws.events", "account": ACCOUNT,
                "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": REGION, "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/batchops-planner"],
                "detail": {},
            }
        status, payload = self.invoke("planner", event)
        if status != "ok":
            raise AssertionError(f"planner schedule tick: function error {payload}")
        return payload

    # -- SQS event source mapping ---------------------------------------------------------------
    def queue(self, name: str) -> tuple:
        url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    @staticmethod
    def record(message: dict, arn: str) -> dict:
        """An SQS message as Lambda's event source mapping hands it over (camelCase fields,
        binary attribute values in base64)."""
        def attribute(value: dict) -> dict:
            out = {"stringListValues": [], "binaryListValues": []}
            for field, item in value.items():
                if isinstance(item, bytes):
                    item = base64.b64encode(item).decode()
                elif isinstance(item, list):
                    item = [base64.b64encode(i).decode() if isinstance(i, bytes) else i for i in item]
                out[field[0].lower() + field[1:]] = item
            return out

        return {
            "messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"], "attributes": message.get("Attributes", {}),
            "messageAttributes": {
                name: attribute(value) for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message.get("MD5OfBody", ""), "eventSource": "aws:sqs",
            "eventSourceARN": arn, "awsRegion": REGION,
        }

    def poll(self, queue: tuple, function: str, batch_size: int, extra_records=()) -> dict:
        """One event source mapping poll: receive up to a batch, invoke, delete what succeeded.
        Returns {"messages": n, "failures": [ids]} (no invocation when the queue is empty)."""
        url, arn = queue
        messages = []
        while len(messages) < batch_size:
            got = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=min(10, batch_size - len(messages)),
                WaitTimeSeconds=0, AttributeNames=["All"], MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not got:
                break
            messages += got
        if not messages:
            return {"messages": 0, "failures": []}
        records = [self.record(m, arn) for m in messages] + list(extra_records)
        status, payload = self.invoke(function, {"Records": records})
        if status != "ok":
            # A failed invocation returns the whole batch to the queue (after its visibility timeout).
            log(f"{function} invocation failed: {payload}")
            return {"messages": len(messages), "failures": [r["messageId"] for r in records]}
        failures = [item.get("itemIdentifier") for item in (payload or {}).get("batchItemFailures", [])]
        ids = {r["messageId"] for r in records}
        if any(f not in ids for f in failures):
            # Lambda treats an unknown identifier as the whole batch failing.
            log(f"{function} named unknown batch items {failures}; the whole batch is retried")
            return {"messages": len(messages), "failures": sorted(ids)}
        done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(messages) if m["MessageId"] not in failures]
        for start in range(0, len(done), 10):
            self.sqs.delete_message_batch(QueueUrl=url, Entries=done[start:start + 10])
        return {"messages": len(messages), "failures": failures}


def seed(objects: int) -> list:
    """A versioned source whose manifest pins each object's first version; awkward keys."""
    s3 = boto3.client("s3")
    for bucket in (SOURCE, DESTINATION, REPORTS, APP, VAULT):
        s3.create_bucket(Bucket=bucket)
    for bucket in (SOURCE, DESTINATION, APP, VAULT):
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    keys = [f"data/{['plain', 'with space', 'plus+sign', 'ünïcödé'][i % 4]}/object {i:04d}.txt" for i in range(objects)]
    lines = []
    for key in keys:
        first = s3.put_object(Bucket=SOURCE, Key=key, Body=f"first version of {key}".encode())["VersionId"]
        s3.put_object(Bucket=SOURCE, Key=key, Body=b"overwritten later")
        lines.append(f"{SOURCE},{urllib.parse.quote(key, safe='/')},{first}")
    s3.put_object(Bucket=SOURCE, Key="manifests/e2e.csv", Body=("\n".join(lines) + "\n").encode())
    return keys


def job_document() -> dict:
    return {
        "AccountId": ACCOUNT, "ConfirmationRequired": False,
        "Operation": {"S3PutObjectCopy": {"TargetResource": f"arn:aws:s3:::{DESTINATION}",
                                          "TargetKeyPrefix": "copied", "MetadataDirective": "COPY"}},
        "Report": {"Bucket": f"arn:aws:s3:::{REPORTS}", "Prefix": "reports", "Format": "Report_CSV_20180820",
                   "Enabled": True, "ReportScope": "AllTasks"},
        "ClientRequestToken": f"lambda-e2e-{uuid.uuid4()}",
        "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key", "VersionId"]},
                     "Location": {"ObjectArn": f"arn:aws:s3:::{SOURCE}/manifests/e2e.csv"}},
        "Description": "lambda-e2e: copy through the Lambda binaries", "Priority": 10,
        "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/batchops-e2e",
    }


class E2E:
    def __init__(self, service: LambdaService, objects: int, time_limit: float, tick: float):
        self.service = service
        self.objects = objects
        self.time_limit = time_limit
        self.tick = tick
        self.s3 = boto3.client("s3")
        self.plan = service.queue(queue_name("BATCHOPS_PLAN_QUEUE", "batchops-plan"))
        self.work = service.queue(queue_name("BATCHOPS_WORK_QUEUE", "batchops-work"))
        self.finalize = service.queue(queue_name("BATCHOPS_FINALIZE_QUEUE", "batchops-finalize"))
        self.events = service.queue(queue_name("BATCHOPS_EVENTS_QUEUE", "batchops-events"))
        self.keys = []
        self.job_id = None
        self.job = None
        self.bad_body_checked = False

    def check_api_creates_job(self):
        self.keys = seed(self.objects)
        status, body = self.service.http("POST", "/jobs", job_document())
        assert status == 200 and body.get("JobId"), f"POST /jobs answered {status} {body}"
        self.job_id = body["JobId"]
        status, body = self.service.http("GET", f"/jobs/{self.job_id}")
        assert status == 200 and body["Job"]["JobId"] == self.job_id, f"GET /jobs/{self.job_id}: {status} {body}"
        first_status = body["Job"]["Status"]
        status, body = self.service.http("GET", "/jobs/no-such-job")
        assert status == 404 and body.get("Code") == "NoSuchJob", f"GET /jobs/no-such-job: {status} {body}"
        log(f"api created job {self.job_id} ({self.objects} objects), status {first_status}")

    def bad_record(self) -> dict:
        return {
            "messageId": f"bad-{uuid.uuid4()}", "receiptHandle": "not-a-real-handle",
            "body": "{not a chunk pointer", "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
            "eventSourceARN": self.work[1], "awsRegion": REGION,
        }

    def check_job_completes_through_binaries(self):
        assert self.job_id, "no job was created"
        service = self.service
        end = time.time() + self.time_limit
        next_tick, ticks = 0.0, 0
        status = None
        while time.time() < end:
            if time.time() >= next_tick:
                swept = service.schedule_tick(ticks)
                assert isinstance(swept, dict) and "jobsSeen" in swept, f"planner schedule tick answered {swept}"
                ticks += 1
                next_tick = time.time() + self.tick
            moved = service.poll(self.plan, "planner", 1)["messages"]
            extra = [] if self.bad_body_checked else [self.bad_record()]
            result = service.poll(self.work, "worker", 10, extra)
            if result["messages"] and extra:
                # A bad body fails alone: exactly its id comes back, the real pointers succeed.
                assert result["failures"] == [extra[0]["messageId"]], (
                    f"worker batch with one bad body answered batchItemFailures {result['failures']}, "
                    f"expected only {extra[0]['messageId']}")
                self.bad_body_checked = True
                log(f"worker: a batch of {result['messages']} pointers + 1 bad body failed only the bad body")
            moved += result["messages"]
            moved += service.poll(self.finalize, "finalizer", 10)["messages"]
            code, body = service.http("GET", f"/jobs/{self.job_id}")
            assert code == 200, f"GET /jobs/{self.job_id}: {code} {body}"
            status = body["Job"]["Status"]
            if status in TERMINAL:
                self.job = body["Job"]
                break
            if not moved:
                time.sleep(0.2)
        assert status == "Complete", f"job {self.job_id} is {status} after {self.time_limit}s: {self.job}"
        assert self.bad_body_checked, "the worker was never handed a batch"
        log(f"job {self.job_id} Complete after {ticks} schedule ticks; invocations {service.invocations}")

    def check_counts_objects_and_report(self):
        assert self.job, "the job did not complete"
        progress = self.job["ProgressSummary"]
        n = self.objects
        assert (progress["TotalNumberOfTasks"], progress["NumberOfTasksSucceeded"], progress["NumberOfTasksFailed"]) \
            == (n, n, 0), f"ProgressSummary {progress}, expected {n} tasks all succeeded"
        for key in self.keys:
            body = self.s3.get_object(Bucket=DESTINATION, Key=f"copied/{key}")["Body"].read().decode()
            assert body == f"first version of {key}", f"s3://{DESTINATION}/copied/{key} holds {body!r}"
        manifest_key = f"reports/job-{self.job_id}/manifest.json"
        manifest = json.loads(self.s3.get_object(Bucket=REPORTS, Key=manifest_key)["Body"].read())
        assert manifest["Format"] == "Report_CSV_20180820", manifest
        rows = []
        for result in manifest["Results"]:
            text = self.s3.get_object(Bucket=result["Bucket"], Key=result["Key"])["Body"].read().decode()
            rows += [line for line in text.splitlines() if line]
        assert len(rows) == n, f"report lists {len(rows)} tasks, expected {n}"
        assert all(",succeeded," in row for row in rows), [r for r in rows if ",succeeded," not in r][:3]
        reported = sorted(urllib.parse.unquote_plus(row.split(",")[1]) for row in rows)
        assert reported == sorted(self.keys), "the report's keys differ from the manifest's"
        log(f"{n} objects copied (first versions), s3://{REPORTS}/{manifest_key} lists {len(rows)} tasks")

    def check_events_function_copies_continuously(self):
        service = self.service
        policy = {"name": APP, "source": {"bucket": APP, "prefix": ""},
                  "destination": {"bucket": VAULT, "prefix": f"backups/{APP}/"}, "continuous": True}
        code, body = service.http("PUT", f"/backup-policies/{APP}", policy)
        assert code == 200, f"PUT /backup-policies/{APP}: {code} {body}"
        account = self.events[1].split(":")[4]
        self.s3.put_bucket_notification_configuration(Bucket=APP, NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": self.events[1],
                                     "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]})
        keys = [f"live/note {i}.txt" for i in range(3)]
        for key in keys:
            self.s3.put_object(Bucket=APP, Key=key, Body=f"written live: {key}".encode())
        bad = dict(self.bad_record(), body="not an S3 event", eventSourceARN=self.events[1])
        bad_checked = False
        end = time.time() + 60
        found = []
        while time.time() < end:
            result = service.poll(self.events, "events", 100, [] if bad_checked else [bad])
            if result["messages"] and not bad_checked:
                assert result["failures"] == [bad["messageId"]], (
                    f"events batch with one bad body answered batchItemFailures {result['failures']}")
                bad_checked = True
            listing = self.s3.list_objects_v2(Bucket=VAULT, Prefix=f"backups/{APP}/live/")
            found = sorted(o["Key"] for o in listing.get("Contents", []))
            if len(found) == len(keys):
                break
            time.sleep(0.3)
        assert found == sorted(f"backups/{APP}/{k}" for k in keys), f"vault holds {found} (account {account})"
        assert bad_checked, "the events function was never handed a batch"
        for key in keys:
            body = self.s3.get_object(Bucket=VAULT, Key=f"backups/{APP}/{key}")["Body"].read().decode()
            assert body == f"written live: {key}", body
        log(f"events: {len(keys)} objects copied into s3://{VAULT}/backups/{APP}/ from S3 notifications")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", required=True, help="directory holding api, planner, worker, finalizer, events")
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--objects", type=int, default=120)
    parser.add_argument("--time-limit", type=float, default=90.0, help="seconds for the job to complete")
    parser.add_argument("--tick", type=float, default=2.0, help="seconds between schedule ticks")
    args = parser.parse_args()
    os.makedirs(args.log_dir, exist_ok=True)

    service = LambdaService(args.bin_dir, args.log_dir)
    passed = failed = 0
    started = time.time()
    try:
        service.start()
        e2e = E2E(service, args.objects, args.time_limit, args.tick)
        checks = [e2e.check_api_creates_job, e2e.check_job_completes_through_binaries,
                  e2e.check_counts_objects_and_report, e2e.check_events_function_copies_continuously]
        for check in checks:
            name = check.__name__.removeprefix("check_")
            try:
                check()
                passed += 1
                log(f"ok   {name}")
            except Exception:  # every failure is reported by name, then the run goes on
                failed += 1
                log(f"FAIL {name}")
                traceback.print_exc()
    finally:
        service.stop()
    if failed:
        log(f"function logs in {args.log_dir}/")
    log(f"{time.time() - started:.1f}s")
    print(f"lambda-e2e: {passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
