"""moto's server, with DynamoDB's writes made one at a time (the pinned moto from `.venv`).

moto serves requests on threads, and its TransactWriteItems rolls a failed transaction back by
restoring a deep copy of the whole table taken when the transaction began: any write another
thread made in between (a range commit, a counter increment) is lost with it. Real DynamoDB
isolates transactions; batchops' exactly-once accounting relies on that, so a local run whose
lease renewal failed at the wrong moment could lose a committed range's counters and never
finish. Holding one lock across every DynamoDB write restores the isolation the code is written
for. Reads stay concurrent: as on DynamoDB, a plain read may see a transaction's items land one
by one.

Two costs of moto's own are cut as well, with nothing it answers changed. They matter because the
emulator runs on the same cores as the code under test (`scripts/bench.sh worker` counts them
against batchops; on AWS, DynamoDB and SQS run elsewhere):

- That deep copy of the whole table, taken by every TransactWriteItems (a range commit, a job's
  creation) for a rollback it rarely needs: tens of milliseconds of CPU per transaction once a
  table holds a few jobs. Under the write lock, a copy of just the items the transaction names
  does the same: on failure they are put back as they were.
- Every request lists moto's package directory (a stat per backend, under the server's one
  dispatch lock) to learn the service names, and every request lists its handler class's
  methods: neither changes while the server runs, so each is listed once.

Usage: python scripts/moto_server.py [moto_server arguments]
"""

import copy
import functools
import sys
import threading
import types

import moto.backends
import moto.core.responses
import moto.dynamodb.models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
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

# moto's transaction code copies each named table "in case any of the transactions fail"; while
# this thread runs one, that copy is the table itself (its rollback then puts the same table
# back), and `_item_rollback` below undoes the items instead.
_in_transaction = threading.local()


def _deepcopy(value, memo=None):
    if isinstance(value, Table) and getattr(_in_transaction, "active", False):
        return value
    return copy.deepcopy(value, memo)


moto.dynamodb.models.copy = types.SimpleNamespace(deepcopy=_deepcopy)


def _named_items(backend, transact_items):
    """(table, hash key, range key) of every item a transaction names, as moto keys them."""
    named = []
    for entry in transact_items:
        try:
            _, op = next(iter(entry.items()))
            table = backend.tables.get(op.get("TableName"))
            attrs = op.get("Item") if "Item" in op else op.get("Key")
            hash_key = DynamoType(attrs[table.hash_key_attr])
            range_key = None
            if table.range_key_attr is not None:
                range_key = DynamoType(attrs[table.range_key_attr])
        except Exception:  # noqa: BLE001 - no such table or no key: moto refuses the op, writing nothing
            continue
        named.append((table, hash_key, range_key))
    return named


def _item_rollback(transact):
    @functools.wraps(transact)
    def transact_write_items(self, transact_items, *args, **kwargs):
        with _lock:
            # Each named item as it was (None: absent), copied: updates change items in place.
            before = []
            for table, hash_key, range_key in _named_items(self, transact_items):
                item = table.get_item(hash_key, range_key)
                before.append((table, hash_key, range_key, copy.deepcopy(item)))
            _in_transaction.active = True
            try:
                return transact(self, transact_items, *args, **kwargs)
            except Exception:
                for table, hash_key, range_key, item in reversed(before):
                    if item is None:
                        table.delete_item(hash_key, range_key)
                    elif range_key is not None:
                        table.items[hash_key][range_key] = item
                    else:
                        table.items[hash_key] = item
                raise
            finally:
                _in_transaction.active = False

    return transact_write_items


DynamoDBBackend.transact_write_items = _item_rollback(DynamoDBBackend.transact_write_items)

_moto_modules = tuple(moto.backends.list_of_moto_modules())
moto.backends.list_of_moto_modules = lambda: _moto_modules
moto.core.responses.method_names_from_class = functools.cache(
    moto.core.responses.method_names_from_class
)

if __name__ == "__main__":
    sys.exit(main())
