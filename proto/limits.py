"""Limits both ends of an RPC agree on (kept beside the .proto files, imported by client and server).

``MAX_STATUS_UPDATES``: the most task status updates one ``UpdateTaskStatus`` request carries. The
worker's reporter (worker/reporter.py) never sends more in one request; the dispatcher
(manager/dispatcher) accepts at least this many in one request and writes them to the store in
changes small enough for one Raft entry.
"""

MAX_STATUS_UPDATES = 100
