#!/usr/bin/env python3
"""A small Lambda Runtime API emulator (stdlib only), so the real function binaries run here.

Each `Function` serves the Runtime API (2018-06-01) on its own loopback port and starts one
binary with `AWS_LAMBDA_RUNTIME_API` pointing at it, plus the variables `lambda_runtime` reads at
start (function name, memory size, version; log group and stream). `invoke(event)` hands the
binary one event through `/runtime/invocation/next`, with the request id, deadline, function ARN
and trace id headers, and waits for `/invocation/{id}/response` or `/invocation/{id}/error`.
An `/init/error` report or the process exiting fails the pending and every later invocation.

By hand (the binary's configuration comes from the environment, as on Lambda):

    python3 scripts/lambda_emulator.py --name worker --timeout 300 \
        --event sqs-batch.json -- target/debug/worker

prints one JSON line per event: {"status": "ok" | "error", "payload": ...}.

It also serves Lambda's Invoke API (`InvokeApi`), so a client (the AWS SDK, with
`AWS_ENDPOINT_URL_LAMBDA` pointing here) invokes the functions it runs, as batchops' LambdaInvoke
jobs do:

    python3 scripts/lambda_emulator.py --name example-invoke --alias live --invoke-port 0 \
        -- target/debug/example-invoke

prints {"invoke_endpoint": "http://127.0.0.1:PORT"} and serves until SIGTERM or SIGINT.
`POST /2015-03-31/functions/{FunctionName}/invocations` takes what Lambda takes: a name, an ARN
or a partial ARN, with or without a qualifier (`$LATEST` or a configured alias; the `Qualifier`
query parameter too), and `X-Amz-Invocation-Type` RequestResponse (default), Event or DryRun.
A function error answers 200 with `X-Amz-Function-Error: Unhandled` and the error payload; a
function that outlives its timeout answers a `Sandbox.Timedout` error and is restarted (Lambda
resets the sandbox); an unknown function or qualifier answers 404 ResourceNotFoundException.
One process per function: invocations of a function run one at a time, in arrival order.
"""

import argparse
import itertools
import json
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API = "/2018-06-01/runtime"
INVOCATION = re.compile(rf"^{API}/invocation/([^/]+)/(response|error)$")


class LambdaError(Exception):
    """The function could not answer: init error, crash, or timeout."""


class LambdaTimeout(LambdaError):
    """The function did not answer within its timeout."""


class _Invocation:
    def __init__(self, event: bytes, timeout: float):
        self.request_id = str(uuid.uuid4())
        self.event = event
        self.timeout = timeout
        self.deadline_ms = 0
        self.done = threading.Event()
        self.status = ""
        self.payload = b""
        self.error_type = ""


