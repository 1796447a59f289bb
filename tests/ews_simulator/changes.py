"""Change tracking of the EWS simulator: SyncFolderItems states and the changes after them.

A sync state is a signed position in the folder's mailbox change sequence (plus the folder id and
its sync epoch, so states of another folder or expired states are refused). The changes after a
position are computed from the items' sequence numbers and the folder's deletion tombstones, the
way Exchange reports them: an item created and changed after the state is one Create; a change of
only the read flag is a ReadFlagChange.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from .store import SimulatorStore, StoredFolder


class InvalidSyncState(Exception):
    """A sync state that is malformed, belongs to another folder, or has expired."""


def encode_sync_state(store: SimulatorStore, folder: StoredFolder, seq: int) -> str:
    payload = json.dumps(
        {"f": folder.id, "e": folder.sync_epoch, "s": seq}, separators=(",", ":")
    ).encode()
    mac = hmac.new(store.secret, payload, hashlib.sha256).digest()[:12]
    return base64.b64encode(payload + mac).decode()


def decode_sync_state(store: SimulatorStore, folder: StoredFolder, text: str) -> int:
    try:
        raw = base64.b64decode(text.encode(), validate=True)
        payload, mac = raw[:-12], raw[-12:]
        if not hmac.compare_digest(
            mac, hmac.new(store.secret, payload, hashlib.sha256).digest()[:12]
        ):
            raise ValueError
        state = json.loads(payload)
    except ValueError:
        raise InvalidSyncState("malformed") from None
    if state.get("f") != folder.id or state.get("e") != folder.sync_epoch:
        raise InvalidSyncState("stale")
    return int(state["s"])


def item_changes(
    store: SimulatorStore, folder: StoredFolder, since: int, max_changes: int, ignore: set[str]
) -> tuple[list[tuple[str, object]], int, bool]:
    """Changes of a folder's items after sequence ``since``, oldest first, at most ``max_changes``.

    :return: ``(changes, new position, includes last)``; a change is ``("Create"|"Update"|
        "ReadFlagChange", item)`` or ``("Delete", item id)``.
    """
    mailbox = store.mailboxes[folder.mailbox]
    pending: list[tuple[int, str, object]] = []
    for item in mailbox.items_in(folder.id):
        if (
            item.seq <= since or item.id in ignore or item.occurrence_of
        ):  # exceptions: in the master
            continue
        if item.created_seq > since:
            kind = "Create"
        elif item.content_seq > since:
            kind = "Update"
        else:
            kind = "ReadFlagChange"
        pending.append((item.seq, kind, item))
    for item_id, created_seq, deleted_seq in folder.tombstones:
        if created_seq <= since < deleted_seq:
            pending.append((deleted_seq, "Delete", item_id))
    pending.sort(key=lambda change: change[0])
    page = pending[:max_changes]
    includes_last = len(page) == len(pending)
    position = mailbox.seq if includes_last else page[-1][0]
    return [(kind, obj) for _, kind, obj in page], position, includes_last
