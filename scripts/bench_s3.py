"""A tiny fake S3 endpoint for `scripts/bench.sh backup` (Python 3 standard library only).

It *generates* a versioned source bucket of N objects on the fly (no per-key storage): keys
`data/00000000.bin` ... in sorted order, one version each, with deterministic version IDs, ETags,
sizes and times. It serves just what a backup run's prepare step asks for, path-style:

  GET  /<bucket>?versioning                    GetBucketVersioning: Enabled, for every bucket
  GET  /<source>?versions[&prefix&key-marker&version-id-marker&max-keys]
                                               ListObjectVersions, 1,000 per page at most
  GET  /<bucket>?list-type=2[&prefix&start-after&continuation-token&max-keys]
                                               ListObjectsV2: the generated keys for the source
                                               bucket, an empty list for any other bucket/prefix
  GET  /<catalog bucket>/<catalog key>         GetObject (and HEAD) of the previous snapshot's
                                               catalog, a local file (see `catalog` below)
  PUT  anything                                accepted and discarded (ETag: MD5 of the body)

For `scripts/bench.sh finalize` it also serves a job's staged report rows, generated per range
(`jobs/<id>/rows/<seq>-0000000-bench-<status>.csv`, see `staged_rows`), and multipart uploads
(CreateMultipartUpload, UploadPart, CompleteMultipartUpload; parts discarded, ETags kept so a
HeadObject of a written file answers with S3's multipart ETag).

For the completion case of `scripts/bench.sh backup` (`functions/aws/examples/snapshot_bench.rs`)
it generates a backup run's draft snapshot parts (`jobs/<id>/draft/<seq>`: every object of the
previous catalog, every `--changed-every`th one a pending copy) and its committed ranges'
fragments (`jobs/<id>/fragments/<seq>-0000000-bench`: the copies' new destination versions),
keeps what is uploaded (PutObject, multipart uploads) in a spool directory on disk (`--spool`)
and serves it back, with ranged GETs and If-Match, and answers DeleteObjects, counting the
versions deleted (`DeletedVersions` in /__stats).

Requests are counted by operation: `GET /__stats` returns the counts as JSON (with the server's
own time spent rendering responses), `POST /__reset` zeroes them. Anything else is answered with a
501 S3 error and counted as `Unsupported ...`, so a benchmark sees it.

  python3 scripts/bench_s3.py catalog --objects N --dest-prefix P --out FILE
      writes the gzip catalog (`CATALOG_HEADER`, then `CatalogEntry::write_line` rows) matching
      the generated listing: every object unchanged
  python3 scripts/bench_s3.py serve --objects N --source-bucket B --catalog-bucket B
      --catalog-key K --catalog-file FILE [--port 0] [--port-file F]
  python3 scripts/bench_s3.py table-header|table-row ...
      the benchmark's markdown table, from `batchops plan --json` output and /__stats
"""

import argparse
import email.utils
import gzip
import hashlib
import http.client
import itertools
import re
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
PAGE = 1000
KEY_FORMAT = "data/%08d.bin"
LAST_MODIFIED = "2026-11-01T00:00:00.000Z"
# The catalog stores LastModified as the SDK's DateTime prints it (no zero fraction).
CATALOG_LAST_MODIFIED = "2026-11-01T00:00:00Z"
OWNER = "<Owner><ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID><DisplayName>bench</DisplayName></Owner>"

# One template per listed entry, rendered with a single `%` (index repeated where needed). Key,
# version ID, ETag and size are all functions of the index.
VERSION_TEMPLATE = (
    "<Version><Key>data/%08d.bin</Key><VersionId>bench-v%025d</VersionId><IsLatest>true</IsLatest>"
    "<LastModified>" + LAST_MODIFIED + "</LastModified><ETag>&quot;%032x&quot;</ETag><Size>%d</Size>"
    "<StorageClass>STANDARD</StorageClass>" + OWNER + "</Version>"
)
CONTENTS_TEMPLATE = (
    "<Contents><Key>data/%08d.bin</Key><LastModified>" + LAST_MODIFIED + "</LastModified>"
    "<ETag>&quot;%032x&quot;</ETag><Size>%d</Size><StorageClass>STANDARD</StorageClass></Contents>"
)
ETAG_MULTIPLIER = 0x9E3779B97F4A7C15F39CC0605CEDC834
ETAG_MASK = (1 << 128) - 1


def key(i):
    return KEY_FORMAT % i


def version_id(i):
    return "bench-v%025d" % i


def version_entries(start, stop):
    return "".join(
        [VERSION_TEMPLATE % (i, i, (i * ETAG_MULTIPLIER + 1) & ETAG_MASK, 1024 + i % 4096) for i in range(start, stop)]
    )


def contents_entries(start, stop):
    if OBJECT_SIZE is not None:
        return "".join(
            [CONTENTS_TEMPLATE % (i, (i * ETAG_MULTIPLIER + 1) & ETAG_MASK, OBJECT_SIZE) for i in range(start, stop)]
        )
    return "".join(
        [CONTENTS_TEMPLATE % (i, (i * ETAG_MULTIPLIER + 1) & ETAG_MASK, 1024 + i % 4096) for i in range(start, stop)]
    )