class _RuntimeApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pending: "queue.Queue[_Invocation]" = queue.Queue()
        self.in_flight: dict = {}
        self.lock = threading.Lock()
        self.init_error = None
        self.closing = threading.Event()
        self.function_arn = ""

    def handle_error(self, request, client_address):
        # A function process that is stopped or crashes drops its connection: not our error.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # The runtime's hyper client keeps connections alive; HTTP/1.1 with lengths on every reply.
    protocol_version = "HTTP/1.1"
    server: _RuntimeApi

    def log_message(self, fmt, *args):  # quiet: the driver reports what matters
        pass

    def _reply(self, status: int, body: bytes, headers: dict = None):
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # The function process went away (stopped, or crashed): nothing to answer.
            self.close_connection = True

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers (none expected) end with an empty line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self):
        if self.path != f"{API}/invocation/next":
            self._reply(404, b'{"errorType":"NotFound"}')
            return
        # Long poll, as Lambda does: the runtime waits here between invocations.
        while not self.server.closing.is_set():
            try:
                invocation = self.server.pending.get(timeout=0.2)
                break
            except queue.Empty:
                continue
        else:
            # Shutting down: the process is gone or going; just drop the connection.
            self.close_connection = True
            return
        invocation.deadline_ms = int((time.time() + invocation.timeout) * 1000)
        with self.server.lock:
            self.server.in_flight[invocation.request_id] = invocation
        trace = f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0"
        self._reply(
            200,
            invocation.event,
            {
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": self.server.function_arn,
                "Lambda-Runtime-Trace-Id": trace,
            },
        )

    def do_POST(self):
        body = self._body()
        if self.path == f"{API}/init/error":
            self.server.init_error = body.decode("utf-8", "replace") or "init error"
            self._reply(202, b'{"status":"OK"}')
            return
        match = INVOCATION.match(self.path)
        if not match:
            self._reply(404, b'{"errorType":"NotFound"}')
            return
        with self.server.lock:
            invocation = self.server.in_flight.pop(match.group(1), None)
        if invocation is None:
            # Lambda refuses a second answer, or one for an unknown request id.
            self._reply(400, b'{"errorType":"InvalidRequestID"}')
            return
        invocation.status = "ok" if match.group(2) == "response" else "error"
        invocation.payload = body
        invocation.error_type = self.headers.get("Lambda-Runtime-Function-Error-Type", "")
        self._reply(202, b'{"status":"OK"}')
        invocation.done.set()


