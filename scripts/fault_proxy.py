"""A fault-injecting HTTP proxy between batchops and moto (Python stdlib only).

Every request is forwarded to the upstream endpoint (the real moto, `--upstream` or
AWS_ENDPOINT_URL); at the configured rates, drawn from one seeded RNG, the proxy instead:

  s3_slowdown_503     answers an S3 request `503 SlowDown` (S3's XML error) without forwarding it
  s3_fail_complete    answers an S3 CompleteMultipartUpload (`POST ?uploadId=`) `500 InternalError`
                      without forwarding it (the upload stays open until someone aborts it)
  s3_internal_500     forwards an S3 request, then answers `500 InternalError` (S3 may have acted:
                      a CopyObject or PutObject that "failed" did happen, as on real S3)
  ddb_throttle_400    answers a DynamoDB call `400 ThrottlingException` (JSON 1.0) without
                      forwarding it (a throttled call does nothing)
  ddb_conflict_400    answers a TransactWriteItems `400 TransactionCanceledException` with a
                      `TransactionConflict` cancellation reason (as concurrent commits to one
                      counter shard get), without forwarding it
  sqs_500             answers an SQS call (AWS JSON 1.0, `X-Amz-Target: AmazonSQS.*`) with
                      `500 InternalError`; sends, deletes and visibility changes are forwarded
                      first (they may have happened), ReceiveMessage is not
  cut_<service>       forwards the request, sends the status line, headers and part of the body
                      (of the headers when there is no body), then closes the connection
  work_duplicates     forwards each SendMessage / SendMessageBatch to the work queue (told by
                      the last segment of the `QueueUrl` in the JSON body) twice, so every work
                      message is delivered twice; counted per message

ReceiveMessage responses are never cut or failed after forwarding: that would strand the received
messages for the queue's visibility timeout, which is what the chaos run's kill scenario does on
purpose. Requests with an `X-Amz-Target` of another service (EventBridge) pass untouched.

The service is told apart by `X-Amz-Target` (`DynamoDB_20120810.*`, `AmazonSQS.*`) and the
SigV4 credential scope (`.../sts/aws4_request`: STS, passed untouched); everything else is S3.
Every S3 request's signer is recorded per bucket (the first path segment; path-style addressing):
its method, the access key ID and the Region of its credential scope, so a test can prove which credentials
and which Region's client a request was sent with; and its `x-amz-expected-bucket-owner` header per bucket
("<method> <account or ->"). With `bucket_owners` set ({bucket: account}), an S3 request on such a bucket
whose expected-owner header names another account is answered `403 AccessDenied` without forwarding, as
S3 answers it (moto 5.2.5 ignores the header). With `refuse_roles` set ([role ARN, ...]), an STS
AssumeRole of such a role is answered `403 AccessDenied` in STS's XML error shape without forwarding
(moto's STS lets anyone assume any role). Control paths (no S3 bucket can be named `__faults`):

  GET  /__faults           {"faults": {kind: n}, "requests": {service: n}, "config": {...},
                           "signers": {bucket: {"<method> <access key ID> <region>": n}},
                           "owners": {bucket: {"<method> <expected owner or ->": n}}}
  POST /__faults/config    JSON object: rates (0..1: s3_slowdown, s3_fail_complete, s3_internal, ddb_throttle,
                           sqs_500, cut_s3, cut_dynamodb, cut_sqs, or cut for all three),
                           "seed", "work_queue" (the queue whose sends are doubled; "" none),
                           "no_cut" (a list of actions, e.g. ["TransactWriteItems"], never cut),
                           "bucket_owners" ({bucket: account ID}: the owners S3 would check),
                           "refuse_roles" ([role ARN]: AssumeRole of these is refused)
  POST /__faults/reset     zero the counters

The counters are also written to `--counts-file` (JSON) on SIGTERM/SIGINT. With threads, which
request draws which number depends on arrival order, so a seed fixes the rates' stream, not the
exact requests hit.
"""

