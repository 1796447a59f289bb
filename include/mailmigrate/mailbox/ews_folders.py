"""The EWS adapter's folder tree: mail folders below the message folder root, as paths.

Well-known folders are found by their distinguished ids: the inbox is ``("INBOX",)`` and its
subfolders ``("INBOX", ...)``; Sent Items, Drafts, Deleted Items, Junk Email and Archive carry the
special uses ``\\Sent``, ``\\Drafts``, ``\\Trash``, ``\\Junk`` and ``\\Archive``. Only mail folders
(class ``IPF.Note``, its subclasses, or none) are listed; Outbox, Sync Issues and Conversation
History are left out, as are folders below a non-mail folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from exchangelib import Account, Message
from exchangelib.errors import ErrorFolderExists, ResponseMessageError
from exchangelib.fields import FieldOrder, FieldPath
from exchangelib.folders import Folder, Root
from exchangelib.folders.queryset import DEEP, SHALLOW
from exchangelib.items import ID_ONLY
from exchangelib.properties import DistinguishedFolderId
from exchangelib.properties import Mailbox as EwsMailboxAddress
from exchangelib.services import CreateFolder, FindFolder, FindItem, GetFolder

from .base import FolderStats, Quota

log = logging.getLogger(__name__)

SPECIAL_USES = {
    "sentitems": "\\Sent",
    "drafts": "\\Drafts",
    "deleteditems": "\\Trash",
    "junkemail": "\\Junk",
    "archive": "\\Archive",
}
WELL_KNOWN = (
    "msgfolderroot",
    "inbox",
    "sentitems",
    "drafts",
    "deleteditems",
    "junkemail",
    "outbox",
    "syncissues",
)
OPTIONAL_WELL_KNOWN = ("archive", "conversationhistory")  # not known to every server version
LEFT_OUT = ("outbox", "syncissues", "conversationhistory")
FOLDER_FIELDS = ("name", "folder_class", "parent_folder_id", "total_count")


def field_paths(model: type, names: tuple[str, ...]) -> list[FieldPath]:
    return [FieldPath(field=model.get_field_by_fieldname(name)) for name in names]


def is_mail_folder(folder_class: str | None) -> bool:
    return not folder_class or folder_class == "IPF.Note" or folder_class.startswith("IPF.Note.")


@dataclass
class FolderEntry:
    """One listed folder: its path, the folder to address requests to, and its special use."""

    path: tuple[str, ...]
    name: str
    folder: Folder
    special_use: str | None
    total_count: int | None


class FolderTree:
    """The folders of one mailbox, loaded with one GetFolder (well-known ids) and one FindFolder."""

    def __init__(self, account: Account):
        self.account = account
        self.root = Root(account=account)
        self.entries: dict[tuple[str, ...], FolderEntry] = {}
        self.well_known: dict[str, str] = {}  # distinguished id -> folder id

    def folder_ref(self, folder_id: str) -> Folder:
        """A folder object addressing ``folder_id`` (change keys are left out: they go stale)."""
        return Folder(root=self.root, id=folder_id)

    def distinguished(self, name: str) -> Folder:
        mailbox = EwsMailboxAddress(email_address=self.account.primary_smtp_address)
        return Folder(
            root=self.root, _distinguished_id=DistinguishedFolderId(id=name, mailbox=mailbox)
        )

    def _resolve_well_known(self, names: tuple[str, ...], *, tolerant: bool) -> None:
        folders = [self.distinguished(n) for n in names]
        try:
            results = list(
                GetFolder(account=self.account).call(
                    folders=folders, additional_fields=[], shape=ID_ONLY
                )
            )
        except Exception:
            if tolerant:  # e.g. a schema error for a distinguished id this server version lacks
                return
            raise
        for name, result in zip(names, results, strict=False):
            if isinstance(result, Exception):
                if name == "msgfolderroot":
                    raise result
                continue
            self.well_known[name] = result.id

    def load(self) -> None:
        """(Re)read the folder tree; well-known folders are resolved once (their ids never change)."""
        if "msgfolderroot" not in self.well_known:
            self._resolve_well_known(WELL_KNOWN, tolerant=False)
            for name in OPTIONAL_WELL_KNOWN:
                self._resolve_well_known((name,), tolerant=True)
        top = self.folder_ref(self.well_known["msgfolderroot"])
        found = self._find_below(top, FOLDER_FIELDS)
        children: dict[str, list[Folder]] = {}
        for folder in found:
            parent = folder.parent_folder_id.id if folder.parent_folder_id else None
            children.setdefault(parent, []).append(folder)
        left_out = {self.well_known[n] for n in LEFT_OUT if n in self.well_known}
        special = {self.well_known[k]: v for k, v in SPECIAL_USES.items() if k in self.well_known}
        inbox_id = self.well_known.get("inbox")
        self.entries = {}

        def walk(parent_id: str, path: tuple[str, ...], names: tuple[str, ...]) -> None:
            for folder in children.get(parent_id, []):
                if folder.id in left_out or not is_mail_folder(folder.folder_class):
                    continue
                part = "INBOX" if folder.id == inbox_id else (folder.name or "")
                if not part or (not path and part.upper() == "INBOX" and folder.id != inbox_id):
                    continue
                entry = FolderEntry(
                    path=path + (part,),
                    name="/".join(names + (folder.name or part,)),
                    folder=self.folder_ref(folder.id),
                    special_use=special.get(folder.id),
                    total_count=folder.total_count,
                )
                self.entries[entry.path] = entry
                walk(folder.id, entry.path, names + (folder.name or part,))

        walk(self.well_known["msgfolderroot"], (), ())

    def find(self, path: tuple[str, ...]) -> FolderEntry | None:
        if path and path[0].upper() == "INBOX":
            path = ("INBOX",) + tuple(path[1:])
        entry = self.entries.get(path)
        if entry is None:  # Exchange folder names are case-insensitive
            folded = tuple(p.lower() for p in path)
            entry = next(
                (e for p, e in self.entries.items() if tuple(x.lower() for x in p) == folded), None
            )
        return entry

    # -- folder operations -----------------------------------------------------------------
    def _find_below(self, folder: Folder, names: tuple[str, ...]) -> list[Folder]:
        found = FindFolder(account=self.account, page_size=500).call(
            folders=[folder],
            additional_fields=field_paths(Folder, names),
            restriction=None,
            shape=ID_ONLY,
            depth=DEEP,
            max_items=None,
            offset=0,
        )
        folders = list(found)
        for folder in folders:
            if isinstance(folder, Exception):
                raise folder
        return folders

    def stats(self, entry: FolderEntry) -> FolderStats:
        """Count and total size (PR_MESSAGE_SIZE_EXTENDED) of a folder, and its largest item."""
        info = GetFolder(account=self.account).get(
            folders=[entry.folder],
            additional_fields=field_paths(Folder, ("total_count", "mm_size")),
            shape=ID_ONLY,
        )
        size_path = FieldPath(field=Message.get_field_by_fieldname("size"))
        largest = FindItem(account=self.account, page_size=1).call(
            folders=[entry.folder],
            additional_fields=[size_path],
            restriction=None,
            order_fields=[FieldOrder(field_path=size_path, reverse=True)],
            shape=ID_ONLY,
            query_string=None,
            depth=SHALLOW,
            calendar_view=None,
            max_items=1,
            offset=0,
        )
        sizes = [item.size for item in largest if not isinstance(item, Exception)]
        return FolderStats(
            messages=info.total_count or 0, size=info.mm_size, largest=sizes[0] if sizes else None
        )

    def create(self, path: tuple[str, ...]) -> None:
        """Create a folder and its missing parents (``("INBOX", ...)`` below the inbox)."""
        depth = len(path) - 1
        while depth > 0 and self.find(path[:depth]) is None:
            depth -= 1
        ancestor = self.find(path[:depth]) if depth else None
        parent = ancestor.folder if ancestor else self.folder_ref(self.well_known["msgfolderroot"])
        for level in range(depth + 1, len(path) + 1):
            new = Folder(root=self.root, name=path[level - 1], folder_class="IPF.Note")
            (result,) = CreateFolder(account=self.account).call(parent_folder=parent, folders=[new])
            if isinstance(result, ErrorFolderExists):  # created meanwhile, e.g. by a parallel pass
                self.load()
                existing = self.find(path[:level])
                if existing is None:
                    raise result
                parent = existing.folder
            elif isinstance(result, Exception):
                raise result
            else:
                parent = self.folder_ref(result.id)
        self.load()

    def quota(self) -> Quota | None:
        """Mailbox size (sum of folder sizes) and limit (PR_PROHIBIT_RECEIVE_QUOTA or
        PR_STORAGE_QUOTA_LIMIT on the root folder), or ``None`` when the server shows neither."""
        try:
            info = GetFolder(account=self.account).get(
                folders=[self.distinguished("root")],
                additional_fields=field_paths(
                    Folder, ("mm_receive_quota", "mm_storage_limit", "mm_size")
                ),
                shape=ID_ONLY,
            )
            sizes = [info.mm_size] + [
                f.mm_size for f in self._find_below(self.folder_ref(info.id), ("mm_size",))
            ]
        except ResponseMessageError as exc:
            log.info("%s: quota not readable: %s", self.account.primary_smtp_address, exc)
            return None
        if all(s is None for s in sizes):
            return None
        limit_kb = info.mm_receive_quota or info.mm_storage_limit
        return Quota(
            used=sum(s or 0 for s in sizes),
            limit=limit_kb * 1024 if limit_kb and limit_kb > 0 else None,
        )
