"""Google Cloud Storage emulator for the export and import tests: PyPI's gcp-storage-emulator
(pinned in scripts/local-stack.sh) with the XML API requests that object_store's GCS client sends
and that the emulator does not serve, added in-process.

What gcp-storage-emulator 2026.7.19 lacks, and why this launcher adds it:

* object_store names an object as `/{bucket}/{object}` with both percent-encoded whole
  (`/batchops%2Dexports/exp%2Fdata%2Fa%20b`). The emulator matches its routes against the path
  before decoding it, so a bucket with a `-` (and anything under it) answers 501. Here the bucket
  and the object name are split on the first raw `/` and each is decoded on its own.
* XML multipart uploads (how object_store writes any object larger than one part):
  `POST ?uploads`, `PUT ?partNumber=N&uploadId=U`, `POST ?uploadId=U` (complete, with the parts'
  ETags), `DELETE ?uploadId=U` (abort). The emulator has none of them. Parts are held in memory
  until the upload completes or is aborted; completion checks them as GCS does (`InvalidPart`
  for a part never uploaded or with another ETag, `InvalidPartOrder`, `EntityTooSmall` for a
  part other than the last under 5 MiB) and stores the assembled object through the emulator's
  own storage, as a composite object (no MD5, an ETag that is not one, `componentCount`).
* XML `HEAD` and `DELETE` of an object, bucket listing (`GET /{bucket}?list-type=2`, with
  prefix, delimiter, start-after, max-keys and continuation tokens), open uploads
  (`GET /{bucket}?uploads`, how a test sees that a failed upload was aborted), `x-goog-copy-source`
  copies, and the headers object_store requires on every GET and HEAD (`ETag`, `Last-Modified`,
  `x-goog-generation`), ranges (`bytes=a-b`, `a-`, `-n`), `If-Match`/`If-None-Match` and
  `x-goog-if-generation-match` (`0`: only if absent) preconditions. Errors are GCS's XML
  `<Error><Code>` documents (`NoSuchKey`, `NoSuchBucket`, `NoSuchUpload`, ...).
* The emulator serves one request at a time with no locking; this server takes connections on
  threads and runs each request under one lock (bodies are read before it).

Every other request (the JSON API, `/wipe`) goes to the emulator's own handlers. Requests are not
authenticated (object_store sends an empty bearer token with `disable_oauth`).

Usage: gcs_emulator.py --port PORT [--host 127.0.0.1] [--bucket NAME ...]
"""

import argparse
import base64
import binascii
import email.utils
import hashlib
import logging
import secrets
import sys
import threading
from datetime import datetime, timezone
from functools import partial
from http import server
from urllib.parse import parse_qs, unquote, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from gcp_storage_emulator import server as upstream
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import buckets, objects
from gcp_storage_emulator.storage import Storage

# First path segments the emulator's JSON API owns; any other is a bucket (XML API). GCS bucket
# names have at least 3 characters, so `b` is never one.
JSON_API_ROOTS = {"", "storage", "upload", "download", "batch", "b", "wipe"}
# GCS's smallest part of a multipart upload, but for the last.
MIN_PART_BYTES = 5 * 1024 * 1024
XML_NS = "http://doc.s3.amazonaws.com/2006-03-01"
DEFAULT_MAX_KEYS = 1000

LOCK = threading.RLock()
# Open multipart uploads: upload ID -> {bucket, name, content_type, metadata, parts: {n: (etag, bytes)}}.
UPLOADS = {}


class XmlError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def quoted(etag):
    return '"{}"'.format(etag.strip('"'))


def bare(etag):
    return etag.strip().removeprefix("W/").strip('"')


def object_etag(obj):
    """The XML API's ETag of a stored object: the MD5 in hex (GCS's for a non-composite object);
    objects uploaded through the JSON API hold it in base64."""
    etag = obj.get("etag") or ""
    if obj.get("md5Hash") and etag == obj["md5Hash"]:
        return binascii.hexlify(base64.b64decode(etag)).decode()
    return etag


