"""Generates benchmark manifests on stdout: a Batch Operations CSV, or S3 Inventory CSV rows.

Keys vary in length and carry URL-encoded characters like real ones; nothing is random, so
every run of the benchmark reads the same bytes.
"""

import sys


def main() -> None:
    kind, lines = sys.argv[1], int(sys.argv[2])
    out = sys.stdout
    write = out.write
    if kind == "csv":
        for i in range(lines):
            write(f"bench-source,logs/2026/{i % 97:02d}/host-{i % 1013}/event%20{i:09d}.json\n")
    elif kind == "inventory":
        for i in range(lines):
            write(
                f'"bench-source","logs/2026/{i % 97:02d}/host-{i % 1013}/event+{i:09d}.json","3HL4kqtJlcpXroDTDmJ{i:013d}",'
                f'"true","false","{1000 + i % 50000}","2026-11-21T{i % 24:02d}:00:00.000Z","{i:032x}","STANDARD"\n'
            )
    else:
        raise SystemExit(f"unknown kind {kind}")


if __name__ == "__main__":
    main()
