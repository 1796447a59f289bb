"""The Exchange (EWS) adapter behind :class:`~mailmigrate.mailbox.base.Mailbox`, via exchangelib.

Listings and deltas use ``SyncFolderItems``: a listing is a sync from nothing (its final sync state
is the token), ``changes()`` syncs from the token (new items, flag and read changes, deletions; an
invalid or expired state gives ``None``). Imports use ``CreateItem`` with MimeContent in batches
bounded by bytes and count, with ``PR_MESSAGE_FLAGS`` (so the message is not a draft), the delivery
time, the flag status and the message's identity in a named property, so listing the destination
never downloads MIME. Exchange-native messages get their identity from their MIME, fetched in
batches and remembered by item id. See ``ews_connect`` for connection options and ``ews_items``
for the flag mapping.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from exchangelib import Message as EwsMessage
from exchangelib.errors import ErrorInvalidSyncStateData, ErrorItemNotFound
from exchangelib.items import ALWAYS_OVERWRITE, HARD_DELETE, ID_ONLY, SAVE_ONLY, SEND_TO_NONE
from exchangelib.properties import ItemId
from exchangelib.services import DeleteItem, SyncFolderItems, UpdateItem

from mailmigrate.connections import Endpoint
from mailmigrate.errors import MailboxError
from mailmigrate.identity import identity_of

from .base import (
    AppendResult,
    Changes,
    Folder,
    FolderStats,
    Listing,
    Mailbox,
    Message,
    MessageInfo,
    Quota,
    Ref,
)
from .ews_connect import EwsOptions, Failures, build_account, resolve_options
from .ews_folders import FolderEntry, FolderTree, field_paths
from .ews_items import (
    FLAG_FIELDS,
    LISTING_FIELDS,
    SUPPORTED_FLAGS,
    CreateMessages,
    chunks_by_size,
    flag_update,
    flags_of,
    import_item,
    representable,
    size_from_identity,
)
from .ews_records import GetItemRecords, SyncItemRecords

log = logging.getLogger(__name__)

SYNC_PAGE = 512  # the most SyncFolderItems returns per call


def _utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    # EWSDateTime refuses stdlib time zones; go through the epoch to a plain aware datetime.
    return dt.datetime.fromtimestamp(value.timestamp(), dt.UTC)


def _info(item: Any, identity: str, size: int) -> MessageInfo:
    return MessageInfo(item.id, identity, size, flags_of(item), _utc(item.datetime_received))


def _folder_tag(folder_id: str) -> str:
    return hashlib.sha256(folder_id.encode()).hexdigest()[:12]


class EwsMailbox(Mailbox):
    """One Exchange mailbox reached through EWS (own credentials, impersonation or delegation).

    Endpoint extras: ``auth`` (ntlm|basic|oauth2), ``service_endpoint``, ``autodiscover``,
    ``impersonation``, ``ca_file``, ``verify``, ``max_wait``, ``max_connections``, ``client_id``,
    ``tenant_id``, ``token_url``; batch tuning: ``append_batch_bytes``, ``append_batch_count``,
    ``fetch_batch_bytes``, ``fetch_batch_count``; ``max_message_size`` for :meth:`append_limit`.
    """

    case_sensitive_names = False  # "Projects" and "projects" are one folder on Exchange

    def __init__(self, endpoint: Endpoint, user: str, password: str | None, label: str):
        self.endpoint = endpoint
        self.user = user
        self.label = label
        self.__password = password
        self._failures = Failures(label, [password, endpoint.password])
        self._options: EwsOptions | None = None
        self._account: Any = None
        self._tree: FolderTree | None = None
        self._identities: dict[str, tuple[str, int]] = {}  # native item id -> identity, size

    def __repr__(self) -> str:
        return f"EwsMailbox({self.label!r})"

    # -- session ---------------------------------------------------------------------------
    @contextmanager
    def _guard(self, action: str, path: tuple[str, ...] | None = None) -> Iterator[None]:
        try:
            yield
        except MailboxError:
            raise
        except Exception as exc:
            folder = "/".join(path) if path else None
            raise self._failures.error(
                exc, action, connected=self._tree is not None, folder=folder
            ) from None

    def connect(self) -> None:
        options = resolve_options(self.endpoint, self.user, self.__password, self.label)
        secret = self.endpoint.password if options.uses_admin else self.__password
        self._options = options
        with self._guard(
            f"login to {options.server} as {options.login}"
            + (" impersonating the account" if options.impersonation else "")
        ):
            account = build_account(options, self.user, secret or "")
            tree = FolderTree(account)
            tree.load()
            self._account, self._tree = account, tree

    def close(self) -> None:
        # exchangelib keeps one connection pool per server and credentials; it stays for reuse.
        self._account = None
        self._tree = None

    def _need(self) -> FolderTree:
        if self._tree is None:
            raise MailboxError(f"{self.label}: not connected")
        return self._tree

    def describe(self) -> dict[str, Any]:
        tree, options = self._need(), self._options
        assert options is not None
        with self._guard("reading server facts"):
            version = self._account.version
            protocol = self._account.protocol
            return {
                "protocol": "ews",
                "server": protocol.service_endpoint,
                "product": version.fullname,
                "api_version": version.api_version,
                "build": str(version.build),
                "auth": protocol.auth_type,
                "access": "impersonation" if options.impersonation else "delegate",
                "login": options.login,
                "max_connections": protocol.max_connections,
                "max_wait": options.max_wait,
                "flags": list(SUPPORTED_FLAGS),
                "keywords": "as categories",
                "append_limit": options.max_message_size,
                "folders": len(tree.entries),
            }

    # -- folders ---------------------------------------------------------------------------
    def list_folders(self) -> list[Folder]:
        tree = self._need()
        with self._guard("listing folders"):
            tree.load()
        return [
            Folder(path=e.path, name=e.name, special_use=e.special_use)
            for e in sorted(tree.entries.values(), key=lambda e: e.path)
        ]

    def _entry(self, path: tuple[str, ...]) -> FolderEntry:
        tree = self._need()
        entry = tree.find(path)
        if entry is None:
            with self._guard("listing folders", path):
                tree.load()
            entry = tree.find(path)
        if entry is None:
            raise MailboxError(
                f"{self.label}: folder {'/'.join(path)!r} does not exist", folder="/".join(path)
            )
        return entry

    def folder_stats(self, path: tuple[str, ...]) -> FolderStats:
        entry = self._entry(path)
        with self._guard("reading folder size", path):
            return self._need().stats(entry)

    def message_count(self, path: tuple[str, ...]) -> int:
        """From the folder list already read (TotalCount), no request of its own."""
        return self._entry(path).total_count or 0

    def folder_marker(self, path: tuple[str, ...]) -> str | None:
        """A digest of the folder's id (a deleted and re-created folder gets another id)."""
        return f"folder {_folder_tag(self._entry(path).folder.id)}"

    def create_folder(self, path: tuple[str, ...], special_use: str | None = None) -> None:
        """Create the folder and its parents (special-use folders exist on Exchange already and
        are found by :meth:`list_folders`; a missing one is created as a normal folder)."""
        tree = self._need()
        with self._guard("creating folder", path):
            tree.load()
            if path and tree.find(path) is None:
                tree.create(path)

    def subscribe(self, path: tuple[str, ...]) -> None:
        """Exchange has no folder subscriptions; every folder is shown."""

    def valid_name_part(self, part: str) -> bool:
        return bool(part.strip()) and len(part) <= 255 and all(ord(c) >= 0x20 for c in part)

    def quota(self) -> Quota | None:
        tree = self._need()
        with self._guard("reading the quota"):
            return tree.quota()

    def append_limit(self) -> int | None:
        return self._options.max_message_size if self._options else None

    # -- reading ---------------------------------------------------------------------------
    def _sync(
        self, entry: FolderEntry, state: str | None
    ) -> tuple[list[tuple[str, Any]], str | None]:
        fields = field_paths(EwsMessage, LISTING_FIELDS)
        service = SyncItemRecords(account=self._account)
        changes: list[tuple[str, Any]] = []
        while True:
            changes.extend(
                service.call(folder=entry.folder, shape=ID_ONLY, additional_fields=fields, sync_state=state,
                             ignore=None, max_changes_returned=SYNC_PAGE, sync_scope="NormalItems")
            )  # fmt: skip
            done = service.includes_last_item_in_range or service.sync_state == state
            state = service.sync_state
            if done:
                return changes, state

    def _token(self, entry: FolderEntry, state: str | None) -> str | None:
        return f"{_folder_tag(entry.folder.id)}:{state}" if state else None

    def listing(self, path: tuple[str, ...]) -> Listing:
        entry = self._entry(path)
        with self._guard("listing messages", path):
            changes, state = self._sync(entry, None)
            items = [item for kind, item in changes if kind == SyncFolderItems.CREATE]
            return Listing(messages=self._infos(items), token=self._token(entry, state))

    def changes(self, path: tuple[str, ...], token: str, known: Collection[Ref]) -> Changes | None:
        entry = self._entry(path)
        tag, _, state = (token or "").partition(":")
        if tag != _folder_tag(entry.folder.id) or not state:
            return None
        known_refs = {str(r) for r in known}
        with self._guard("reading changes", path):
            try:
                changes, new_state = self._sync(entry, state)
            except ErrorInvalidSyncStateData:
                log.info(
                    "%s: sync state of %s is no longer valid; a full compare follows",
                    self.label,
                    "/".join(path),
                )
                return None
            result = Changes(token=self._token(entry, new_state))
            created, read_changed = [], []
            for kind, obj in changes:
                if kind == SyncFolderItems.CREATE:
                    created.append(obj)
                elif kind == SyncFolderItems.UPDATE:
                    result.flags[obj.id] = flags_of(obj)
                elif kind == SyncFolderItems.READ_FLAG_CHANGE:
                    read_changed.append(obj.id)
                elif kind == SyncFolderItems.DELETE and obj.id in known_refs:
                    result.removed.add(obj.id)
            result.new = self._infos(created)
            new_refs = {info.ref for info in result.new}
            for item in self._get(read_changed, FLAG_FIELDS):
                if item.id not in new_refs:
                    result.flags[item.id] = flags_of(item)
            for ref in list(result.flags):
                if ref in new_refs or ref in result.removed:
                    del result.flags[ref]
            return result

    def append_mark(self, path: tuple[str, ...]) -> str | None:
        """EWS has no cheap "next id" mark; :meth:`listing_since` lists the folder (no MIME for
        messages this adapter imported)."""
        return None

    def listing_since(self, path: tuple[str, ...], mark: str | None) -> list[MessageInfo]:
        return self.listing(path).messages

    def _get(
        self, refs: Sequence[str], fields: Iterable[str], *, batch: int = 100
    ) -> Iterator[Any]:
        """Items by id (vanished ones skipped), in batches of ``batch``."""
        paths = field_paths(EwsMessage, tuple(fields))
        for start in range(0, len(refs), batch):
            chunk = [ItemId(id=r) for r in refs[start : start + batch]]
            for item in GetItemRecords(account=self._account, chunk_size=len(chunk)).call(
                items=chunk, additional_fields=paths, shape=ID_ONLY
            ):
                if isinstance(item, ErrorItemNotFound):
                    continue
                if isinstance(item, Exception):
                    raise item
                yield item

    def _infos(self, items: list[Any]) -> list[MessageInfo]:
        """MessageInfos of synced items; identities from the stored property, else from MIME."""
        options = self._options
        known = self._identities
        missing = [
            i for i in items if size_from_identity(i.mm_identity) is None and i.id not in known
        ]
        sizes = (lambda i: i.size or 0, options.fetch_batch_bytes, options.fetch_batch_count)
        for batch in chunks_by_size(missing, *sizes):
            for got in self._get([i.id for i in batch], ("mime_content",), batch=len(batch)):
                content = got.mime_content or b""
                self._identities[got.id] = (identity_of(content), len(content))
        infos = []
        for item in items:
            size = size_from_identity(item.mm_identity)
            if size is not None:
                identity = item.mm_identity
            elif item.id in self._identities:
                identity, size = self._identities[item.id]
            else:
                continue  # deleted since it was listed
            infos.append(_info(item, identity, size))
        return infos

    def fetch(self, path: tuple[str, ...], refs: Sequence[Ref]) -> Iterable[Message]:
        self._entry(path)
        fields = ("mime_content", "datetime_received") + FLAG_FIELDS
        with self._guard("fetching messages", path):
            for item in self._get(
                [str(r) for r in refs], fields, batch=self._options.fetch_batch_count
            ):
                content = item.mime_content or b""
                info = _info(item, identity_of(content), len(content))
                self._identities[item.id] = (info.identity, info.size)
                yield Message(info=info, content=content)

    # -- writing ---------------------------------------------------------------------------
    def append(self, path: tuple[str, ...], messages: Sequence[Message]) -> list[AppendResult]:
        entry = self._entry(path)
        results: list[AppendResult] = []
        batches = chunks_by_size(
            messages,
            lambda m: len(m.content),
            self._options.append_batch_bytes,
            self._options.append_batch_count,
        )
        with self._guard("appending messages", path):
            for batch in batches:
                items = [import_item(m) for m in batch]
                service = CreateMessages(account=self._account, chunk_size=len(items))
                created = list(
                    service.call(
                        items=items,
                        folder=entry.folder,
                        message_disposition=SAVE_ONLY,
                        send_meeting_invitations=SEND_TO_NONE,
                    )
                )
                for outcome in created:
                    if isinstance(outcome, Exception):
                        error = self._failures.scrub(f"{type(outcome).__name__}: {outcome}")
                        results.append(AppendResult(error=error))
                    else:
                        results.append(AppendResult(ref=getattr(outcome, "id", None)))
        return results

    def set_flags(
        self, path: tuple[str, ...], ref: Ref, add: frozenset[str], remove: frozenset[str]
    ) -> str | None:
        """Flags a message on Exchange cannot take are left out, as when it is copied."""
        add, remove = representable(add), representable(remove)
        if not add and not remove:
            return None
        self._entry(path)
        with self._guard("setting flags", path):
            current = next(self._get([str(ref)], FLAG_FIELDS), None)
            if current is None:
                raise MailboxError(
                    f"{self.label}: message {ref} in {'/'.join(path)!r} no longer exists",
                    folder="/".join(path),
                )
            update, fields = flag_update(current, add, remove)
            if not fields:
                return None
            (outcome,) = UpdateItem(account=self._account).call(
                items=[(update, fields)], conflict_resolution=ALWAYS_OVERWRITE, message_disposition=SAVE_ONLY,
                send_meeting_invitations_or_cancellations=SEND_TO_NONE, suppress_read_receipts=True,
            )  # fmt: skip
            if isinstance(outcome, Exception):
                raise outcome
        return None

    def delete(self, path: tuple[str, ...], refs: Collection[Ref]) -> None:
        self._entry(path)
        ids = [ItemId(id=str(r)) for r in refs]
        if not ids:
            return
        with self._guard("deleting messages", path):
            outcomes = DeleteItem(account=self._account).call(
                items=ids, delete_type=HARD_DELETE, send_meeting_cancellations=SEND_TO_NONE,
                affected_task_occurrences="AllOccurrences", suppress_read_receipts=True,
            )  # fmt: skip
            for outcome in outcomes:
                if isinstance(outcome, Exception) and not isinstance(outcome, ErrorItemNotFound):
                    raise outcome
        for ref in ids:
            self._identities.pop(ref.id, None)


def open_ews(endpoint: Endpoint, user: str, password: str | None, label: str) -> Mailbox:
    """An unconnected EWS adapter for one account (``password=None``: the endpoint's admin login
    impersonates the account)."""
    return EwsMailbox(endpoint, user, password, label)