def updated(obj):
    return datetime.strptime(obj["updated"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc
    )


def xml_document(root, body):
    return '<?xml version="1.0" encoding="UTF-8"?>\n<{0} xmlns="{1}">{2}</{0}>'.format(
        root, XML_NS, body
    ).encode()


def element(name, value):
    return "<{0}>{1}</{0}>".format(name, escape(str(value)))


class Handler(upstream.RequestHandler):
    """The emulator's handler, with the XML API requests it lacks served first."""

    def do_GET(self):
        self.dispatch("GET", super().do_GET)

    def do_HEAD(self):
        self.dispatch("HEAD", None)

    def do_PUT(self):
        self.dispatch("PUT", super().do_PUT)

    def do_POST(self):
        self.dispatch("POST", super().do_POST)

    def do_DELETE(self):
        self.dispatch("DELETE", super().do_DELETE)

    def do_PATCH(self):
        with LOCK:
            super().do_PATCH()

    def dispatch(self, method, fallback):
        url = urlsplit(self.path)
        raw_bucket, _, raw_name = url.path.lstrip("/").partition("/")
        bucket = unquote(raw_bucket)
        if bucket in JSON_API_ROOTS:
            if fallback is None:
                return self.reply_error(XmlError(501, "NotImplemented", method + " " + url.path))
            with LOCK:
                return fallback()
        self.query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        self.bucket, self.name = bucket, unquote(raw_name)
        body = upstream._read_raw_data(self) or b""
        try:
            with LOCK:
                if self.bucket not in self.storage.buckets and not (
                    method == "PUT" and not self.name
                ):
                    raise XmlError(404, "NoSuchBucket", "bucket {} does not exist".format(bucket))
                if not self.name:
                    status, headers, payload = self.bucket_request(method, body)
                else:
                    status, headers, payload = self.object_request(method, body)
        except XmlError as err:
            return self.reply_error(err)
        self.reply(status, headers, payload, head=method == "HEAD")

    def reply(self, status, headers, payload, head=False):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not head:
            self.wfile.write(payload)

    def reply_error(self, err):
        body = "<Error>{}{}</Error>".format(element("Code", err.code), element("Message", err.message))
        self.reply(
            err.status,
            {"Content-Type": "application/xml"},
            ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode(),
            head=self.command == "HEAD",
        )

    # Buckets

    def bucket_request(self, method, body):
        if method == "PUT":
            buckets.create_bucket(self.bucket, self.storage)
            return 200, {}, b""
        if method == "HEAD":
            return 200, {}, b""
        if method == "GET" and "uploads" in self.query:
            return self.list_uploads()
        if method == "GET":
            return self.list_objects()
        raise XmlError(501, "NotImplemented", "{} /{}?{}".format(method, self.bucket, self.query))

    def list_objects(self):
        prefix = self.query.get("prefix", "")
        delimiter = self.query.get("delimiter", "")
        try:
            max_keys = int(self.query.get("max-keys", DEFAULT_MAX_KEYS))
        except ValueError:
            raise XmlError(400, "InvalidArgument", "max-keys must be an integer")
        after = self.query.get("start-after", "")
        token = self.query.get("continuation-token")
        if token:
            try:
                after = max(after, base64.urlsafe_b64decode(token.encode()).decode())
            except (binascii.Error, UnicodeDecodeError):
                raise XmlError(400, "InvalidArgument", "invalid continuation-token")
        names = sorted(
            name
            for name in self.storage.objects.get(self.bucket, {})
            if name.startswith(prefix) and name > after
        )
        contents, prefixes, truncated = [], [], False
        # Where the next page starts after: the last key, or past all keys under the last prefix.
        resume = None
        for name in names:
            if prefixes and resume == prefixes[-1] and name.startswith(resume):
                continue  # under the common prefix just listed
            if len(contents) + len(prefixes) >= max_keys:
                truncated = True
                break
            rest = name[len(prefix):]
            if delimiter and delimiter in rest:
                resume = prefix + rest[: rest.index(delimiter) + len(delimiter)]
                prefixes.append(resume)
            else:
                resume = name
                contents.append(self.storage.objects[self.bucket][name])
        body = [
            element("Name", self.bucket),
            element("Prefix", prefix),
            element("KeyCount", len(contents) + len(prefixes)),
            element("MaxKeys", max_keys),
            element("IsTruncated", "true" if truncated else "false"),
        ]
        if delimiter:
            body.append(element("Delimiter", delimiter))
        for obj in contents:
            body.append(
                "<Contents>{}{}{}{}{}</Contents>".format(
                    element("Key", obj["name"]),
                    element("Generation", obj["generation"]),
                    element("LastModified", updated(obj).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"),
                    element("ETag", quoted(object_etag(obj))),
                    element("Size", obj["size"]),
                )
            )
        for common in prefixes:
            body.append("<CommonPrefixes>{}</CommonPrefixes>".format(element("Prefix", common)))
        if truncated:
            if prefixes and resume == prefixes[-1]:
                resume += "\U0010ffff"
            token = base64.urlsafe_b64encode(resume.encode()).decode()
            body.append(element("NextContinuationToken", token))
        return 200, {"Content-Type": "application/xml"}, xml_document("ListBucketResult", "".join(body))

    def list_uploads(self):
        """The bucket's open multipart uploads under `prefix` (one page: tests hold few)."""
        prefix = self.query.get("prefix", "")
        open_uploads = sorted(
            (upload["name"], upload_id, upload["initiated"])
            for upload_id, upload in UPLOADS.items()
            if upload["bucket"] == self.bucket and upload["name"].startswith(prefix)
        )
        body = [element("Bucket", self.bucket), element("Prefix", prefix), element("IsTruncated", "false")]
        for name, upload_id, initiated in open_uploads:
            body.append(
                "<Upload>{}{}{}</Upload>".format(
                    element("Key", name), element("UploadId", upload_id), element("Initiated", initiated)
                )
            )
        return 200, {"Content-Type": "application/xml"}, xml_document("ListMultipartUploadsResult", "".join(body))

    # Objects

    def object_request(self, method, body):
        if method == "POST" and "uploads" in self.query:
            return self.initiate_upload()
        if method == "PUT" and "uploadId" in self.query:
            return self.upload_part(body)
        if method == "POST" and "uploadId" in self.query:
            return self.complete_upload(body)
        if method == "DELETE" and "uploadId" in self.query:
            self.upload()
            del UPLOADS[self.query["uploadId"]]
            return 204, {}, b""
        if method == "PUT" and self.headers.get("x-goog-copy-source"):
            return self.copy_object()
        if method == "PUT":
            return self.put_object(body)
        if method in ("GET", "HEAD"):
            return self.get_object()
        if method == "DELETE":
            try:
                self.storage.delete_file(self.bucket, self.name)
            except NotFound:
                raise XmlError(404, "NoSuchKey", "no object {}".format(self.name))
            return 204, {}, b""
        raise XmlError(501, "NotImplemented", "{} with {}".format(method, sorted(self.query)))

    def current(self):
        return self.storage.objects.get(self.bucket, {}).get(self.name)

    def check_generation_match(self):
        wanted = self.headers.get("x-goog-if-generation-match")
        if wanted is None:
            return
        existing = self.current()
        generation = existing["generation"] if existing else "0"
        if wanted != generation:
            raise XmlError(
                412,
                "PreconditionFailed",
                "x-goog-if-generation-match {} but the generation is {}".format(wanted, generation),
            )

    def metadata(self):
        prefix = "x-goog-meta-"
        return {
            name[len(prefix):]: value
            for name, value in self.headers.items()
            if name.lower().startswith(prefix)
        }

    def store(self, name, content, content_type, metadata, composite_parts=None):
        """Stores an object through the emulator's storage; returns its resource."""
        obj = objects._make_object_resource(
            "http://{}".format(self.headers.get("Host", "")),
            self.bucket,
            name,
            content_type,
            str(len(content)),
        )
        if metadata:
            obj["metadata"] = dict(metadata)
        obj = objects._checksums(content, obj)
        if composite_parts is not None:
            # A composite object: GCS keeps no MD5 of it, and its ETag is not one.
            del obj["md5Hash"]
            digest = hashlib.md5(b"".join(binascii.unhexlify(e) for e in composite_parts))
            obj["etag"] = "{}-{}".format(digest.hexdigest(), len(composite_parts))
            obj["componentCount"] = len(composite_parts)
        else:
            obj["etag"] = hashlib.md5(content).hexdigest()
        self.storage.create_file(self.bucket, name, content, obj)
        return obj

    def written(self, obj):
        return {
            "ETag": quoted(object_etag(obj)),
            "x-goog-generation": obj["generation"],
            "x-goog-metageneration": obj["metageneration"],
            "x-goog-hash": self.hashes(obj),
        }

    @staticmethod
    def hashes(obj):
        hashes = ["crc32c=" + obj["crc32c"]]
        if obj.get("md5Hash"):
            hashes.append("md5=" + obj["md5Hash"])
        return ",".join(hashes)

    def put_object(self, body):
        self.check_generation_match()
        content_type = self.headers.get("Content-Type", "application/octet-stream")
        obj = self.store(self.name, body, content_type, self.metadata())
        return 200, self.written(obj), b""

    def copy_object(self):
        source = self.headers["x-goog-copy-source"].lstrip("/")
        raw_bucket, _, raw_name = source.partition("/")
        source_bucket, source_name = unquote(raw_bucket), unquote(raw_name)
        try:
            source_obj = self.storage.get_file_obj(source_bucket, source_name)
            content = self.storage.get_file(source_bucket, source_name, show_error=False)
        except NotFound:
            raise XmlError(404, "NoSuchKey", "no object {} to copy".format(source))
        self.check_generation_match()
        obj = self.store(
            self.name,
            content,
            source_obj.get("contentType") or "application/octet-stream",
            source_obj.get("metadata"),
        )
        body = element("LastModified", obj["updated"]) + element("ETag", quoted(object_etag(obj)))
        return 200, self.written(obj), xml_document("CopyObjectResult", body)

    def get_object(self):
        obj = self.current()
        generation = self.query.get("generation")
        if obj is None or (generation is not None and generation != obj["generation"]):
            raise XmlError(404, "NoSuchKey", "no object {}".format(self.name))
        etag = object_etag(obj)
        if_match = self.headers.get("If-Match")
        if if_match and if_match.strip() != "*" and bare(if_match) != etag:
            raise XmlError(412, "PreconditionFailed", "If-Match {} but the ETag is {}".format(if_match, etag))
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match and (if_none_match.strip() == "*" or bare(if_none_match) == etag):
            return 304, {"ETag": quoted(etag)}, b""
        content = self.storage.get_file(self.bucket, self.name, show_error=False)
        headers = {
            "Content-Type": obj.get("contentType") or "application/octet-stream",
            "ETag": quoted(etag),
            "Last-Modified": email.utils.format_datetime(updated(obj), usegmt=True),
            "x-goog-generation": obj["generation"],
            "x-goog-metageneration": obj["metageneration"],
            "x-goog-stored-content-length": str(len(content)),
            "x-goog-hash": self.hashes(obj),
            "Accept-Ranges": "bytes",
        }
        for key, value in (obj.get("metadata") or {}).items():
            headers["x-goog-meta-" + key] = str(value)
        requested = self.headers.get("Range")
        if not requested:
            return 200, headers, content
        start, end = self.byte_range(requested, len(content))
        headers["Content-Range"] = "bytes {}-{}/{}".format(start, end, len(content))
        return 206, headers, content[start:end + 1]

    @staticmethod
    def byte_range(requested, size):
        """The inclusive (first, last) byte a `Range: bytes=...` header names."""
        unit, _, spec = requested.strip().partition("=")
        first, dash, last = spec.partition("-")
        try:
            if unit != "bytes" or not dash or "," in spec:
                raise ValueError
            if first == "":
                start, end = max(size - int(last), 0), size - 1
            else:
                start = int(first)
                end = min(int(last), size - 1) if last else size - 1
        except ValueError:
            raise XmlError(400, "InvalidArgument", "unsupported Range {}".format(requested))
        if start >= size or start > end:
            raise XmlError(416, "InvalidRange", "Range {} of {} bytes".format(requested, size))
        return start, end

    # Multipart uploads

    def initiate_upload(self):
        upload_id = secrets.token_urlsafe(24)
        UPLOADS[upload_id] = {
            "bucket": self.bucket,
            "name": self.name,
            "content_type": self.headers.get("Content-Type", "application/octet-stream"),
            "metadata": self.metadata(),
            "initiated": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "parts": {},
        }
        body = element("Bucket", self.bucket) + element("Key", self.name) + element("UploadId", upload_id)
        return 200, {"Content-Type": "application/xml"}, xml_document("InitiateMultipartUploadResult", body)

    def upload(self):
        upload = UPLOADS.get(self.query["uploadId"])
        if upload is None or (upload["bucket"], upload["name"]) != (self.bucket, self.name):
            raise XmlError(404, "NoSuchUpload", "no upload {} of {}".format(self.query["uploadId"], self.name))
        return upload

    def upload_part(self, body):
        upload = self.upload()
        try:
            number = int(self.query.get("partNumber", ""))
        except ValueError:
            number = 0
        if not 1 <= number <= 10000:
            raise XmlError(400, "InvalidArgument", "partNumber must be 1 to 10000")
        etag = hashlib.md5(body).hexdigest()
        upload["parts"][number] = (etag, body)
        return 200, {"ETag": quoted(etag)}, b""

    def complete_upload(self, body):
        upload = self.upload()
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError as err:
            raise XmlError(400, "MalformedXML", "CompleteMultipartUpload: {}".format(err))
        listed = []
        for part in root.iter():
            if part.tag.rsplit("}", 1)[-1] != "Part":
                continue
            fields = {child.tag.rsplit("}", 1)[-1]: (child.text or "") for child in part}
            try:
                listed.append((int(fields["PartNumber"]), bare(fields["ETag"])))
            except (KeyError, ValueError):
                raise XmlError(400, "MalformedXML", "a Part needs a PartNumber and an ETag")
        if not listed:
            raise XmlError(400, "MalformedXML", "CompleteMultipartUpload lists no part")
        numbers = [number for number, _ in listed]
        if numbers != sorted(set(numbers)):
            raise XmlError(400, "InvalidPartOrder", "parts must be listed in ascending order")
        contents = []
        for index, (number, etag) in enumerate(listed):
            stored = upload["parts"].get(number)
            if stored is None or stored[0] != etag:
                raise XmlError(400, "InvalidPart", "part {} with ETag {} was not uploaded".format(number, etag))
            if index < len(listed) - 1 and len(stored[1]) < MIN_PART_BYTES:
                raise XmlError(400, "EntityTooSmall", "part {} is under 5 MiB and not the last".format(number))
            contents.append(stored[1])
        obj = self.store(
            self.name,
            b"".join(contents),
            upload["content_type"],
            upload["metadata"],
            composite_parts=[etag for _, etag in listed],
        )
        del UPLOADS[self.query["uploadId"]]
        body = (
            element("Location", "http://{}/{}/{}".format(self.headers.get("Host", ""), self.bucket, self.name))
            + element("Bucket", self.bucket)
            + element("Key", self.name)
            + element("ETag", quoted(object_etag(obj)))
        )
        return 200, self.written(obj), xml_document("CompleteMultipartUploadResult", body)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bucket", action="append", default=[], help="a bucket to create at start")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    storage = Storage(use_memory_fs=True)
    for name in args.bucket:
        buckets.create_bucket(name, storage)
    httpd = server.ThreadingHTTPServer((args.host, args.port), partial(Handler, storage))
    httpd.daemon_threads = True
    print("gcs emulator listening on http://{}:{}".format(args.host, args.port), flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
