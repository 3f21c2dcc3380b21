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
    return "".join(
        [CONTENTS_TEMPLATE % (i, (i * ETAG_MULTIPLIER + 1) & ETAG_MASK, 1024 + i % 4096) for i in range(start, stop)]
    )


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
            self.render_seconds = 0.0
            self.bytes_sent = 0
            self.started = time.time()

    def add(self, operation, rendered_in, sent):
        with self.lock:
            self.counts[operation] = self.counts.get(operation, 0) + 1
            self.render_seconds += rendered_in
            self.bytes_sent += sent

    def snapshot(self):
        with self.lock:
            return {
                "Requests": dict(sorted(self.counts.items())),
                "Total": sum(self.counts.values()),
                "RenderSeconds": round(self.render_seconds, 3),
                "BytesSent": self.bytes_sent,
                "SinceResetSeconds": round(time.time() - self.started, 3),
            }


def error_body(code, message, resource=""):
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>bench</RequestId></Error>"
    ).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
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

    def _read_body(self, keep=False):
        """Reads the request body: its hex MD5 (as received) and, with `keep`, the bytes."""
        digest = hashlib.md5()
        kept = []
        length = self.headers.get("Content-Length")
        if length is not None:
            remaining = int(length)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                digest.update(chunk)
                if keep:
                    kept.append(chunk)
                remaining -= len(chunk)
        elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline()
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                self.rfile.read(n + 2)

        return digest.hexdigest(), b"".join(kept)

    def _send(self, status, body, content_type="application/xml", headers=None, head=False):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amz-request-id", "bench")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)
        return 0 if head else len(body)

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

    def _get(self, head):
        started = time.perf_counter()
        if self.path == "/__stats":
            body = json.dumps(self.stats.snapshot()).encode()
            self._send(200, body, "application/json", head=head)
            return
        bucket, object_key, q = self._route()
        if object_key:
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

    def do_PUT(self):
        started = time.perf_counter()
        md5, _ = self._read_body()
        bucket, object_key, q = self._route()
        if object_key and "uploadId" in q:
            operation = "UploadPart"
            headers = {"ETag": f'"{md5}"'}
        elif object_key:
            operation = "PutObject"
            headers = {"ETag": f'"{md5}"', "x-amz-version-id": "bench-put"}
            self.written[(bucket, object_key)] = md5
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
        if object_key and "uploadId" in q:
            # S3's multipart ETag: MD5 of the parts' MD5s, then -<parts>.
            etags = re.findall(r"<ETag>(?:&quot;|\")?([0-9a-f]{32})", self._posted.decode())
            etag = "%s-%d" % (hashlib.md5(b"".join(bytes.fromhex(e) for e in etags)).hexdigest(), len(etags))
            self.written[(bucket, object_key)] = etag
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult xmlns="{NS}"><Bucket>{escape(bucket)}</Bucket>'
                    f"<Key>{escape(object_key)}</Key><ETag>&quot;{etag}&quot;</ETag></CompleteMultipartUploadResult>").encode()
            sent = self._send(200, body)
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

    def _object(self, bucket, object_key, head):
        cfg = self.config
        staged = STAGED_ROWS.search(object_key)
        if staged:
            body = staged_rows(int(staged.group(1)), staged.group(2)).encode()
            return self._send(200, body, "text/csv", head=head)
        if (bucket, object_key) in self.written:
            return self._send(200, b"", "text/csv", headers={"ETag": f'"{self.written[(bucket, object_key)]}"'}, head=True)
        if bucket != cfg.catalog_bucket or object_key != cfg.catalog_key or not cfg.catalog_file:
            return self._send(404, error_body("NoSuchKey", "The specified key does not exist.", f"/{bucket}/{object_key}"), head=head)
        size_ = os.path.getsize(cfg.catalog_file)
        headers = {
            "ETag": f'"{cfg.catalog_etag}"',
            "Last-Modified": email.utils.formatdate(cfg.catalog_mtime, usegmt=True),
            "Accept-Ranges": "bytes",
            "x-amz-version-id": "bench-catalog",
        }
        if_match = self.headers.get("If-Match")
        if if_match and if_match.strip('"') != cfg.catalog_etag:
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
        self.send_response(status)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(length))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if head:
            return 0
        with open(cfg.catalog_file, "rb") as f:
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
    args = parser.parse_args()

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