import argparse
import http.client
import http.server
import json
import os
import random
import signal
import socket
import sys
import threading
import urllib.parse
import uuid

RATE_KEYS = ("s3_slowdown", "s3_fail_complete", "s3_internal", "ddb_throttle", "ddb_conflict", "sqs_500", "cut_s3", "cut_dynamodb", "cut_sqs")
# "cut" sets the three per-service cut rates at once.
CUT_KEYS = ("cut_s3", "cut_dynamodb", "cut_sqs")
FAULT_KINDS = (
    "s3_slowdown_503",
    "s3_fail_complete",
    "s3_internal_500",
    "ddb_throttle_400",
    "ddb_conflict_400",
    "sqs_500",
    "cut_s3",
    "cut_dynamodb",
    "cut_sqs",
    "work_duplicates",
    "owner_mismatch_403",
    "sts_refused_403",
)
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "content-length",
}
# SQS calls that change state: a 500 after forwarding is what a lost response looks like.
SQS_MUTATIONS = {
    "SendMessage",
    "SendMessageBatch",
    "DeleteMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
}


class State:
    def __init__(self, upstream, seed, rates, work_queue):
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname:
            raise SystemExit(f"fault_proxy: --upstream must be http://host:port, got {upstream!r}")
        self.upstream_host = parsed.hostname
        self.upstream_port = parsed.port or 80
        self.lock = threading.Lock()
        self.seed = seed
        self.rng = random.Random(seed)
        self.rates = dict(rates)
        self.work_queue = work_queue
        # Actions (X-Amz-Target suffix) whose forwarded responses are never cut: lets a run step
        # around a known defect on purpose, visibly (it is in the config /__faults reports).
        self.no_cut = set()
        self.faults = {kind: 0 for kind in FAULT_KINDS}
        self.requests = {"s3": 0, "dynamodb": 0, "sqs": 0, "sts": 0, "other": 0}
        self.signers = {}
        self.owners = {}
        self.bucket_owners = {}
        self.refuse_roles = set()

    def draw(self, rate_key):
        """True with the configured probability; one draw from the shared seeded stream."""
        with self.lock:
            rate = self.rates.get(rate_key, 0.0)
            return rate > 0 and self.rng.random() < rate

    def count(self, table, key, n=1):
        with self.lock:
            table[key] = table.get(key, 0) + n

    def snapshot(self):
        with self.lock:
            return {
                "faults": dict(self.faults),
                "requests": dict(self.requests),
                "signers": {bucket: dict(keys) for bucket, keys in self.signers.items()},
                "owners": {bucket: dict(seen) for bucket, seen in self.owners.items()},
                "config": {"seed": self.seed, "work_queue": self.work_queue, "no_cut": sorted(self.no_cut),
                           "bucket_owners": dict(self.bucket_owners), "refuse_roles": sorted(self.refuse_roles),
                           **self.rates},
            }

    def record_signer(self, bucket, signer):
        with self.lock:
            keys = self.signers.setdefault(bucket, {})
            keys[signer] = keys.get(signer, 0) + 1

    def record_owner(self, bucket, method, owner):
        """Records the request's expected owner; False when the bucket belongs to another account."""
        with self.lock:
            seen = self.owners.setdefault(bucket, {})
            key = f"{method} {owner or '-'}"
            seen[key] = seen.get(key, 0) + 1
            actual = self.bucket_owners.get(bucket)
            return not (owner and actual and owner != actual)

    def configure(self, changes):
        with self.lock:
            for key, value in changes.items():
                if key == "seed":
                    self.seed = int(value)
                    self.rng = random.Random(self.seed)
                elif key == "work_queue":
                    self.work_queue = str(value)
                elif key == "no_cut":
                    self.no_cut = {str(v) for v in value}
                elif key == "bucket_owners":
                    self.bucket_owners = {str(b): str(a) for b, a in dict(value).items()}
                elif key == "refuse_roles":
                    self.refuse_roles = {str(v) for v in value}
                elif key in RATE_KEYS or key == "cut":
                    rate = float(value)
                    if not 0 <= rate <= 1:
                        raise ValueError(f"rate {key}={value} is not within 0..1")
                    for name in CUT_KEYS if key == "cut" else (key,):
                        self.rates[name] = rate
                else:
                    raise ValueError(f"unknown setting {key!r} (known: seed, work_queue, no_cut, bucket_owners, refuse_roles, cut, {', '.join(RATE_KEYS)})")

    def reset(self):
        with self.lock:
            self.faults = {kind: 0 for kind in FAULT_KINDS}
            self.requests = {k: 0 for k in self.requests}


