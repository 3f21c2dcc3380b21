"""Seeds the demo's versioned source bucket and writes its CSV manifest.

Keys cover what breaks naive tools: spaces, '+', '%', unicode, emoji, deep prefixes, and a few
objects above the multipart threshold. Each object is written twice, so the manifest's pinned
version IDs (the first writes) differ from what is latest.
"""

import argparse
import concurrent.futures
import urllib.parse

import boto3

AWKWARD = ["with space", "plus+sign", "percent%25", "ünïcödé", "日本語", "emoji 🎉", "a/b/c/d/e/f/deep"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--objects", type=int, default=3000)
    parser.add_argument("--large", type=int, default=3)
    parser.add_argument("--large-bytes", type=int, default=12 * 1024 * 1024 + 17)
    parser.add_argument("--manifest-key", default="manifests/demo.csv")
    args = parser.parse_args()

    s3 = boto3.client("s3")
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if args.bucket not in existing:
        s3.create_bucket(Bucket=args.bucket)
    s3.put_bucket_versioning(Bucket=args.bucket, VersioningConfiguration={"Status": "Enabled"})

    keys = [f"data/{AWKWARD[i % len(AWKWARD)]}/object {i:05d}.txt" for i in range(args.objects)]
    keys += [f"large/blob {i}.bin" for i in range(args.large)]

    def write(key: str) -> str:
        if key.startswith("large/"):
            body = bytes(range(256)) * (args.large_bytes // 256) + b"x" * (args.large_bytes % 256)
        else:
            body = f"first version of {key}\n".encode()
        first = s3.put_object(Bucket=args.bucket, Key=key, Body=body)["VersionId"]
        # A later overwrite the job must not copy: the manifest pins the first version.
        s3.put_object(Bucket=args.bucket, Key=key, Body=b"overwritten later")
        return first

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        versions = list(pool.map(write, keys))

    lines = [f"{args.bucket},{urllib.parse.quote(k, safe='/')},{v}" for k, v in zip(keys, versions)]
    s3.put_object(Bucket=args.bucket, Key=args.manifest_key, Body=("\n".join(lines) + "\n").encode())
    print(f"seeded s3://{args.bucket}: {len(keys)} objects ({args.large} large), manifest s3://{args.bucket}/{args.manifest_key}")


if __name__ == "__main__":
    main()