# `scripts/bench.sh worker`: every generated object has this size (None: 1024 + i % 4096) and can
# be read (GetObject, HeadObject) and copied (CopyObject); every S3 request waits LATENCY seconds
# before it is answered, like a far S3 endpoint.
OBJECT_SIZE = None
LATENCY = 0.0
SOURCE_KEY = re.compile(r"^data/(\d{8})\.bin$")


class Headers(dict):
    """Request headers by lower-cased name: what the handlers read (`get`, `[]`, `in`)."""

    def get(self, name, default=None):
        return super().get(name.lower(), default)

    def __getitem__(self, name):
        return super().get(name.lower())

    def __contains__(self, name):
        return super().__contains__(name.lower())


def parse_headers(fp, _class=None):
    """http.client.parse_headers without the email parser: this process's time per request is
    taken from the CPU the measured tool runs on (one machine), so the fake keeps it small."""
    headers = Headers()
    while True:
        line = fp.readline(65537)
        if line in (b"\r\n", b"\n", b""):
            return headers
        name, _, value = line.decode("iso-8859-1").partition(":")
        headers[name.strip().lower()] = value.strip()


http.client.parse_headers = parse_headers


def source_size(i):
    return OBJECT_SIZE if OBJECT_SIZE is not None else 1024 + i % 4096


def source_etag(i):
    return "%032x" % ((i * ETAG_MULTIPLIER + 1) & ETAG_MASK)


# `scripts/bench.sh finalize`: the rows a committed range of 1,000 tasks staged, as
# `functions/aws/examples/report_bench.rs` records them (every 100th task failed).
STAGED_ROWS = re.compile(r"^jobs/[^/]+/rows/(\d{10})-\d{7}-bench-(succeeded|failed)\.csv$")
SUCCEEDED_ROW = "bench-source,data/%08d.bin,,succeeded,200,,Successful\n"
FAILED_ROW = "bench-source,data/%08d.bin,,failed,404,NoSuchKey,Not Found\n"


def staged_rows(seq, status):
    tasks = range(seq * 1000, seq * 1000 + 1000)
    if status == "failed":
        return "".join([FAILED_ROW % t for t in tasks if t % 100 == 99])
    return "".join([SUCCEEDED_ROW % t for t in tasks if t % 100 != 99])


# The completion case: a run over the previous catalog's objects in which every
# `changed_every`th object changed (a pending copy, done: its fragment line names its new
# destination version); the others are unchanged (done rows, as the previous catalog has them).
DRAFT = re.compile(r"^jobs/[^/]+/draft/(\d{10})$")
FRAGMENT = re.compile(r"^jobs/[^/]+/fragments/(\d{10})-\d{7}-bench$")


def catalog_row(i, dest_prefix):
    """Object i as the previous catalog lists it (see `write_catalog`)."""
    return "data/%08d.bin\tbench-v%025d\t%032x\t%d\t%s\t%sdata/%08d.bin\tdest-v%026d\n" % (
        i, i, (i * ETAG_MULTIPLIER + 1) & ETAG_MASK, 1024 + i % 4096, CATALOG_LAST_MODIFIED, dest_prefix, i, i)


def changed_row(i, dest_prefix):
    """Object i's new version, as a copy task plans it (no destination version yet)."""
    return "data/%08d.bin\tbench-w%025d\t%032x\t%d\t2026-11-02T00:00:00Z\t%sdata/%08d.bin\t\n" % (
        i, i, (i * ETAG_MULTIPLIER + 2) & ETAG_MASK, 2048 + i % 4096, dest_prefix, i)


def draft_part(seq, cfg):
    rows = []
    for i in range(seq * cfg.draft_rows, min(cfg.objects, (seq + 1) * cfg.draft_rows)):
        if i % cfg.changed_every == 0:
            rows.append("P\t" + changed_row(i, cfg.dest_prefix) + "F\t" + catalog_row(i, cfg.dest_prefix))
        else:
            rows.append("D\t" + catalog_row(i, cfg.dest_prefix))
    return "".join(rows)


def fragment(seq, cfg):
    copies = (cfg.objects - 1) // cfg.changed_every + 1 if cfg.objects else 0
    first = seq * cfg.chunk_tasks
    return "".join(["S\tdest2-v%025d\n" % (j * cfg.changed_every)
                    for j in range(first, min(copies, first + cfg.chunk_tasks))])


def write_catalog(objects, dest_prefix, out):
    """The previous snapshot's catalog: every generated object, as a completed run records it."""
    header = "#batchops-catalog\tv1\tkey\tsource_version\tetag\tsize\tlast_modified\tdest_key\tdest_version\n"
    tmp = out + ".tmp"
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
        gz.write(header.encode())
        row = "data/%08d.bin\tbench-v%025d\t%032x\t%d\t" + CATALOG_LAST_MODIFIED + "\t" + dest_prefix.replace("%", "%%") + "data/%08d.bin\tdest-v%026d\n"
        step = 100_000
        for start in range(0, objects, step):
            stop = min(objects, start + step)
            gz.write(
                "".join(
                    [row % (i, i, (i * ETAG_MULTIPLIER + 1) & ETAG_MASK, 1024 + i % 4096, i, i) for i in range(start, stop)]
                ).encode()
            )
    os.replace(tmp, out)


