#!/usr/bin/env python3
"""The AWS CLI (from the project's .venv) with every name under `.127.0.0.1` resolving to
loopback: S3 Control clients call `<account-id>.<endpoint host>`, so
`aws s3control ... --endpoint-url http://127.0.0.1:PORT` reaches `batchops serve` on that port.

Usage: .venv/bin/python scripts/aws_loopback.py s3control describe-job --account-id ... --endpoint-url ...
(functions/aws/tests/it/s3control_clients.py does the same for boto3 and the CLI in tests.)
"""
import socket
import sys

_getaddrinfo = socket.getaddrinfo


def _loopback_getaddrinfo(host, *args, **kwargs):
    if isinstance(host, str) and host.endswith(".127.0.0.1"):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_getaddrinfo

from awscli.clidriver import main  # noqa: E402  (after the resolver patch)

sys.exit(main())