class Function:
    """One Lambda function: a Runtime API on a loopback port and the binary polling it."""

    def __init__(self, name: str, binary: str, timeout: float = 60.0, memory_mb: int = 1024,
                 env: dict = None, log_path: str = None, aliases=()):
        self.name = name
        # Qualifiers the Invoke API accepts besides $LATEST.
        self.aliases = set(aliases)
        self.binary = binary
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.env = env
        self.log_path = log_path
        self.api = _RuntimeApi()
        self.process = None
        self._log = None

    @property
    def runtime_api(self) -> str:
        host, port = self.api.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> "Function":
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        account = os.environ.get("BATCHOPS_ACCOUNT_ID", "000000000000")
        self.api.function_arn = f"arn:aws:lambda:{region}:{account}:function:{self.name}"
        threading.Thread(target=self.api.serve_forever, args=(0.1,), daemon=True).start()
        env = dict(os.environ if self.env is None else self.env)
        env.update({
            "AWS_LAMBDA_RUNTIME_API": self.runtime_api,
            "AWS_LAMBDA_FUNCTION_NAME": self.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": time.strftime("%Y/%m/%d/[$LATEST]") + secrets.token_hex(16),
            "AWS_REGION": region,
        })
        # Concurrent polling is a different runtime mode than the deployed functions use.
        env.pop("AWS_LAMBDA_MAX_CONCURRENCY", None)
        self._env = env
        # Without a log file the function logs to this process's stderr, as to CloudWatch.
        self._log = open(self.log_path, "ab") if self.log_path else None
        self._spawn()
        return self

    def _spawn(self):
        self._env["AWS_LAMBDA_RUNTIME_API"] = self.runtime_api
        self.process = subprocess.Popen([self.binary], env=self._env, stdout=self._log or sys.stderr,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _close_api(self):
        self.api.closing.set()
        self.api.shutdown()
        self.api.server_close()

    def _stop_process(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def reset(self):
        """A new process in place of one stuck in an invocation (Lambda resets the sandbox), on
        a new Runtime API: nothing of the old one (a long poll, a late answer) reaches it."""
        self._stop_process()
        self._close_api()
        arn = self.api.function_arn
        self.api = _RuntimeApi()
        self.api.function_arn = arn
        threading.Thread(target=self.api.serve_forever, args=(0.1,), daemon=True).start()
        self._spawn()

    def _dead(self) -> str:
        if self.api.init_error is not None:
            return f"{self.name}: init error reported: {self.api.init_error}"
        code = self.process.poll() if self.process else None
        if code is not None:
            where = f" (log {self.log_path})" if self.log_path else ""
            return f"{self.name}: {self.binary} exited with status {code}{where}"
        return ""

    def invoke_raw(self, event: bytes, grace: float = 5.0) -> _Invocation:
        """Runs one invocation; returns it answered (status "ok" | "error", raw payload).
        Raises LambdaTimeout when no answer came within the timeout plus `grace` seconds."""
        dead = self._dead()
        if dead:
            raise LambdaError(dead)
        invocation = _Invocation(event, self.timeout)
        self.api.pending.put(invocation)
        give_up = time.time() + self.timeout + grace
        while not invocation.done.wait(0.05):
            dead = self._dead()
            if dead:
                raise LambdaError(f"{dead} during request {invocation.request_id}")
            if time.time() > give_up:
                raise LambdaTimeout(f"{self.name}: request {invocation.request_id} timed out after {self.timeout}s")
        return invocation

    def invoke(self, event) -> tuple:
        """Runs one invocation; returns ("ok" | "error", decoded JSON payload)."""
        data = event if isinstance(event, bytes) else json.dumps(event).encode()
        invocation = self.invoke_raw(data)
        try:
            payload = json.loads(invocation.payload) if invocation.payload else None
        except json.JSONDecodeError:
            payload = invocation.payload.decode("utf-8", "replace")
        return invocation.status, payload

    def stop(self):
        self._stop_process()
        self._close_api()
        if self._log is not None:
            self._log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# Lambda's FunctionName pattern (Invoke): name, ARN or partial ARN, with an optional qualifier.
FUNCTION_NAME = re.compile(
    r"^(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso(b?)))?-[a-z]+-\d{1}:)?(\d{12}:)?"
    r"(function:)?(?P<name>[a-zA-Z0-9-_.]+)(:(?P<qualifier>\$LATEST|[a-zA-Z0-9-_]+))?$")
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")


class InvokeApi(ThreadingHTTPServer):
    """Lambda's Invoke API (2015-03-31) for the functions given, on a loopback port."""

    daemon_threads = True

    def __init__(self, functions, port: int = 0):
        super().__init__(("127.0.0.1", port), _InvokeHandler)
        self.functions = {function.name: function for function in functions}
        # One invocation at a time per function (one sandbox); a reset must not race an answer.
        self.locks = {name: threading.Lock() for name in self.functions}

    @property
    def endpoint(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def serve_in_background(self) -> "InvokeApi":
        threading.Thread(target=self.serve_forever, args=(0.1,), daemon=True).start()
        return self

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class _InvokeHandler(_Handler):
    server: InvokeApi

    def _error(self, status: int, error_type: str, message: str):
        # Lambda's error shape: the type in a header (what the SDKs read) and a JSON body.
        body = json.dumps({"Type": "User", "message": message}).encode()
        self._reply(status, body, {"X-Amzn-ErrorType": error_type,
                                   "X-Amzn-RequestId": str(uuid.uuid4())})

    def do_GET(self):
        self._error(404, "UnknownOperationException", f"no operation GET {self.path}")

    def do_POST(self):
        path, _, query = self.path.partition("?")
        match = INVOKE_PATH.match(path)
        body = self._body()
        if not match:
            self._error(404, "UnknownOperationException", f"no operation POST {path}")
            return
        function_name = urllib.parse.unquote(match.group(1))
        parsed = FUNCTION_NAME.match(function_name)
        if not parsed or len(function_name) > 170:
            self._error(400, "ValidationException",
                        f"1 validation error detected: Value '{function_name}' at 'functionName' "
                        "failed to satisfy constraint: Member must satisfy regular expression pattern")
            return
        qualifier = urllib.parse.parse_qs(query).get("Qualifier", [None])[0]
        if parsed.group("qualifier") and qualifier and parsed.group("qualifier") != qualifier:
            self._error(400, "InvalidParameterValueException",
                        "The derived qualifier from the function name does not match the specified qualifier.")
            return
        qualifier = parsed.group("qualifier") or qualifier
        name = parsed.group("name")
        function = self.server.functions.get(name)
        if function is None or qualifier not in (None, "$LATEST", *function.aliases):
            region = os.environ.get("AWS_REGION") or "us-east-1"
            account = os.environ.get("BATCHOPS_ACCOUNT_ID", "000000000000")
            arn = f"arn:aws:lambda:{region}:{account}:function:{name}" + (f":{qualifier}" if qualifier else "")
            self._error(404, "ResourceNotFoundException", f"Function not found: {arn}")
            return
        invocation_type = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        if invocation_type == "DryRun":
            self._reply(204, b"")
            return
        if invocation_type == "Event":
            threading.Thread(target=self._run, args=(function, body), daemon=True).start()
            self._reply(202, b"")
            return
        if invocation_type != "RequestResponse":
            self._error(400, "InvalidParameterValueException",
                        f"unknown invocation type {invocation_type}")
            return
        status, payload = self._run(function, body)
        headers = {"X-Amz-Executed-Version": "$LATEST", "X-Amzn-RequestId": str(uuid.uuid4())}
        if status != "ok":
            headers["X-Amz-Function-Error"] = "Unhandled"
        self._reply(200, payload, headers)

    def _run(self, function: Function, event: bytes) -> tuple:
        """Invokes `function`; returns ("ok" | "error", payload bytes) as Lambda answers them."""
        with self.server.locks[function.name]:
            try:
                invocation = function.invoke_raw(event, grace=0.0)
            except LambdaTimeout:
                function.reset()
                message = f"Task timed out after {function.timeout:.2f} seconds"
                return "error", json.dumps({"errorType": "Sandbox.Timedout",
                                            "errorMessage": message}).encode()
            except LambdaError as err:
                return "error", json.dumps({"errorType": "Runtime.ExitError",
                                            "errorMessage": str(err)}).encode()
        return invocation.status, invocation.payload or b"null"


def serve_invoke(function: Function, port: int, exit_with_stdin: bool) -> int:
    """Serves the Invoke API for `function` until SIGTERM or SIGINT (or, with
    `exit_with_stdin`, until stdin closes: a test's emulator ends with the test)."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if exit_with_stdin:
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    with function:
        api = InvokeApi([function], port).serve_in_background()
        print(json.dumps({"invoke_endpoint": api.endpoint}), flush=True)
        while not stop.wait(0.2):
            pass
        api.shutdown()
        api.server_close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="function", help="AWS_LAMBDA_FUNCTION_NAME")
    parser.add_argument("--timeout", type=float, default=60.0, help="function timeout, seconds")
    parser.add_argument("--memory", type=int, default=1024, help="memory size, MB")
    parser.add_argument("--event", action="append", default=[],
                        help="a file holding one JSON event (repeatable; '-' or none: stdin)")
    parser.add_argument("--invoke-port", type=int, default=None,
                        help="serve Lambda's Invoke API on this loopback port (0: any free one) "
                             "instead of reading events")
    parser.add_argument("--exit-with-stdin", action="store_true",
                        help="with --invoke-port: stop when stdin closes")
    parser.add_argument("--alias", action="append", default=[],
                        help="a qualifier the Invoke API accepts besides $LATEST (repeatable)")
    parser.add_argument("binary", help="the function binary (after --)")
    args = parser.parse_args()
    if args.invoke_port is not None:
        function = Function(args.name, args.binary, args.timeout, args.memory, aliases=args.alias)
        return serve_invoke(function, args.invoke_port, args.exit_with_stdin)
    events = args.event or ["-"]
    failed = 0
    with Function(args.name, args.binary, args.timeout, args.memory) as function:
        for path, n in zip(events, itertools.count()):
            text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
            try:
                status, payload = function.invoke(text.encode())
            except LambdaError as err:
                print(json.dumps({"event": n, "status": "failed", "error": str(err)}))
                return 1
            failed += status != "ok"
            print(json.dumps({"event": n, "status": status, "payload": payload}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