class Source:
    """The generated bucket: index i holds key(i); keys sort as their indexes do."""

    def __init__(self, objects):
        self.objects = objects

    def _first(self, predicate):
        """First index whose key satisfies `predicate` (monotone: False then True), or N."""
        lo, hi = 0, self.objects
        while lo < hi:
            mid = (lo + hi) // 2
            if predicate(key(mid)):
                hi = mid
            else:
                lo = mid + 1
        return lo

    def prefix_range(self, prefix):
        start = self._first(lambda k: k >= prefix)
        stop = self._first(lambda k: k >= prefix and not k.startswith(prefix))
        return start, max(start, stop)

    def after(self, marker):
        """First index whose key sorts after `marker`."""
        return self._first(lambda k: k > marker)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "lock", threading.Lock()):
            self.counts = {}
            self.totals = {}
            self.render_seconds = 0.0
            self.bytes_sent = 0
            self.copied_keys = {}
            self.started = time.time()
            self.cpu_started = time.process_time()
            self.first_copy = self.last_copy = None

    def copied(self, bucket, object_key, index):
        with self.lock:
            self.copied_keys[(bucket, object_key)] = index
            self.last_copy = time.time()
            if self.first_copy is None:
                self.first_copy = self.last_copy

    def copy_of(self, bucket, object_key):
        """The generated object's index copied to (bucket, key), or None."""
        with self.lock:
            return self.copied_keys.get((bucket, object_key))

    def add(self, operation, rendered_in, sent):
        with self.lock:
            self.counts[operation] = self.counts.get(operation, 0) + 1
            self.render_seconds += rendered_in
            self.bytes_sent += sent

    def total(self, name, amount):
        with self.lock:
            self.totals[name] = self.totals.get(name, 0) + amount

    def snapshot(self):
        with self.lock:
            return {
                "Requests": dict(sorted(self.counts.items())),
                "Totals": dict(sorted(self.totals.items())),
                "Total": sum(self.counts.values()),
                "CopiedKeys": len(self.copied_keys),
                "RenderSeconds": round(self.render_seconds, 3),
                "BytesSent": self.bytes_sent,
                "SinceResetSeconds": round(time.time() - self.started, 3),
                # This process's own CPU since the reset: on one machine it is the tool's too.
                "FakeCpuSeconds": round(time.process_time() - self.cpu_started, 3),
                # The copy window: from reset to the first and the last CopyObject answered.
                "FirstCopySeconds": self.first_copy and round(self.first_copy - self.started, 3),
                "LastCopySeconds": self.last_copy and round(self.last_copy - self.started, 3),
            }