def sts_error(code, message):
    """An STS (AWS query protocol) error answer."""
    request_id = str(uuid.uuid4())
    return (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()


def s3_error(code, message):
    request_id = uuid.uuid4().hex[:16].upper()
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>fault-proxy</HostId></Error>"
    ).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fault-proxy"
    state: State = None  # set on the class before serving

    def log_message(self, format, *args):  # noqa: A002 - quiet: the SDK makes thousands of calls
        pass

    # Every method goes through one path.
    def do_GET(self):
        self.handle_any()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def handle_any(self):
        body = self.read_body()
        if self.path.startswith("/__faults"):
            return self.control(body)
        state = self.state
        target = self.headers.get("X-Amz-Target", "")
        scope = credential_scope(self.headers.get("Authorization", ""))
        if scope and scope[2] == "sts":
            service = "sts"
        elif target.startswith("DynamoDB_20120810."):
            service = "dynamodb"
        elif target.startswith("AmazonSQS."):
            service = "sqs"
        elif target:
            service = "other"
        else:
            service = "s3"
        action = target.split(".", 1)[1] if "." in target else ""
        state.count(state.requests, service)
        if service == "sts":
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            role = (form.get("RoleArn") or [""])[0]
            if form.get("Action") == ["AssumeRole"] and role in state.refuse_roles:
                state.count(state.faults, "sts_refused_403")
                message = (f"User: arn:aws:sts::000000000000:assumed-role/batchops/stack is not authorized to perform: "
                           f"sts:AssumeRole on resource: {role}")
                return self.reply(403, [("Content-Type", "text/xml")], sts_error("AccessDenied", message))
        if service == "s3" and scope:
            bucket = urllib.parse.urlsplit(self.path).path.lstrip("/").split("/", 1)[0]
            state.record_signer(urllib.parse.unquote(bucket), f"{self.command} {scope[0]} {scope[1]}")
            owner = self.headers.get("x-amz-expected-bucket-owner")
            if not state.record_owner(urllib.parse.unquote(bucket), self.command, owner):
                state.count(state.faults, "owner_mismatch_403")
                return self.reply(403, [("Content-Type", "application/xml")], s3_error("AccessDenied", "Access Denied"))

        if service == "s3" and state.draw("s3_slowdown"):
            state.count(state.faults, "s3_slowdown_503")
            return self.reply(503, [("Content-Type", "application/xml")], s3_error("SlowDown", "Please reduce your request rate."))
        if (service == "s3" and self.command == "POST" and "uploadId" in urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, keep_blank_values=True)
                and state.draw("s3_fail_complete")):
            state.count(state.faults, "s3_fail_complete")
            return self.reply(500, [("Content-Type", "application/xml")], s3_error("InternalError", "We encountered an internal error. Please try again."))
        if service == "dynamodb" and state.draw("ddb_throttle"):
            state.count(state.faults, "ddb_throttle_400")
            payload = {
                "__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                "message": "Rate of requests exceeds the allowed throughput (fault proxy).",
            }
            return self.reply(400, [("Content-Type", "application/x-amz-json-1.0")], json.dumps(payload).encode())
        if service == "dynamodb" and action == "TransactWriteItems" and state.draw("ddb_conflict"):
            state.count(state.faults, "ddb_conflict_400")
            try:
                items = len(json.loads(body or b"{}").get("TransactItems", []))
            except ValueError:
                items = 2
            reasons = [{"Code": "None"} for _ in range(max(items, 2))]
            reasons[1] = {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
            payload = {
                "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons "
                + "[" + ", ".join(r["Code"] for r in reasons) + "]",
                "CancellationReasons": reasons,
            }
            return self.reply(400, [("Content-Type", "application/x-amz-json-1.0")], json.dumps(payload).encode())
        if service == "sqs" and action not in SQS_MUTATIONS and state.draw("sqs_500"):
            state.count(state.faults, "sqs_500")
            return self.sqs_500()

        try:
            status, headers, payload = self.forward(body)
        except OSError as err:
            return self.reply(502, [("Content-Type", "text/plain")], f"fault proxy: upstream unreachable: {err}".encode())

        if service == "sqs" and action in ("SendMessage", "SendMessageBatch") and 200 <= status < 300:
            duplicated = self.work_messages(body, action)
            if duplicated:
                try:
                    self.forward(body)
                    state.count(state.faults, "work_duplicates", duplicated)
                except OSError:
                    pass

        if service == "s3" and state.draw("s3_internal"):
            state.count(state.faults, "s3_internal_500")
            return self.reply(500, [("Content-Type", "application/xml")], s3_error("InternalError", "We encountered an internal error. Please try again."))
        if service == "sqs" and action in SQS_MUTATIONS and state.draw("sqs_500"):
            state.count(state.faults, "sqs_500")
            return self.sqs_500()
        if service != "other" and action != "ReceiveMessage" and action not in state.no_cut and state.draw(f"cut_{service}"):
            state.count(state.faults, f"cut_{service}")
            return self.cut(status, headers, payload)
        return self.reply(status, headers, payload)

    def work_messages(self, body, action):
        """Messages this send puts on the work queue (0 when it is another queue)."""
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return 0
        queue = str(request.get("QueueUrl", "")).rstrip("/").rsplit("/", 1)[-1]
        if queue != self.state.work_queue:
            return 0
        return len(request.get("Entries", [])) if action == "SendMessageBatch" else 1

    def forward(self, body):
        state = self.state
        conn = http.client.HTTPConnection(state.upstream_host, state.upstream_port, timeout=300)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
            if self.command == "HEAD":
                length = resp.getheader("Content-Length")
                if length is not None:
                    out.append(("Content-Length", length))
            return resp.status, out, payload
        finally:
            conn.close()

    def sqs_500(self):
        payload = {"__type": "com.amazonaws.sqs#InternalError", "message": "Internal error (fault proxy)."}
        return self.reply(500, [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-query-error", "InternalError;Receiver")], json.dumps(payload).encode())

    def reply(self, status, headers, payload):
        self.send_response_only(status)
        for key, value in headers:
            self.send_header(key, value)
        if self.command != "HEAD" or not any(k.lower() == "content-length" for k, _ in headers):
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def cut(self, status, headers, payload):
        """Status line, headers and half the body (or part of the headers), then a closed socket."""
        self.close_connection = True
        if payload and self.command != "HEAD":
            self.send_response_only(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: max(1, len(payload) // 2)])
        else:
            self.wfile.write(f"HTTP/1.1 {status} OK\r\nContent-Type: appl".encode())
        self.wfile.flush()
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def control(self, body):
        state = self.state
        try:
            if self.command == "GET" and self.path.rstrip("/") == "/__faults":
                out = state.snapshot()
            elif self.command == "POST" and self.path == "/__faults/config":
                state.configure(json.loads(body or b"{}"))
                out = state.snapshot()
            elif self.command == "POST" and self.path == "/__faults/reset":
                state.reset()
                out = state.snapshot()
            else:
                return self.reply(404, [("Content-Type", "text/plain")], f"unknown control path {self.command} {self.path}".encode())
        except ValueError as err:
            return self.reply(400, [("Content-Type", "text/plain")], f"{self.path}: {err}".encode())
        self.reply(200, [("Content-Type", "application/json")], json.dumps(out, indent=1).encode())


def credential_scope(authorization):
    """(access key ID, region, service) of a SigV4 `Authorization` header; None without one."""
    for part in authorization.replace(",", " ").split():
        if part.startswith("Credential="):
            fields = part[len("Credential="):].split("/")
            if len(fields) >= 4:
                return fields[0], fields[2], fields[3]
    return None


def env_float(name, default):
    raw = os.environ.get(name, "")
    return float(raw) if raw else default


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", default=os.environ.get("FAULT_UPSTREAM") or os.environ.get("AWS_ENDPOINT_URL"), help="the real endpoint (moto)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("FAULT_PORT", "0")), help="0: a free port")
    parser.add_argument("--port-file", help="write the port here once listening")
    parser.add_argument("--counts-file", help="write the counters here (JSON) on exit")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FAULT_SEED", "1")))
    parser.add_argument("--work-queue", default=os.environ.get("FAULT_DUPLICATE_QUEUE", ""), help="queue name whose sends are duplicated (none when empty)")
    parser.add_argument("--s3-slowdown", type=float, default=env_float("FAULT_S3_SLOWDOWN", 0.0), help="rate of S3 503 SlowDown (not forwarded)")
    parser.add_argument("--s3-fail-complete", type=float, default=env_float("FAULT_S3_FAIL_COMPLETE", 0.0), help="rate of S3 CompleteMultipartUpload answered 500 (not forwarded)")
    parser.add_argument("--s3-internal", type=float, default=env_float("FAULT_S3_INTERNAL", 0.0), help="rate of S3 500 InternalError (after forwarding)")
    parser.add_argument("--ddb-throttle", type=float, default=env_float("FAULT_DDB_THROTTLE", 0.0), help="rate of DynamoDB 400 ThrottlingException")
    parser.add_argument("--ddb-conflict", type=float, default=env_float("FAULT_DDB_CONFLICT", 0.0), help="rate of TransactWriteItems cancelled for a TransactionConflict")
    parser.add_argument("--sqs-500", type=float, default=env_float("FAULT_SQS_500", 0.0), help="rate of SQS 500 InternalError")
    parser.add_argument("--cut", type=float, default=env_float("FAULT_CUT", 0.0), help="rate of responses cut mid-way (every service)")
    for service in ("s3", "dynamodb", "sqs"):
        parser.add_argument(f"--cut-{service}", type=float, default=None, help=f"rate of {service} responses cut mid-way (overrides --cut)")
    args = parser.parse_args()
    if not args.upstream:
        parser.error("--upstream (or AWS_ENDPOINT_URL) is required")
    rates = {"s3_slowdown": args.s3_slowdown, "s3_fail_complete": args.s3_fail_complete, "s3_internal": args.s3_internal, "ddb_throttle": args.ddb_throttle, "ddb_conflict": args.ddb_conflict, "sqs_500": args.sqs_500, "cut": args.cut}
    for service in ("s3", "dynamodb", "sqs"):
        override = getattr(args, f"cut_{service}")
        rates[f"cut_{service}"] = args.cut if override is None else override
    state = State(args.upstream, args.seed, {}, args.work_queue)
    try:
        state.configure(rates)
    except ValueError as err:
        parser.error(str(err))
    Handler.state = state
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]

    def stop(signum, frame):
        if args.counts_file:
            with open(args.counts_file, "w") as out:
                json.dump(state.snapshot(), out, indent=1)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as out:
            out.write(str(port))
        os.replace(tmp, args.port_file)
    print(f"fault proxy on http://127.0.0.1:{port} -> {args.upstream} (seed {args.seed})", file=sys.stderr)
    server.serve_forever()


if __name__ == "__main__":
    main()
