"""The EWS simulator's mailbox store: users, mailboxes, folders, items and their change history.

An in-memory store with deterministic ids and change keys. Every change to an item takes the next
number of its mailbox's change sequence; ``SyncFolderItems`` states are positions in that sequence,
so a sync from a state reports exactly the changes after it (creates, updates, read-flag changes,
deletes) the way Exchange does. Tests seed and inspect the store directly through the public
methods of :class:`SimulatorStore`.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from .soap import ResponseError

PropKey = tuple
"""A normalised extended property key: ("tag", int), ("name", set-guid, name) or ("id", set-guid, int)."""

# Folders every simulated mailbox starts with: (distinguished id, display name, folder class, parent).
DEFAULT_FOLDERS = (
    ("root", "", None, None),
    ("msgfolderroot", "Top of Information Store", "IPF.Note", "root"),
    ("recoverableitemsroot", "Recoverable Items", None, "root"),
    ("inbox", "Inbox", "IPF.Note", "msgfolderroot"),
    ("drafts", "Drafts", "IPF.Note", "msgfolderroot"),
    ("sentitems", "Sent Items", "IPF.Note", "msgfolderroot"),
    ("deleteditems", "Deleted Items", "IPF.Note", "msgfolderroot"),
    ("junkemail", "Junk Email", "IPF.Note", "msgfolderroot"),
    ("outbox", "Outbox", "IPF.Note", "msgfolderroot"),
    ("archive", "Archive", "IPF.Note", "msgfolderroot"),
    ("calendar", "Calendar", "IPF.Appointment", "msgfolderroot"),
    ("contacts", "Contacts", "IPF.Contact", "msgfolderroot"),
    ("tasks", "Tasks", "IPF.Task", "msgfolderroot"),
    ("notes", "Notes", "IPF.StickyNote", "msgfolderroot"),
)


@dataclass
class StoredFolder:
    id: str
    mailbox: str
    parent_id: str | None
    name: str
    folder_class: str | None
    distinguished: str | None
    changekey: str
    created_seq: int
    sync_epoch: int = 0
    props: dict[PropKey, tuple[str, object]] = field(default_factory=dict)
    # (item id, created seq, deleted seq) of the items deleted from this folder
    tombstones: list[tuple[str, int, int]] = field(default_factory=list)


@dataclass
class StoredItem:
    id: str
    mailbox: str
    folder_id: str
    mime: bytes
    received: dt.datetime
    created: dt.datetime
    changekey: str
    created_seq: int
    seq: int
    content_seq: int
    is_read: bool = False
    is_draft: bool = False
    categories: list[str] = field(default_factory=list)
    props: dict[PropKey, tuple[str, object]] = field(default_factory=dict)
    item_class: str = "IPM.Note"
    fields: list = field(default_factory=list)  # a typed item's elements (see typed.py)
    occurrence_of: str | None = None  # a recurring meeting's exception: its master's id

    @property
    def size(self) -> int:
        return len(self.mime)


@dataclass
class StoredMailbox:
    address: str
    number: int
    quota_kb: int | None = None
    max_message_size: int | None = None
    folders: dict[str, StoredFolder] = field(default_factory=dict)
    items: dict[str, StoredItem] = field(default_factory=dict)
    seq: int = 0
    next_id: int = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def distinguished(self, name: str) -> StoredFolder:
        for folder in self.folders.values():
            if folder.distinguished == name:
                return folder
        raise ResponseError(
            "ErrorFolderNotFound", f"The distinguished folder {name!r} does not exist."
        )

    def children(self, folder_id: str) -> list[StoredFolder]:
        return [f for f in self.folders.values() if f.parent_id == folder_id]

    def items_in(self, folder_id: str) -> list[StoredItem]:
        return [i for i in self.items.values() if i.folder_id == folder_id]


@dataclass
class StoredUser:
    login: str
    password: str
    impersonation: bool = False
    full_access: set[str] = field(default_factory=set)


def _changekey(seq: int) -> str:
    return base64.b64encode(b"CQAAABYA" + struct.pack(">Q", seq)).decode()


class SimulatorStore:
    """Users, mailboxes and their content, shared by the simulator's request handlers.

    All methods are thread-safe (one lock; the server handles one request at a time per store).
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.mailboxes: dict[str, StoredMailbox] = {}
        self.users: dict[str, StoredUser] = {}
        self.oauth_clients: dict[str, tuple[str, str]] = {}  # client id -> (secret, tenant)
        self.secret = secrets.token_bytes(16)  # signs sync states
        self.invitations: list = []  # meeting messages Exchange would have sent (typed.py)

    # -- seeding ---------------------------------------------------------------------------
    def add_user(self, login: str, password: str, *, impersonation: bool = False) -> StoredUser:
        """An account that can log in; ``impersonation`` grants the ApplicationImpersonation role."""
        with self.lock:
            user = StoredUser(login=login, password=password, impersonation=impersonation)
            self.users[login.lower()] = user
            return user

    def add_oauth_client(self, client_id: str, secret: str, tenant_id: str) -> None:
        """An app registration for the OAuth2 client-credentials flow (app tokens may impersonate)."""
        with self.lock:
            self.oauth_clients[client_id] = (secret, tenant_id)

    def grant_full_access(self, login: str, address: str) -> None:
        """Give a user delegate (FullAccess) permission on a mailbox."""
        with self.lock:
            self.users[login.lower()].full_access.add(address.lower())

    def add_mailbox(
        self,
        address: str,
        password: str | None = None,
        *,
        quota_kb: int | None = None,
        max_message_size: int | None = None,
    ) -> StoredMailbox:
        """A mailbox with Exchange's default folders; with a password its owner can log in too."""
        with self.lock:
            mailbox = StoredMailbox(
                address=address.lower(),
                number=len(self.mailboxes) + 1,
                quota_kb=quota_kb,
                max_message_size=max_message_size,
            )
            self.mailboxes[mailbox.address] = mailbox
            by_distinguished: dict[str, str] = {}
            for distinguished, name, folder_class, parent in DEFAULT_FOLDERS:
                parent_id = by_distinguished[parent] if parent else None
                folder = self._new_folder(mailbox, parent_id, name, folder_class, distinguished)
                by_distinguished[distinguished] = folder.id
            if password is not None:
                self.add_user(address, password)
            return mailbox

    def add_folder(
        self,
        address: str,
        name: str,
        parent: str | tuple[str, ...] = "msgfolderroot",
        folder_class: str | None = "IPF.Note",
    ) -> str:
        """Create a folder under ``parent`` (a folder id, distinguished name or path); its id."""
        with self.lock:
            mailbox = self.mailbox(address)
            parent_folder = self.resolve_folder(address, parent)
            for sibling in mailbox.children(parent_folder.id):
                if sibling.name.lower() == name.lower():
                    raise ResponseError(
                        "ErrorFolderExists", f"A folder named {name!r} already exists."
                    )
            return self._new_folder(mailbox, parent_folder.id, name, folder_class, None).id

    def add_message(
        self,
        address: str,
        folder: str | tuple[str, ...],
        mime: bytes,
        *,
        is_read: bool = False,
        flagged: bool = False,
        is_draft: bool = False,
        received: dt.datetime | None = None,
        categories: Iterable[str] = (),
    ) -> str:
        """Deliver a message as Exchange would (a native item, no mailmigrate properties); its id."""
        with self.lock:
            mailbox = self.mailbox(address)
            item = self.create_item(
                mailbox, self.resolve_folder(address, folder), mime, received=received
            )
            item.is_read, item.is_draft, item.categories = is_read, is_draft, list(categories)
            if flagged:
                item.props[("tag", 0x1090)] = ("Integer", "2")
            return item.id

    # -- inspection and user actions -------------------------------------------------------
    def mailbox(self, address: str) -> StoredMailbox:
        try:
            return self.mailboxes[address.lower()]
        except KeyError:
            raise ResponseError(
                "ErrorNonExistentMailbox", f"No mailbox with address {address}."
            ) from None

    def resolve_folder(self, address: str, ref: str | tuple[str, ...]) -> StoredFolder:
        """A folder by id, distinguished name, or path of display names below msgfolderroot."""
        mailbox = self.mailbox(address)
        if isinstance(ref, tuple):
            folder = mailbox.distinguished("msgfolderroot")
            for part in ref:
                matches = [f for f in mailbox.children(folder.id) if f.name.lower() == part.lower()]
                if not matches:
                    raise KeyError(f"{address}: no folder {'/'.join(ref)}")
                folder = matches[0]
            return folder
        if ref in mailbox.folders:
            return mailbox.folders[ref]
        return mailbox.distinguished(ref)

    def messages(self, address: str, folder: str | tuple[str, ...]) -> list[StoredItem]:
        """The items of a folder in creation order."""
        with self.lock:
            target = self.resolve_folder(address, folder)
            return sorted(self.mailbox(address).items_in(target.id), key=lambda i: i.created_seq)

    def find_item(self, item_id: str) -> StoredItem:
        for mailbox in self.mailboxes.values():
            if item_id in mailbox.items:
                return mailbox.items[item_id]
        raise KeyError(item_id)

    def user_set_read(self, item_id: str, is_read: bool) -> None:
        """What a user's client does when reading a message (a read-flag change)."""
        with self.lock:
            item = self.find_item(item_id)
            item.is_read = is_read
            self.touch(item, content=False)

    def user_set_flag(self, item_id: str, flagged: bool) -> None:
        with self.lock:
            item = self.find_item(item_id)
            item.props[("tag", 0x1090)] = ("Integer", "2" if flagged else "0")
            self.touch(item)

    def user_delete(self, item_id: str) -> None:
        with self.lock:
            item = self.find_item(item_id)
            self.delete_item(self.mailboxes[item.mailbox], item)

    def expire_sync_states(self, address: str, folder: str | tuple[str, ...]) -> None:
        """Make every sync state issued for a folder invalid (as when Exchange drops them)."""
        with self.lock:
            self.resolve_folder(address, folder).sync_epoch += 1

    # -- primitives used by the operations -------------------------------------------------
    def _new_id(self, mailbox: StoredMailbox, kind: bytes) -> str:
        mailbox.next_id += 1
        raw = b"AAMk" + kind + struct.pack(">II", mailbox.number, mailbox.next_id) + b"\x00" * 6
        return base64.b64encode(raw).decode()

    def locate_id(self, id_text: str) -> StoredMailbox:
        """The mailbox an item or folder id belongs to (ids are self-describing, like Exchange's)."""
        try:
            raw = base64.b64decode(id_text.encode(), validate=True)
            if len(raw) != 19 or not raw.startswith(b"AAMk") or raw[4:5] not in (b"F", b"I"):
                raise ValueError
            number = struct.unpack(">I", raw[5:9])[0]
        except (ValueError, struct.error):
            raise ResponseError("ErrorInvalidIdMalformed", "Id is malformed.") from None
        for mailbox in self.mailboxes.values():
            if mailbox.number == number:
                return mailbox
        raise ResponseError("ErrorItemNotFound", "The specified object was not found in the store.")

    def _new_folder(
        self,
        mailbox: StoredMailbox,
        parent_id: str | None,
        name: str,
        folder_class: str | None,
        distinguished: str | None,
    ) -> StoredFolder:
        seq = mailbox.next_seq()
        folder = StoredFolder(
            id=self._new_id(mailbox, b"F"),
            mailbox=mailbox.address,
            parent_id=parent_id,
            name=name,
            folder_class=folder_class,
            distinguished=distinguished,
            changekey=_changekey(seq),
            created_seq=seq,
        )
        mailbox.folders[folder.id] = folder
        return folder

    def create_folder(
        self, mailbox: StoredMailbox, parent: StoredFolder, name: str, folder_class: str | None
    ) -> StoredFolder:
        if not name or not name.strip():
            raise ResponseError("ErrorInvalidFolderName", "A folder name must not be empty.")
        for sibling in mailbox.children(parent.id):
            if sibling.name.lower() == name.lower():
                raise ResponseError(
                    "ErrorFolderExists", "A folder with the specified name already exists."
                )
        return self._new_folder(mailbox, parent.id, name, folder_class, None)

    def create_item(
        self,
        mailbox: StoredMailbox,
        folder: StoredFolder,
        mime: bytes,
        *,
        received: dt.datetime | None = None,
    ) -> StoredItem:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        seq = mailbox.next_seq()
        item = StoredItem(
            id=self._new_id(mailbox, b"I"),
            mailbox=mailbox.address,
            folder_id=folder.id,
            mime=mime,
            received=received or now,
            created=now,
            changekey=_changekey(seq),
            created_seq=seq,
            seq=seq,
            content_seq=seq,
        )
        mailbox.items[item.id] = item
        return item

    def check_limits(self, mailbox: StoredMailbox, size: int) -> None:
        """Refuse an item over the message size limit or the mailbox quota, as Exchange does."""
        if mailbox.max_message_size is not None and size > mailbox.max_message_size:
            raise ResponseError(
                "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size."
            )
        if mailbox.quota_kb is not None:
            used = sum(i.size for i in mailbox.items.values())
            if used + size > mailbox.quota_kb * 1024:
                raise ResponseError("ErrorQuotaExceeded", "The mailbox quota has been exceeded.")

    def touch(self, item: StoredItem, *, content: bool = True) -> None:
        """Record a change of an item (``content=False``: only its read flag changed)."""
        seq = self.mailboxes[item.mailbox].next_seq()
        item.seq = seq
        item.changekey = _changekey(seq)
        if content:
            item.content_seq = seq

    def delete_item(self, mailbox: StoredMailbox, item: StoredItem) -> None:
        seq = mailbox.next_seq()
        mailbox.folders[item.folder_id].tombstones.append((item.id, item.created_seq, seq))
        del mailbox.items[item.id]