def error_body(code, message, resource=""):
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>bench</RequestId></Error>"
    ).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: with Nagle's algorithm the body waits for the
    # client's delayed ACK of the headers (up to 40 ms on Linux), a second latency per request.
    disable_nagle_algorithm = True
    server_version = "bench-s3"
    # Set by main().
    config = None
    source = None
    stats = None
    # Report files written (bucket, key) -> ETag, so HeadObject finds them; upload IDs.
    written = {}
    upload_ids = itertools.count(1)

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass

    # -- plumbing ---------------------------------------------------------------------------

    def _read_body(self, keep=False, into=None):
        """Reads the request body: its hex MD5 (of the payload, aws-chunked framing removed)
        and, with `keep`, the bytes; with `into`, the payload is written to that file."""
        digest = hashlib.md5()
        kept = []
        size = 0

        def take(chunk):
            nonlocal size
            digest.update(chunk)
            size += len(chunk)
            if keep:
                kept.append(chunk)
            if into is not None:
                into.write(chunk)

        def read_exact(n):
            parts = []
            while n > 0:
                chunk = self.rfile.read(min(n, 1 << 20))
                if not chunk:
                    break
                parts.append(chunk)
                n -= len(chunk)
            return b"".join(parts)

        length = self.headers.get("Content-Length")
        framed = "aws-chunked" in self.headers.get("Content-Encoding", "") or self.headers.get(
            "x-amz-decoded-content-length") is not None
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        if framed or chunked:
            # `<hex size>[;ext]\r\n<data>\r\n` ... `0\r\n<trailers>\r\n`; aws-chunked may itself
            # come with Content-Length (the framed size).
            while True:
                line = self.rfile.readline()
                if not line:
                    break
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                take(read_exact(n))
                self.rfile.read(2)
        elif length is not None:
            remaining = int(length)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                take(chunk)
                remaining -= len(chunk)
        return digest.hexdigest(), b"".join(kept)

    def _send(self, status, body, content_type="application/xml", headers=None, head=False):
        self._send_when_due(status, content_type, len(body), headers, b"" if head else body)
        return 0 if head else len(body)

    def _send_when_due(self, status, content_type, length, headers, body=b""):
        """The status line, headers and `body` (all of it, or none when more follows), made
        before the answer is due and sent in one write when it is: what is left after the wait
        is one syscall, not this process's formatting under the GIL."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("x-amz-request-id", "bench")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self._headers_buffer.append(b"\r\n")
        if body:
            self._headers_buffer.append(body)
        self._hold_until_due()
        self.flush_headers()
        self._answered()

    def _route(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        path = url.path.lstrip("/")
        bucket, _, object_key = path.partition("/")
        return unquote(bucket), unquote(object_key), {k: v[-1] for k, v in query.items()}

    def _count(self, operation, started, sent):
        self.stats.add(operation, time.perf_counter() - started, sent)

    # -- verbs ------------------------------------------------------------------------------

    def do_GET(self):
        self._get(head=False)

    def do_HEAD(self):
        self._get(head=True)

    def parse_request(self):
        # The request line is in: the injected latency counts from here.
        self._arrived = time.monotonic()
        # The client's turnaround on this connection: from the last answer leaving to the next
        # request arriving, when that is short enough to be a busy slot's next request (an idle
        # connection waits far longer). It holds the client's own work between two requests
        # and this process waking to read the request.
        answered_at = getattr(self, "_answered_at", None)
        if LATENCY and answered_at is not None and self._arrived - answered_at < LATENCY / 2:
            self.stats.total("TurnaroundSeconds", self._arrived - answered_at)
            self.stats.total("Turnarounds", 1)
        return super().parse_request()

    def _hold_until_due(self):
        """The injected latency (`--latency-ms`), for S3 requests only: the answer leaves
        LATENCY after the request arrived, the fake's own work inside it (as a far endpoint's
        server time is inside its latency). Sleeping LATENCY and then working made every request
        take LATENCY plus this one Python process's time under load, an ideal no tool could
        reach. A request whose work alone took longer is answered late and counted."""
        if self.path.startswith("/__"):
            return
        if LATENCY:
            left = self._arrived + LATENCY - time.monotonic()
            if left > 0:
                time.sleep(left)
            else:
                self.stats.total("AnsweredLate", 1)

    def _answered(self):
        """After an S3 answer is written: how long after it was due it left (waking from the
        sleep and taking the GIL among this process's threads). Time the fake adds beyond the
        latency, for every tool alike; the bench prints its mean."""
        if LATENCY and not self.path.startswith("/__"):
            self._answered_at = time.monotonic()
            self.stats.total("AnswerDelaySeconds", self._answered_at - (self._arrived + LATENCY))
            self.stats.total("Answers", 1)

    def _get(self, head):
        started = time.perf_counter()
        if self.path == "/__stats":
            body = json.dumps(self.stats.snapshot()).encode()
            self._send(200, body, "application/json", head=head)
            return
        bucket, object_key, q = self._route()
        if head and not object_key and not q:
            operation = "HeadBucket"
            sent = self._send(200, b"", headers={"x-amz-bucket-region": "us-east-1"}, head=True)
        elif object_key:
            operation = "HeadObject" if head else "GetObject"
            sent = self._object(bucket, object_key, head)
        elif "versioning" in q:
            operation = "GetBucketVersioning"
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f'<VersioningConfiguration xmlns="{NS}"><Status>Enabled</Status></VersioningConfiguration>'
            ).encode()
            sent = self._send(200, body, head=head)
        elif "versions" in q:
            operation = "ListObjectVersions"
            sent = self._send(200, self._list_versions(bucket, q), head=head)
        elif q.get("list-type") == "2":
            operation = "ListObjectsV2"
            sent = self._send(200, self._list_objects_v2(bucket, q), head=head)
        else:
            operation = "Unsupported GET " + ("&".join(sorted(q)) or "(bucket)")
            sent = self._send(501, error_body("NotImplemented", f"bench_s3.py does not serve {self.path}"), head=head)
        self._count(operation, started, sent)

    def _spool_path(self, *parts):
        path = os.path.join(self.config.spool, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def do_PUT(self):
        started = time.perf_counter()
        bucket, object_key, q = self._route()
        if object_key and "uploadId" not in q and self.headers.get("x-amz-copy-source"):
            self._read_body()
            sent = self._copy_object(bucket, object_key)
            self._count("CopyObject", started, sent)
            return
        spool = getattr(self.config, "spool", None)
        target = None
        if spool and object_key and "uploadId" in q:
            target = self._spool_path("uploads", q["uploadId"], "%05d" % int(q.get("partNumber", "0")))
        elif spool and object_key:
            target = self._spool_path("objects", hashlib.md5(f"{bucket}/{object_key}".encode()).hexdigest())
        if target:
            with open(target + ".tmp", "wb") as f:
                md5, _ = self._read_body(into=f)
            os.replace(target + ".tmp", target)
            self.stats.total("BytesUploaded", os.path.getsize(target))
        else:
            md5, _ = self._read_body()
        if object_key and "uploadId" in q:
            operation = "UploadPart"
            headers = {"ETag": f'"{md5}"'}
        elif object_key:
            operation = "PutObject"
            headers = {"ETag": f'"{md5}"', "x-amz-version-id": "bench-put"}
            self.written[(bucket, object_key)] = (md5, target)
        else:
            operation = "PutBucket " + ("&".join(sorted(q)) or "(CreateBucket)")
            headers = {}
        sent = self._send(200, b"", headers=headers)
        self._count(operation, started, sent)

    def do_POST(self):
        started = time.perf_counter()
        _, self._posted = self._read_body(keep=True)
        if self.path == "/__reset":
            self.stats.reset()
            self._send(200, b"{}", "application/json")
            return
        bucket, object_key, q = self._route()
        if object_key and "uploads" in q:
            upload_id = "bench-upload-%d" % next(self.upload_ids)
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<InitiateMultipartUploadResult xmlns="{NS}"><Bucket>{escape(bucket)}</Bucket>'
                    f"<Key>{escape(object_key)}</Key><UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>").encode()
            sent = self._send(200, body)
            self._count("CreateMultipartUpload", started, sent)
            return
        if not object_key and "delete" in q:
            # DeleteObjects: every version named is taken as deleted (quiet: no per-key answer).
            deleted = self._posted.count(b"<Object>")
            self.stats.total("DeletedVersions", deleted)
            body = f'<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult xmlns="{NS}"></DeleteResult>'.encode()
            sent = self._send(200, body)
            self._count("DeleteObjects", started, sent)
            return
        if object_key and "uploadId" in q:
            # S3's multipart ETag: MD5 of the parts' MD5s, then -<parts>.
            posted = self._posted.decode()
            etags = re.findall(r"<ETag>(?:&quot;|\")?([0-9a-f]{32})", posted)
            etag = "%s-%d" % (hashlib.md5(b"".join(bytes.fromhex(e) for e in etags)).hexdigest(), len(etags))
            path = None
            if getattr(self.config, "spool", None):
                numbers = [int(n) for n in re.findall(r"<PartNumber>(\d+)</PartNumber>", posted)]
                path = self._spool_path("objects", hashlib.md5(f"{bucket}/{object_key}".encode()).hexdigest())
                with open(path + ".tmp", "wb") as out:
                    for n in numbers:
                        part = self._spool_path("uploads", q["uploadId"], "%05d" % n)
                        with open(part, "rb") as f:
                            while True:
                                block = f.read(1 << 20)
                                if not block:
                                    break
                                out.write(block)
                        os.remove(part)
                os.replace(path + ".tmp", path)
            self.written[(bucket, object_key)] = (etag, path)
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult xmlns="{NS}"><Bucket>{escape(bucket)}</Bucket>'
                    f"<Key>{escape(object_key)}</Key><ETag>&quot;{etag}&quot;</ETag></CompleteMultipartUploadResult>").encode()
            sent = self._send(200, body, headers={"x-amz-version-id": "bench-mpu"})
            self._count("CompleteMultipartUpload", started, sent)
            return
        sent = self._send(501, error_body("NotImplemented", f"bench_s3.py does not serve POST {self.path}"))
        self._count("Unsupported POST " + ("&".join(sorted(q)) or "(object)"), started, sent)

    def do_DELETE(self):
        started = time.perf_counter()
        self._read_body()
        sent = self._send(204, b"")
        self._count("DeleteObject", started, sent)

    # -- operations -------------------------------------------------------------------------

    def _copy_object(self, bucket, object_key):
        """CopyObject from a generated object: counted (distinct targets in `CopiedKeys`), not
        stored."""
        source = unquote(self.headers["x-amz-copy-source"]).lstrip("/")
        source_bucket, _, source_key = source.partition("/")
        source_key = source_key.split("?versionId=")[0]
        index = self._source_index(source_bucket, source_key)
        if index is None:
            return self._send(404, error_body("NoSuchKey", "The specified key does not exist.", f"/{source}"))
        self.stats.copied(bucket, object_key, index)
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<CopyObjectResult xmlns="{NS}"><LastModified>{LAST_MODIFIED}</LastModified>'
                f"<ETag>&quot;{source_etag(index)}&quot;</ETag></CopyObjectResult>").encode()
        return self._send(200, body, headers={"x-amz-version-id": "bench-copy"})

    def _source_index(self, bucket, object_key):
        """The index of a generated object named by (bucket, key), or None."""
        if bucket != self.config.source_bucket:
            return None
        found = SOURCE_KEY.match(object_key)
        if not found or int(found.group(1)) >= self.config.objects:
            return None
        return int(found.group(1))

    def _object(self, bucket, object_key, head):
        cfg = self.config
        index = self._source_index(bucket, object_key) if OBJECT_SIZE is not None else None
        if index is None and OBJECT_SIZE is not None:
            # A copy's target reads as its source (rclone HEADs what it copied).
            index = self.stats.copy_of(bucket, object_key)
        if index is not None:
            headers = {"ETag": f'"{source_etag(index)}"', "Last-Modified": "Sun, 01 Nov 2026 00:00:00 GMT",
                       "x-amz-version-id": version_id(index)}
            return self._send(200, b"\0" * source_size(index), "application/octet-stream", headers=headers, head=head)
        staged = STAGED_ROWS.search(object_key)
        if staged:
            body = staged_rows(int(staged.group(1)), staged.group(2)).encode()
            return self._send(200, body, "text/csv", head=head)
        draft = DRAFT.search(object_key)
        if draft and getattr(cfg, "changed_every", 0):
            return self._send(200, draft_part(int(draft.group(1)), cfg).encode(), "text/plain", head=head)
        part = FRAGMENT.search(object_key)
        if part and getattr(cfg, "changed_every", 0):
            return self._send(200, fragment(int(part.group(1)), cfg).encode(), "text/plain", head=head)
        if (bucket, object_key) in self.written:
            etag, path = self.written[(bucket, object_key)]
            if path is None:
                return self._send(200, b"", "text/csv", headers={"ETag": f'"{etag}"'}, head=True)
            return self._file(path, etag, "bench-written", head)
        if bucket != cfg.catalog_bucket or object_key != cfg.catalog_key or not cfg.catalog_file:
            return self._send(404, error_body("NoSuchKey", "The specified key does not exist.", f"/{bucket}/{object_key}"), head=head)
        return self._file(cfg.catalog_file, cfg.catalog_etag, "bench-catalog", head)

    def _file(self, path, etag, version, head):
        """A stored file as an object: ETag, If-Match, `Range: bytes=N-`."""
        size_ = os.path.getsize(path)
        headers = {
            "ETag": f'"{etag}"',
            "Last-Modified": email.utils.formatdate(os.path.getmtime(path), usegmt=True),
            "Accept-Ranges": "bytes",
            "x-amz-version-id": version,
        }
        if_match = self.headers.get("If-Match")
        if if_match and if_match.strip('"') != etag:
            return self._send(412, error_body("PreconditionFailed", "At least one of the pre-conditions you specified did not hold"), head=head)
        start = 0
        status = 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng[6:].endswith("-"):
            start = int(rng[6:-1])
            if start >= size_:
                return self._send(416, error_body("InvalidRange", "The requested range is not satisfiable"), head=head)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{size_ - 1}/{size_}"
        length = size_ - start
        self._send_when_due(status, "application/gzip", length, headers)
        if head:
            return 0
        with open(path, "rb") as f:
            f.seek(start)
            sent = 0
            while True:
                block = f.read(1 << 20)
                if not block:
                    break
                self.wfile.write(block)
                sent += len(block)
        return sent

    def _page_bounds(self, bucket, prefix, after_key, max_keys):
        if bucket != self.config.source_bucket:
            return 0, 0, False
        start, stop = self.source.prefix_range(prefix)
        if after_key:
            start = max(start, self.source.after(after_key))
        end = min(stop, start + max_keys)
        return start, end, end < stop

    def _list_versions(self, bucket, q):
        prefix = q.get("prefix", "")
        key_marker = q.get("key-marker", "")
        version_marker = q.get("version-id-marker", "")
        max_keys = max(0, min(PAGE, int(q.get("max-keys", PAGE))))
        # One version per key: after (key, its version) and after the key alone are the same place.
        start, end, truncated = self._page_bounds(bucket, prefix, key_marker, max_keys)
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>\n',
            f'<ListVersionsResult xmlns="{NS}"><Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>',
            f"<KeyMarker>{escape(key_marker)}</KeyMarker><VersionIdMarker>{escape(version_marker)}</VersionIdMarker>",
        ]
        if truncated:
            parts.append(f"<NextKeyMarker>{key(end - 1)}</NextKeyMarker><NextVersionIdMarker>{version_id(end - 1)}</NextVersionIdMarker>")
        parts.append(f"<MaxKeys>{max_keys}</MaxKeys><IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
        if "encoding-type" in q:
            parts.append(f"<EncodingType>{escape(q['encoding-type'])}</EncodingType>")
        parts.append(version_entries(start, end))
        parts.append("</ListVersionsResult>")
        return "".join(parts).encode()

    def _list_objects_v2(self, bucket, q):
        prefix = q.get("prefix", "")
        start_after = q.get("start-after", "")
        token = q.get("continuation-token", "")
        max_keys = max(0, min(PAGE, int(q.get("max-keys", PAGE))))
        after_key = max(start_after, token)  # the token is the last key returned
        start, end, truncated = self._page_bounds(bucket, prefix, after_key, max_keys)
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>\n',
            f'<ListBucketResult xmlns="{NS}"><Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>',
            f"<KeyCount>{end - start}</KeyCount><MaxKeys>{max_keys}</MaxKeys><IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
        ]
        if token:
            parts.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
        if truncated:
            parts.append(f"<NextContinuationToken>{key(end - 1)}</NextContinuationToken>")
        if start_after:
            parts.append(f"<StartAfter>{escape(start_after)}</StartAfter>")
        if "encoding-type" in q:
            parts.append(f"<EncodingType>{escape(q['encoding-type'])}</EncodingType>")
        parts.append(contents_entries(start, end))
        parts.append("</ListBucketResult>")
        return "".join(parts).encode()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # The worker bench keeps 64+ connections open at once.
    request_queue_size = 512
    allow_reuse_address = True


def md5_file(path):
    import hashlib

    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


KNOWN_OPERATIONS = ["GetBucketVersioning", "ListObjectVersions", "ListObjectsV2", "GetObject"]


def table_header(target):
    cells = ["run", "objects", *KNOWN_OPERATIONS, "other", "requests", "requests/object", f"/ target {target}",
             "copies", "unchanged", "diff rate entries/s", "wall s", "batchops CPU s", "peak RSS MiB", "server render s"]
    print("| " + " | ".join(cells) + " |")
    print("|---|" + "---:|" * (len(cells) - 1))


def table_row(args):
    """One table row from a run's `batchops plan --json` output and the server's counts; the
    run's problems on further lines starting with FAIL."""
    with open(args.plan) as f:
        plan = json.load(f)
    with open(args.stats) as f:
        server = json.load(f)
    run, objects, target = args.run, args.objects, args.target
    counts = dict(server["Requests"])
    other = {k: v for k, v in counts.items() if k not in KNOWN_OPERATIONS}
    total = server["Total"]
    per_object = total / objects
    problems = []
    if plan.get("FailureCode"):
        problems.append(f"{run}: the run would fail: {plan['FailureCode']}: {plan['FailureReason']}")
    if plan["ObjectsListed"] != objects:
        problems.append(f"{run}: listed {plan['ObjectsListed']} objects, expected {objects}")
    if run == "full" and plan["CopyTasks"] != objects:
        problems.append(f"full: {plan['CopyTasks']} copy tasks, expected {objects}")
    if run == "incremental":
        if plan["CopyTasks"] != 0 or plan["TotalNumberOfTasks"] != 0:
            problems.append(
                f"incremental: {plan['CopyTasks']} copy tasks ({plan['TotalNumberOfTasks']} tasks in all) "
                f"over {objects} unchanged objects, expected none"
            )
        if plan["Unchanged"] != objects or plan["CatalogEntriesRead"] != objects:
            problems.append(
                f"incremental: {plan['Unchanged']} unchanged, {plan['CatalogEntriesRead']} catalog entries read, "
                f"expected {objects} of each"
            )
        if per_object >= target:
            problems.append(
                f"incremental: {total} requests for {objects} objects = {per_object:.6f} per object, "
                f"not below the target {target} (by kind: {counts})"
            )
    other_cell = ", ".join(f"{k} {v}" for k, v in sorted(other.items())) or "0"
    cells = [run, f"{objects:,}", *(f"{counts.get(k, 0):,}" for k in KNOWN_OPERATIONS), other_cell, f"{total:,}",
             f"{per_object:.6f}", f"{per_object / target:.2f}x", f"{plan['CopyTasks']:,}", f"{plan['Unchanged']:,}",
             f"{objects / args.wall:,.0f}", f"{args.wall:.2f}", f"{args.user + args.sys:.2f}", f"{args.rss_kib / 1024:.1f}",
             f"{server['RenderSeconds']:.2f}"]
    print("| " + " | ".join(cells) + " |")
    for problem in problems:
        print("FAIL " + problem)


FINALIZE_KINDS = ["GetObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "PutObject", "HeadObject"]


def finalize_header():
    cells = ["tasks", *FINALIZE_KINDS, "other", "wall s", "CPU s", "peak RSS MiB", "manifest written"]
    print("| " + " | ".join(cells) + " |")
    print("|" + "---:|" * (len(cells) - 1) + "---|")


def finalize_row(args):
    with open(args.stats) as f:
        counts = json.load(f)["Requests"]
    with open(args.roll) as f:
        roll = json.load(f)
    other = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k not in FINALIZE_KINDS) or "0"
    cells = [f"{args.tasks:,}", *(f"{counts.get(k, 0):,}" for k in FINALIZE_KINDS), other, f"{args.wall:.1f}",
             f"{args.user + args.sys:.1f}", f"{args.rss_kib / 1024:.1f}", "yes" if roll.get("manifest_written") else "NO"]
    print("| " + " | ".join(cells) + " |")


COMPLETION_KINDS = ["GetObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "PutObject",
                    "DeleteObjects", "DeleteObject"]


def completion_header():
    cells = ["objects", "copies", *COMPLETION_KINDS, "other", "requests", "catalog MB written", "versions deleted",
             "wall s", "CPU s", "peak RSS MiB"]
    print("| " + " | ".join(cells) + " |")
    print("|" + "---:|" * len(cells))


def completion_row(args):
    """One row from snapshot_bench's output and the server's counts; the run's problems on
    further lines starting with FAIL."""
    with open(args.stats) as f:
        server = json.load(f)
    with open(args.result) as f:
        result = json.load(f)
    counts, totals = server["Requests"], server.get("Totals", {})
    objects, every = args.objects, args.changed_every
    copies = (objects - 1) // every + 1 if objects else 0
    other = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k not in COMPLETION_KINDS) or "0"
    snapshot = result["snapshot"]
    problems = []
    if (snapshot["objects"], snapshot["copied"]) != (objects, copies):
        problems.append(f"the snapshot has {snapshot['objects']} objects, {snapshot['copied']} copied; "
                        f"expected {objects} and {copies}")
    if result["snapshots"] != [snapshot["id"]]:
        problems.append(f"snapshots left {result['snapshots']}: retention should have expired the previous one")
    if totals.get("DeletedVersions", 0) != copies:
        problems.append(f"retention deleted {totals.get('DeletedVersions', 0)} versions, expected {copies} "
                        "(the previous copies of the changed objects)")
    if snapshot.get("settling"):
        problems.append("the snapshot is still marked settling")
    cells = [f"{objects:,}", f"{copies:,}", *(f"{counts.get(k, 0):,}" for k in COMPLETION_KINDS), other,
             f"{server['Total']:,}", f"{totals.get('BytesUploaded', 0) / 1e6:,.0f}",
             f"{totals.get('DeletedVersions', 0):,}", f"{args.wall:.1f}", f"{args.user + args.sys:.1f}",
             f"{args.rss_kib / 1024:.1f}"]
    print("| " + " | ".join(cells) + " |")
    if args.rss_kib >= args.rss_limit_mib * 1024:
        problems.append(f"peak RSS {args.rss_kib / 1024:.0f} MiB, limit {args.rss_limit_mib} MiB")
    for problem in problems:
        print("FAIL " + problem)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cat = sub.add_parser("catalog", help="write the previous snapshot's catalog for N objects")
    cat.add_argument("--objects", type=int, required=True)
    cat.add_argument("--dest-prefix", default="")
    cat.add_argument("--out", required=True)
    serve = sub.add_parser("serve", help="serve the fake endpoint")
    serve.add_argument("--objects", type=int, required=True)
    serve.add_argument("--source-bucket", required=True)
    serve.add_argument("--catalog-bucket", default="")
    serve.add_argument("--catalog-key", default="")
    serve.add_argument("--catalog-file", default="", help="none: no catalog (the finalize bench)")
    serve.add_argument("--spool", default="", help="keep uploads in this directory and serve them back")
    serve.add_argument("--changed-every", type=int, default=0,
                       help="completion case: every Nth object changed (0: no drafts or fragments served)")
    serve.add_argument("--draft-rows", type=int, default=10_000, help="completion case: rows per draft part")
    serve.add_argument("--chunk-tasks", type=int, default=1000, help="completion case: copy tasks per chunk")
    serve.add_argument("--dest-prefix", default="", help="completion case: the backup directory")
    serve.add_argument("--object-size", type=int, default=None,
                       help="worker bench: every generated object has this size and can be read and copied")
    serve.add_argument("--latency-ms", type=float, default=0.0, help="worker bench: added to every S3 request")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--port-file", help="write the bound port here once listening")
    header = sub.add_parser("table-header", help="the benchmark table's header (markdown)")
    header.add_argument("--target", type=float, required=True)
    row = sub.add_parser("table-row", help="one benchmark table row (markdown), then FAIL lines")
    row.add_argument("--run", choices=["full", "incremental"], required=True)
    row.add_argument("--objects", type=int, required=True)
    row.add_argument("--wall", type=float, required=True, help="wall seconds of the run")
    row.add_argument("--user", type=float, required=True, help="user CPU seconds of the run")
    row.add_argument("--sys", type=float, required=True, help="system CPU seconds of the run")
    row.add_argument("--rss-kib", type=int, required=True, help="peak RSS of the run, KiB")
    row.add_argument("--plan", required=True, help="the run's `batchops plan --json` output")
    row.add_argument("--stats", required=True, help="the server's /__stats after the run")
    row.add_argument("--target", type=float, required=True, help="requests per unchanged object")
    sub.add_parser("finalize-header", help="the finalize benchmark's table header (markdown)")
    frow = sub.add_parser("finalize-row", help="one finalize benchmark row (markdown)")
    frow.add_argument("--tasks", type=int, required=True)
    frow.add_argument("--wall", type=float, required=True)
    frow.add_argument("--user", type=float, required=True)
    frow.add_argument("--sys", type=float, required=True)
    frow.add_argument("--rss-kib", type=int, required=True)
    frow.add_argument("--stats", required=True, help="the server's /__stats after the roll")
    frow.add_argument("--roll", required=True, help="report_bench roll's output (the checkpoint)")
    sub.add_parser("completion-header", help="the completion case's table header (markdown)")
    crow = sub.add_parser("completion-row", help="one completion case row (markdown), then FAIL lines")
    crow.add_argument("--objects", type=int, required=True)
    crow.add_argument("--changed-every", type=int, required=True)
    crow.add_argument("--wall", type=float, required=True)
    crow.add_argument("--user", type=float, required=True)
    crow.add_argument("--sys", type=float, required=True)
    crow.add_argument("--rss-kib", type=int, required=True)
    crow.add_argument("--rss-limit-mib", type=int, required=True)
    crow.add_argument("--stats", required=True, help="the server's /__stats after the completion")
    crow.add_argument("--result", required=True, help="snapshot_bench complete's output")
    args = parser.parse_args()

    if args.command == "completion-header":
        completion_header()
        return
    if args.command == "completion-row":
        completion_row(args)
        return
    if args.command == "finalize-header":
        finalize_header()
        return
    if args.command == "finalize-row":
        finalize_row(args)
        return

    if args.command == "table-header":
        table_header(args.target)
        return
    if args.command == "table-row":
        table_row(args)
        return
    if args.command == "catalog":
        write_catalog(args.objects, args.dest_prefix, args.out)
        return

    if args.catalog_file:
        if not os.path.isfile(args.catalog_file):
            sys.exit(f"bench_s3.py: catalog file {args.catalog_file} does not exist (run the `catalog` command first)")
        args.catalog_etag = md5_file(args.catalog_file)
        args.catalog_mtime = os.path.getmtime(args.catalog_file)
    global OBJECT_SIZE, LATENCY
    OBJECT_SIZE = args.object_size
    LATENCY = args.latency_ms / 1000.0
    Handler.config = args
    Handler.source = Source(args.objects)
    Handler.stats = Stats()
    server = Server((args.host, args.port), Handler)
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    print(f"bench_s3.py: {args.objects} objects in s3://{args.source_bucket} on http://{args.host}:{port}", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
