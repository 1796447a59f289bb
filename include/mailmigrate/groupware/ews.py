"""One Exchange account as a groupware side (exchangelib): its calendar, contacts and tasks
folders as the same collections and items :mod:`mailmigrate.groupware.sync` drives on DAV.

:class:`EwsGroupwareAccount` offers what :class:`~mailmigrate.groupware.dav.DavAccount` offers
(``collections``, ``listing``, ``fetch``, ``put``, ``delete``, ``home``, ``create``,
``discover``, ``schedules``), so the sync runs unchanged with Exchange on either side:

- a **collection** is a calendar (``IPF.Appointment``, events), tasks (``IPF.Task``) or contacts
  (``IPF.Contact``) folder below the mailbox root; its href is the folder's path of display
  names (``/Calendar/``, ``/Calendar/Team/``); the distinguished calendar is the default;
- an **item's href** is ``<collection href><UID>.ics`` (or ``.vcf``), the name the sync gives a
  new item, so a copy onto Exchange and a later listing agree without a lookup table; its
  **ETag** is Exchange's change key. Deltas ask SyncFolderItems for the changes since the
  state kept as the collection's sync token (a deletion, or a state Exchange refuses, lists
  every item again); deletions are seen as missing UIDs;
- content goes through :mod:`~mailmigrate.groupware.ews_convert` (out) and
  :mod:`~mailmigrate.groupware.ews_parse` (in, refusing what Exchange cannot hold).

Invariants: no write emails anyone: every create and update of a calendar item goes with
``SendMeetingInvitations(OrCancellations)=SendToNone`` (:data:`INVITATIONS`) and every delete
with ``SendMeetingCancellations=SendToNone``; a replacement names the change key the caller last
saw (a newer one is a conflict, 412 as on DAV). exchangelib's errors become
:class:`~mailmigrate.errors.EwsGroupwareError` in :meth:`EwsGroupwareAccount._call` only, naming
account, server and operation, never a password.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from exchangelib import CalendarItem, Contact, DistributionList, Task
from exchangelib.errors import (
    ErrorAccessDenied,
    ErrorInvalidSyncStateData,
    ErrorItemNotFound,
    ErrorNonExistentMailbox,
    EWSError,
    TransportError,
)
from exchangelib.folders import Calendar, Contacts, Folder, Tasks
from exchangelib.items import SEND_TO_NONE

from mailmigrate.errors import ConnectionConfigError, ContentError, EwsGroupwareError  # noqa: F401 - re-exported
from mailmigrate.groupware.dav import (
    ADDRESSBOOK,
    CALENDAR,
    EXTENSION,
    Collection,
    Listing,
    resource_name,
)
from mailmigrate.groupware.ews_cards import KnownContact, MissingMember
from mailmigrate.groupware.ews_convert import GroupwareUid, item_text, item_uid
from mailmigrate.groupware.ews_parse import NotCarried, to_exchange
from mailmigrate.mailbox.ews_connect import REFUSED, RETRYABLE, build_account, resolve_options

if TYPE_CHECKING:
    from mailmigrate.connections import Endpoint

CARRIED = (CalendarItem, Task, Contact, DistributionList)
INVITATIONS = SEND_TO_NONE  # what every calendar write tells Exchange to send: nothing
KINDS = {
    "IPF.Appointment": (CALENDAR, ("VEVENT",)),
    "IPF.Task": (CALENDAR, ("VTODO",)),
    "IPF.Contact": (ADDRESSBOOK, ()),
}  # by folder class; its subclasses are not carried
FOLDERS = {"IPF.Appointment": Calendar, "IPF.Task": Tasks, "IPF.Contact": Contacts}
ITEM_FIELDS = {"IPF.Appointment": ("uid",), "IPF.Task": ("groupware_uid",),
               "IPF.Contact": ("groupware_uid",)}  # fmt: skip
assert GroupwareUid  # registered on Contact and Task by ews_convert


@dataclass(frozen=True)
class EwsGroupwareEndpoint:
    """An account on an ``ews`` connection (the mail's own options: service endpoint or
    autodiscover, NTLM/basic/OAuth2, impersonation with the connection's admin login, CA file).
    """

    connection: Endpoint = field(repr=False)
    user: str
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_connection(cls, connection: Endpoint, user: str, password: str | None
                        ) -> EwsGroupwareEndpoint:  # fmt: skip
        if connection.kind != "ews":
            raise ConnectionConfigError(f"connection {connection.conn_id!r}: not an ews connection")
        return cls(connection, user, password)

    def identity(self) -> dict[str, object]:
        return {"kind": "ews", "host": (self.connection.host or "").lower(),
                "port": self.connection.port, "user": self.user.lower()}  # fmt: skip

    def open(self) -> EwsGroupwareAccount:
        return EwsGroupwareAccount(self)


class EwsGroupwareAccount:
    """A logged-in Exchange account seen as calendars, task lists and address books."""

    schedules = False  # Exchange is told per request to send nothing (INVITATIONS)

    def __init__(self, endpoint: EwsGroupwareEndpoint) -> None:
        self.endpoint = endpoint
        self.label = f"{endpoint.user} on EWS {endpoint.connection.conn_id}"
        secret = endpoint.password
        try:
            options = resolve_options(endpoint.connection, endpoint.user, secret, self.label)
        except Exception as exc:
            raise EwsGroupwareError(str(exc)) from None
        if options.uses_admin:
            secret = endpoint.connection.password
        self.server = options.server
        self._secrets = [s for s in (endpoint.password, endpoint.connection.password) if s]
        self.account = build_account(options, endpoint.user, secret or "")
        self._folders: dict[str, Folder] = {}
        self._ids: dict[str, tuple[str, str]] = {}  # item href -> (item id, change key)
        self._uids: dict[str, str] = {}  # item id -> UID (a group's members)

    def close(self) -> None:
        # exchangelib keeps one connection pool per server and credentials (the mail's too):
        # it stays for reuse, as the mail adapter leaves it
        self._folders.clear()

    def _call(self, action: str, function, *args, **kwargs):
        """Run one exchangelib call; its errors become :class:`EwsGroupwareError`."""
        try:
            return function(*args, **kwargs)
        except (EwsGroupwareError, NotCarried):
            raise
        except REFUSED:
            raise EwsGroupwareError(f"{self.label} ({self.server}): login or impersonation "
                                    "refused", 401) from None  # fmt: skip
        except ErrorItemNotFound:
            raise EwsGroupwareError(f"{self.label}: {action}: the item is gone", 404) from None
        except ErrorNonExistentMailbox:
            raise EwsGroupwareError(f"{self.label} ({self.server}): no such mailbox", 404) from None
        except ErrorAccessDenied:
            raise EwsGroupwareError(f"{self.label} ({self.server}): {action}: access denied",
                                    403) from None  # fmt: skip
        except (*RETRYABLE, EWSError, TransportError, OSError) as exc:
            text = f"{type(exc).__name__}: {exc}"
            for secret in self._secrets:
                text = text.replace(secret, "***")
            # busy, throttled or unreachable: tried again; any other EWS answer: not
            status = (
                503 if isinstance(exc, RETRYABLE) else 400 if isinstance(exc, EWSError) else None
            )
            raise EwsGroupwareError(
                f"{self.label} ({self.server}): {action} failed ({text[:300]})", status
            ) from None

    # -- collections ---------------------------------------------------------------------------

    def discover(self) -> None:
        self._call("listing folders", lambda: self.account.msg_folder_root.id)

    def home(self, kind: str) -> str:
        return "/"

    def _href(self, folder: Folder) -> str:
        parts = []
        root = self.account.msg_folder_root
        while folder is not None and folder.id != root.id:
            parts.append(folder.name)
            folder = folder.parent
        return "/" + "".join(quote(p, safe="") + "/" for p in reversed(parts))

    def collections(self) -> list[Collection]:
        """Calendar, task and contact folders; the distinguished calendar is the default."""

        def walk() -> list[Collection]:
            found = []
            default = self.account.calendar.id
            for folder in self.account.msg_folder_root.walk():
                kind = KINDS.get(folder.folder_class or "")
                if kind is None:
                    continue
                href = self._href(folder)
                self._folders[href] = folder
                found.append(Collection(kind[0], href, folder.name, None, kind[1],
                                        default=folder.id == default))  # fmt: skip
            return found

        return self._call("listing folders", walk)

    def create(self, collection: Collection, href: str) -> Collection:
        """A new folder below the mailbox root named as ``collection`` (``href`` is the sync's
        suggestion; the folder's own path is returned)."""
        folder_class = ("IPF.Contact" if collection.kind == ADDRESSBOOK else "IPF.Task"
                        if tuple(collection.components) == ("VTODO",) else "IPF.Appointment")  # fmt: skip
        folder = FOLDERS[folder_class](parent=self.account.msg_folder_root, name=collection.name,
                                       folder_class=folder_class)  # fmt: skip
        self._call(f"creating folder {collection.name!r}", folder.save)
        href = self._href(folder)
        self._folders[href] = folder
        return Collection(collection.kind, href, collection.name, None,
                          KINDS[folder_class][1])  # fmt: skip

    def _folder(self, href: str) -> Folder:
        if href not in self._folders:
            self.collections()
        if href not in self._folders:
            raise EwsGroupwareError(f"{self.label}: no folder {unquote(href)!r}", 404)
        return self._folders[href]

    # -- items ---------------------------------------------------------------------------------

    def listing(self, collection: Collection, token: str | None = None) -> Listing:
        """The folder's items (href -> change key) through SyncFolderItems: without ``token``
        (or with one Exchange no longer accepts) every item, complete; with it only the items
        created or changed since, unless one was deleted: then every item again (a deletion
        names only an item id, the href is known from a full listing). The new sync state is
        the listing's token."""
        folder = self._folder(collection.href)
        fields = ITEM_FIELDS[folder.folder_class]
        extension = EXTENSION[collection.kind]

        def changes(state: str | None) -> tuple[list, str] | None:
            folder.item_sync_state = state  # exchangelib falls back to it when state is None
            try:
                found = list(folder.sync_items(sync_state=state, only_fields=fields))
            except ErrorInvalidSyncStateData:
                return None
            return found, folder.item_sync_state

        def run() -> Listing:
            synced = changes(token) if token else None
            complete = synced is None
            if synced is None:
                synced = changes(None)
            found, state = synced
            if not complete and any(kind == "delete" for kind, _ in found):
                found, complete = [(k, i) for k, i in changes(None)[0]], True
            etags = {}
            for kind, item in found:
                if kind not in ("create", "update") or not isinstance(item, CARRIED):
                    continue  # deletions (handled above), other item types
                href = f"{collection.href}{resource_name(item_uid(item))}{extension}"
                self._ids[href] = (item.id, item.changekey)
                self._uids[item.id] = item_uid(item)
                etags[href] = item.changekey
            return Listing(etags, set(), state, complete)

        return self._call(f"listing {collection.name!r}", run)

    def fetch(self, collection: Collection, hrefs: list[str]) -> dict[str, tuple[str, str]]:
        """href -> (iCalendar or vCard text, change key) of the items still there; an item
        that cannot be told as text (a recurrence on "a weekday") has a ContentError as text."""
        if any(h not in self._ids for h in hrefs):
            self.listing(collection)
        wanted = [(h, self._ids[h]) for h in hrefs if h in self._ids]
        out = {}
        items = self._call(f"reading {collection.name!r}", lambda: list(
            self.account.fetch(ids=[ids for _, ids in wanted])))  # fmt: skip
        moved = [o for i in items if isinstance(i, CalendarItem)
                 for o in i.modified_occurrences or []]  # fmt: skip
        exceptions = {}
        if moved:
            found = self._call(f"reading moved instances in {collection.name!r}", lambda: list(
                self.account.fetch(ids=[(o.id, o.changekey) for o in moved])))  # fmt: skip
            exceptions = {o.id: e for o, e in zip(moved, found, strict=True)
                          if not isinstance(e, Exception)}  # fmt: skip
        for (href, _), item in zip(wanted, items, strict=True):
            if isinstance(item, Exception):
                continue  # deleted in between
            own = [exceptions[o.id] for o in getattr(item, "modified_occurrences", None) or []
                   if o.id in exceptions]  # fmt: skip
            try:
                out[href] = (item_text(item, own, self._uids), item.changekey)
            except ContentError as exc:  # reported by the sync with the item's name
                out[href] = (ContentError(f"Exchange item {item.subject or ''!r}: {exc}"),
                             item.changekey)  # fmt: skip
        return out

    def put(self, kind: str, href: str, body: str, etag: str | None) -> None:
        """Create (``etag`` None, the href unused) or replace the item at ``href``: in place,
        or by deleting and creating it again (both with nothing sent, :meth:`_replaces`), since
        a series' cancelled and changed instances and an item's attachments are written after
        the item."""
        folder_href = href.rsplit("/", 1)[0] + "/"
        folder = self._folder(folder_href)
        contacts = self._contacts(folder) if _is_group(body) else None
        try:
            converted = to_exchange(body, self.account, contacts)
        except NotCarried as exc:
            raise EwsGroupwareError(f"{self.label}: {exc}", 422) from None
        except MissingMember as exc:
            raise EwsGroupwareError(f"{self.label}: {exc}", 409) from None
        item = converted.item
        known = self._ids.get(href)
        if known is not None and (etag is None or etag != known[1]):
            raise EwsGroupwareError(f"{self.label}: {href} exists with another change key", 412)
        if known is not None and self._replaces(item, known):
            self.delete(href, etag)
            known = None
        if known is None:
            item.folder = folder
            self._call(f"creating an item in {folder.name!r}", item.save,
                       send_meeting_invitations=INVITATIONS)  # fmt: skip
            self._instances(item, converted, folder)
        else:
            item.id, item.changekey, item.folder = known[0], known[1], folder
            fields = [f.name for f in item.supported_fields(self.account.version)
                      if not f.is_read_only and f.name in _WRITABLE]  # fmt: skip
            self._call(f"updating an item in {folder.name!r}", item.save, update_fields=fields,
                       send_meeting_invitations=INVITATIONS)  # fmt: skip
        self._ids[href] = (item.id, item.changekey)
        self._uids[item.id] = item_uid(item)

    def _contacts(self, folder: Folder) -> dict[str, KnownContact]:
        """UID -> the folder's contacts with their first email address (a group's members)."""

        def run() -> dict[str, KnownContact]:
            found = {}
            for item in folder.all().only("groupware_uid", "email_addresses", "display_name"):
                if isinstance(item, Contact):
                    emails = sorted(item.email_addresses or [], key=lambda e: e.label)
                    found[item_uid(item)] = KnownContact(item.id, item.changekey,
                                                         emails[0].email if emails else None,
                                                         item.display_name)  # fmt: skip
            return found

        return self._call(f"listing contacts of {folder.name!r}", run)

    def _replaces(self, item, known: tuple[str, str]) -> bool:
        """Whether a change is written as delete + create rather than in place: always for
        contacts and tasks (nothing to send; their attachments and photo go with them), for a
        meeting when either version is a series or has attachments."""
        if not isinstance(item, CalendarItem) or item.recurrence is not None or item.attachments:
            return True
        (current,) = self._call("reading an item", lambda: list(self.account.fetch(
            ids=[known], only_fields=["has_attachments", "is_recurring"])))  # fmt: skip
        return bool(
            getattr(current, "has_attachments", False) or getattr(current, "is_recurring", False)
        )

    def _instances(self, master: CalendarItem, converted, folder: Folder) -> None:
        """Cancel and change single instances of a new series, sending nothing."""
        for number in converted.cancelled:
            self._call(f"cancelling an instance in {folder.name!r}",
                       master.occurrence(number).delete,
                       send_meeting_cancellations=INVITATIONS)  # fmt: skip
        for number, exception in converted.moved:
            occurrence = master.occurrence(number)
            for name in _INSTANCE:
                setattr(occurrence, name, getattr(exception, name))
            self._call(f"changing an instance in {folder.name!r}", occurrence.save,
                       update_fields=list(_INSTANCE), send_meeting_invitations=INVITATIONS)  # fmt: skip

    def delete(self, href: str, etag: str | None) -> None:
        known = self._ids.get(href)
        if known is None:
            self._folder(href.rsplit("/", 1)[0] + "/")
            raise EwsGroupwareError(f"{self.label}: nothing at {href}", 404)
        if etag is not None and etag != known[1]:
            raise EwsGroupwareError(f"{self.label}: {href} changed since it was listed", 412)
        item = CalendarItem(account=self.account, id=known[0], changekey=known[1])
        self._call("deleting an item", item.delete, send_meeting_cancellations=INVITATIONS)
        del self._ids[href]


def _is_group(body: str) -> bool:
    upper = body.upper()
    return "BEGIN:VCARD" in upper and ("KIND:GROUP" in upper)


_INSTANCE = ("start", "end", "subject", "body", "location", "sensitivity", "categories",
             "legacy_free_busy_status", "required_attendees", "optional_attendees", "resources",
             "reminder_is_set", "reminder_minutes_before_start")  # fmt: skip
_WRITABLE = {
    "subject", "body", "location", "start", "end", "is_all_day", "recurrence", "sensitivity",
    "categories", "legacy_free_busy_status", "required_attendees", "optional_attendees",
    "resources", "is_response_requested", "reminder_is_set", "reminder_minutes_before_start",
    "_start_timezone", "_end_timezone", "groupware_uid", "start_date", "due_date", "status",
    "percent_complete", "importance", "display_name", "given_name", "surname", "middle_name",
    "company_name", "department", "job_title", "birthday", "email_addresses", "phone_numbers",
    "physical_addresses", "members",
}  # fmt: skip
