"""Drives `batchops serve` with boto3's s3control client and the AWS CLI, unchanged (run by the
test `s3control::boto3_and_the_aws_cli_drive_jobs_on_serve`, with the project's venv).

Both clients call `<account-id>.<endpoint host>` (botocore's S3 Control endpoint rules put the
account in front of the host), so names under `.127.0.0.1` are made to resolve to loopback in
this process (and in the `aws` processes it starts: `python this-file aws ...`).

Environment: SERVE_ENDPOINT (http://127.0.0.1:PORT), ACCOUNT_ID, SERVE_ACCESS_KEY_ID,
SERVE_SECRET_ACCESS_KEY, BOTO3_JOB and CLI_JOB (CreateJob documents, JSON). Prints one JSON
object: what the clients got back, for the test to compare with the JSON routes.
"""
import json
import os
import socket
import subprocess
import sys
import time

_getaddrinfo = socket.getaddrinfo


def _loopback_getaddrinfo(host, *args, **kwargs):
    if isinstance(host, str) and host.endswith(".127.0.0.1"):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_getaddrinfo

if len(sys.argv) > 1 and sys.argv[1] == "aws":
    from awscli.clidriver import main

    sys.argv = sys.argv[1:]
    sys.exit(main())

import boto3  # noqa: E402  (after the resolver patch, which it needs)
from botocore.exceptions import ClientError  # noqa: E402

ENDPOINT = os.environ["SERVE_ENDPOINT"]
ACCOUNT = os.environ["ACCOUNT_ID"]
KEY_ID = os.environ["SERVE_ACCESS_KEY_ID"]
SECRET = os.environ["SERVE_SECRET_ACCESS_KEY"]


def client(secret=SECRET):
    return boto3.client(
        "s3control",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=secret,
    )


def aws(*args):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET,
               AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL="")
    env.pop("AWS_ENDPOINT_URL")
    out = subprocess.run(
        [sys.executable, __file__, "aws", "s3control", *args, "--endpoint-url", ENDPOINT,
         "--account-id", ACCOUNT, "--output", "json"],
        env=env, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise SystemExit(f"aws s3control {' '.join(args)} failed: {out.stderr}")
    return json.loads(out.stdout) if out.stdout.strip() else {}


def wait_for(describe, statuses, what):
    deadline = time.time() + 60
    while True:
        job = describe()
        if job["Status"] in statuses:
            return job
        if time.time() > deadline:
            raise SystemExit(f"{what}: still {job['Status']}, expected one of {statuses}")
        time.sleep(0.2)


def error_code(call):
    try:
        call()
    except ClientError as err:
        error = err.response["Error"]
        return [error["Code"], err.response["ResponseMetadata"]["HTTPStatusCode"], error["Message"]]
    raise SystemExit("the call was expected to fail")


def plain(value):
    """datetimes as ISO 8601 text, for JSON."""
    return json.loads(json.dumps(value, default=lambda v: v.isoformat()))


def main():
    s3control = client()
    out = {}

    # boto3: create (confirmation required), describe, re-prioritise, tag, list, confirm.
    document = json.loads(os.environ["BOTO3_JOB"])
    created = s3control.create_job(AccountId=ACCOUNT, **document)
    job = created["JobId"]
    out["boto3_job"] = job
    describe = lambda: s3control.describe_job(AccountId=ACCOUNT, JobId=job)["Job"]  # noqa: E731
    out["suspended"] = plain(wait_for(describe, {"Suspended"}, "boto3 job before confirming"))
    out["priority"] = s3control.update_job_priority(AccountId=ACCOUNT, JobId=job, Priority=42)["Priority"]
    out["other_account"] = error_code(lambda: s3control.describe_job(AccountId="111122223333", JobId=job))
    tags = [{"Key": "team", "Value": "storage + backup"}, {"Key": "ticket", "Value": "14"}]
    s3control.put_job_tagging(AccountId=ACCOUNT, JobId=job, Tags=tags)
    out["tags"] = s3control.get_job_tagging(AccountId=ACCOUNT, JobId=job)["Tags"]
    s3control.delete_job_tagging(AccountId=ACCOUNT, JobId=job)
    out["tags_after_delete"] = s3control.get_job_tagging(AccountId=ACCOUNT, JobId=job)["Tags"]
    listed = s3control.list_jobs(AccountId=ACCOUNT, JobStatuses=["Suspended", "Active"])
    out["listed_suspended"] = [j["JobId"] for j in listed["Jobs"]]
    confirmed = s3control.update_job_status(
        AccountId=ACCOUNT, JobId=job, RequestedJobStatus="Ready", StatusUpdateReason="checked")
    out["confirmed"] = {k: confirmed.get(k) for k in ("JobId", "Status", "StatusUpdateReason")}
    out["complete"] = plain(wait_for(describe, {"Complete", "Failed"}, "boto3 job after confirming"))

    # The AWS CLI: create from a file, describe, list with paging, cancel.
    with open(os.environ["CLI_JOB_FILE"], "w") as f:
        f.write(os.environ["CLI_JOB"])
    cli_job = aws("create-job", "--cli-input-json", "file://" + os.environ["CLI_JOB_FILE"])["JobId"]
    out["cli_job"] = cli_job
    cli_describe = lambda: aws("describe-job", "--job-id", cli_job)["Job"]  # noqa: E731
    out["cli_suspended"] = wait_for(cli_describe, {"Suspended"}, "CLI job before cancelling")
    out["cli_priority"] = aws("update-job-priority", "--job-id", cli_job, "--priority", "7")["Priority"]
    out["cli_cancel"] = aws("update-job-status", "--job-id", cli_job,
                            "--requested-job-status", "Cancelled",
                            "--status-update-reason", "not needed")
    out["cli_cancelled"] = wait_for(cli_describe, {"Cancelled"}, "CLI job after cancelling")
    # Pages of one, followed by NextToken (the CLI has no paginator for ListJobs).
    pages = s3control.list_jobs(AccountId=ACCOUNT, MaxResults=1)
    out["first_page"] = [j["JobId"] for j in pages["Jobs"]]
    out["first_page_has_next"] = "NextToken" in pages
    listed, token, pages = [], None, 0
    while True:
        page = aws("list-jobs", "--max-results", "1", *(["--next-token", token] if token else []))
        listed += [j["JobId"] for j in page["Jobs"]]
        pages += 1
        token = page.get("NextToken")
        if not token or pages > 5:
            break
    out["cli_listed"] = sorted(listed)
    out["cli_listed_cancelled"] = [
        j["JobId"] for j in aws("list-jobs", "--job-statuses", "Cancelled")["Jobs"]]

    # Errors, as the SDK raises them.
    out["missing_job"] = error_code(
        lambda: s3control.describe_job(AccountId=ACCOUNT, JobId="00000000-no-such-job"))
    out["confirm_complete"] = error_code(lambda: s3control.update_job_status(
        AccountId=ACCOUNT, JobId=job, RequestedJobStatus="Ready"))
    bad = dict(document, ClientRequestToken="bad-target")
    bad["Operation"] = {"S3PutObjectCopy": {"TargetResource": "not-an-arn"}}
    out["bad_target"] = error_code(lambda: s3control.create_job(AccountId=ACCOUNT, **bad))
    out["wrong_secret"] = error_code(
        lambda: client("not-the-secret").list_jobs(AccountId=ACCOUNT))
    print(json.dumps(out))


main()
