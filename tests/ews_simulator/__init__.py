"""A local simulator of Exchange Web Services (EWS) for tests; not an Exchange server.

No Exchange server can run here, so the tests talk to this simulator: a small HTTP(S) server on
127.0.0.1 that speaks EWS SOAP for exactly the operations mailmigrate's EWS adapter and exchangelib
use (ConvertId, GetFolder, FindFolder, CreateFolder, SyncFolderHierarchy, FindItem, GetItem,
CreateItem, UpdateItem, DeleteItem, SyncFolderItems, GetAttachment), backed by an in-memory store
with deterministic ids and change keys. Besides messages it keeps calendar items, contacts,
distribution lists and tasks field by field (``typed.py``), single instances of recurring
meetings (``occurrences.py``), and records instead of sending the meeting invitations and
cancellations a request without ``SendToNone`` would make Exchange send (``store.invitations``). exchangelib's own request and response code runs unchanged
against it.

Usage::

    store = SimulatorStore()
    store.add_user("admin@example.com", "secret", impersonation=True)
    store.add_mailbox("alice@example.com")
    with EwsSimulator(store) as sim:
        ...  # sim.url is the EWS endpoint; sim.busy(2) throttles the next two requests
"""

from collections.abc import Iterator
from contextlib import contextmanager

from mailmigrate.connections import Endpoint

from .auth import self_signed_certificate
from .server import EwsSimulator, RequestRecord
from .store import SimulatorStore, StoredFolder, StoredItem, StoredMailbox

__all__ = [
    "EwsSimulator",
    "impersonating",
    "RequestRecord",
    "SimulatorStore",
    "StoredFolder",
    "StoredItem",
    "StoredMailbox",
    "self_signed_certificate",
]


@contextmanager
def impersonating(
    admin: str, password: str, mailbox: str
) -> Iterator[tuple[SimulatorStore, EwsSimulator, Endpoint]]:
    """A running simulator with one mailbox reached by impersonation, the way migrations log
    in: ``(store, simulator, the connection's Endpoint)``."""
    store = SimulatorStore()
    store.add_user(admin, password, impersonation=True)
    store.add_mailbox(mailbox)
    with EwsSimulator(store) as simulator:
        endpoint = Endpoint("exchange", "ews", simulator.url, login=admin, password=password,
                            extra={"auth": "basic"})  # fmt: skip
        yield store, simulator, endpoint
