"""moto's server, with DynamoDB's writes made one at a time (the pinned moto from `.venv`).

moto serves requests on threads, and its TransactWriteItems rolls a failed transaction back by
restoring a deep copy of the whole table taken when the transaction began: any write another
thread made in between (a range commit, a counter increment) is lost with it. Real DynamoDB
isolates transactions; batchops' exactly-once accounting relies on that, so a local run whose
lease renewal failed at the wrong moment could lose a committed range's counters and never
finish. Holding one lock across every DynamoDB write restores the isolation the code is written
for. Reads stay concurrent: as on DynamoDB, a plain read may see a transaction's items land one
by one.

Usage: python scripts/moto_server.py [moto_server arguments]
"""

import functools
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_lock = threading.RLock()


def _serialized(method):
    @functools.wraps(method)
    def locked(*args, **kwargs):
        with _lock:
            return method(*args, **kwargs)

    return locked


for _name in WRITES:
    setattr(DynamoDBBackend, _name, _serialized(getattr(DynamoDBBackend, _name)))

if __name__ == "__main__":
    sys.exit(main())
