"""The one small interface every mailbox protocol implements.

The copy engine (``mailmigrate.sync``) speaks only this interface. A message is described by a
:class:`MessageInfo` (its reference on the server, its identity, size, flags and date) and carried
as a :class:`Message` (info plus the exact bytes). Flags always use the IMAP vocabulary
(``\\Seen``, ``\\Answered``, ``\\Flagged``, ``\\Deleted``, ``\\Draft`` and keywords); adapters for
other protocols translate.

Folders are addressed by their *path*: the tuple of name components below the personal namespace
root, e.g. ``("INBOX",)`` or ``("Projects", "2024")``. Adapters translate a path to and from their
native names (prefix, separator, encoding), so the engine never sees a separator.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailmigrate.errors import AuthenticationFailed, MailboxError

Ref = int | str
"""A message's reference inside one folder: the UID for IMAP, the item id for EWS."""

SYSTEM_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})

SPECIAL_USES = ("\\Sent", "\\Trash", "\\Drafts", "\\Junk", "\\Archive", "\\All", "\\Flagged")


@dataclass(frozen=True)
class Folder:
    """A folder as listed by a server.

    :param path: name components below the personal namespace root; ``("INBOX",)`` for the inbox.
    :param name: the server's own full name (for logs and reports).
    :param special_use: an RFC 6154 attribute such as ``\\Sent``, or ``None``. Adapters report what
        the server says; the folder mapper adds well-known-name guesses.
    :param subscribed: whether the user is subscribed to it.
    :param selectable: ``False`` for ``\\Noselect`` containers, which hold no messages.
    """

    path: tuple[str, ...]
    name: str
    special_use: str | None = None
    subscribed: bool = True
    selectable: bool = True


@dataclass(frozen=True)
class FolderStats:
    """Message count, total size and largest message of one folder (sizes in bytes)."""

    messages: int
    size: int | None = None
    largest: int | None = None


@dataclass(frozen=True)
class MessageInfo:
    """What the engine knows of a message without its bytes.

    :param ref: the message's reference in its folder (UID / item id).
    :param identity: ``mailmigrate.identity.identity_of(content)`` of the exact bytes; equal on
        both sides for a faithful copy. Never a sequence number.
    :param size: the exact size of the content in bytes.
    :param flags: IMAP-style flags, ``\\Recent`` excluded.
    :param internaldate: the arrival date (timezone-aware).
    """

    ref: Ref
    identity: str
    size: int
    flags: frozenset[str] = frozenset()
    internaldate: dt.datetime | None = None


@dataclass(frozen=True)
class Message:
    """A message with its exact bytes, ready to append; or, with ``error``, one the source could
    not deliver (a malformed reply, fewer bytes than it lists): reported, never appended."""

    info: MessageInfo
    content: bytes
    error: str | None = None


@dataclass(frozen=True)
class AppendResult:
    """The outcome of appending one message: its new reference, or the server's refusal.

    :param note: the message was stored, but not exactly (flags the folder cannot hold).
    """

    ref: Ref | None = None
    error: str | None = None
    note: str | None = None


@dataclass
class Listing:
    """A folder's messages and the sync token that stands for "this moment" of the folder.

    The token is opaque to the engine and small (it is stored between passes); it must be taken
    before the messages are read, so nothing arriving in between is missed.
    """

    messages: list[MessageInfo]
    token: str | None


@dataclass
class Changes:
    """What changed in a source folder since a token.

    :param new: messages that arrived since the token.
    :param flags: current flags of messages whose flags may have changed (a superset is fine).
    :param removed: references of messages gone since the token, out of the ``known`` ones asked
        about; empty when nothing was removed.
    :param token: the token for the next pass.
    """

    new: list[MessageInfo] = field(default_factory=list)
    flags: dict[Ref, frozenset[str]] = field(default_factory=dict)
    removed: set[Ref] = field(default_factory=set)
    token: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.new or self.flags or self.removed)


@dataclass(frozen=True)
class Quota:
    """Storage use and limit in bytes; ``limit`` is ``None`` when unlimited."""

    used: int
    limit: int | None


class Mailbox(abc.ABC):
    """One logged-in mailbox of one account on one server.

    Use as a context manager: ``with adapter as mb: ...`` logs in and out. ``label`` (e.g.
    ``"source alice@example.com"``) prefixes every error text.
    """

    label: str = "mailbox"
    separator: str = "/"  # the hierarchy separator of native folder names ("" when none)
    case_sensitive_names: bool = True  # whether "Foo" and "foo" are two folders

    # -- session ---------------------------------------------------------------------------
    @abc.abstractmethod
    def connect(self) -> None:
        """Connect and log in; raise :class:`AuthenticationFailed` or :class:`MailboxError`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Log out; never raises."""

    def reconnect(self) -> None:
        """Drop the session and log in again (after a retryable error)."""
        self.close()
        self.connect()

    def __enter__(self) -> Mailbox:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """Server facts for the preflight report: capabilities, namespace, separator, limits."""

    # -- folders ---------------------------------------------------------------------------
    @abc.abstractmethod
    def list_folders(self) -> list[Folder]:
        """Every folder of the personal namespace, containers included."""

    @abc.abstractmethod
    def folder_stats(self, path: tuple[str, ...]) -> FolderStats:
        """Message count and total size of a folder."""

    def message_count(self, path: tuple[str, ...]) -> int:
        """How many messages a folder holds; adapters override it where a cheaper answer than
        :meth:`folder_stats` exists (IMAP: STATUS)."""
        return self.folder_stats(path).messages

    def read_states(self, paths: Collection[tuple[str, ...]]) -> None:
        """Read the state of these folders (count, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ) at once
        and answer :meth:`message_count`, :meth:`folder_marker`, :meth:`changes` and
        :meth:`append_mark` from it until the folder is written to through this mailbox (or one
        sharing its states). An answer from it may be older than the server's, never newer: a
        change made meanwhile by someone else is seen by the next pass. Optional (IMAP:
        pipelined STATUS, one round trip for all folders)."""
        return None

    def known_size(self, path: tuple[str, ...]) -> int | None:
        """The folder's size in bytes as :meth:`read_states` read it (IMAP: STATUS=SIZE);
        ``None`` when it was not read."""
        return None

    def share_states(self, other: Mailbox) -> None:
        """Use ``other``'s read states (another connection to the same mailbox) as well."""
        return None

    def folder_marker(self, path: tuple[str, ...]) -> str | None:
        """What tells this folder apart from any other folder that has or had its name: it
        changes when the folder is deleted and created again, restored, or replaced by another
        one, and whenever the references of its messages stop meaning what they meant (IMAP:
        UIDVALIDITY; EWS: the folder id). Small, stored in the sync state. ``None`` when the
        adapter cannot tell (the engine then trusts its state as before)."""
        return None

    @abc.abstractmethod
    def create_folder(self, path: tuple[str, ...], special_use: str | None = None) -> None:
        """Create a folder (and its parents); no error when it exists."""

    @abc.abstractmethod
    def subscribe(self, path: tuple[str, ...]) -> None:
        """Subscribe to a folder; no error when already subscribed."""

    def prepare_folders(
        self, wanted: Sequence[tuple[tuple[str, ...], str | None, bool, bool]]
    ) -> dict[tuple[str, ...], tuple[str, Exception]]:
        """For each ``(path, special_use, create, subscribe)``: create the folder (and its
        parents) and/or subscribe it; an adapter may send them all at once.

        :return: per path that failed, ``("create" | "subscribe", the error)`` (the first step
            that failed); the other paths are done.
        :raises MailboxError: a retryable one (the connection or the server is unwell).
        """
        failed: dict[tuple[str, ...], tuple[str, Exception]] = {}
        for path, special_use, create, subscribe in wanted:
            step = "create"
            try:
                if create:
                    self.create_folder(path, special_use)
                step = "subscribe"
                if subscribe:
                    self.subscribe(path)
            except MailboxError as exc:
                if exc.retryable or isinstance(exc, AuthenticationFailed):
                    raise
                failed[path] = (step, exc)
        return failed

    def valid_name_part(self, part: str) -> bool:
        """Whether one path component can be held by this server as it is."""
        return bool(part)

    def quota(self) -> Quota | None:
        """The account's storage quota, or ``None`` when the server does not say."""
        return None

    def append_limit(self) -> int | None:
        """The largest message the server accepts, or ``None`` when it does not say."""
        return None

    def fallbacks(self, role: str) -> list[str]:
        """What a copy does differently with this server as ``role`` ("source" or
        "destination") because it lacks a capability, one sentence each."""
        return []

    def probe(
        self, special_uses: Collection[str], folders: Collection[tuple[str, ...]] = ()
    ) -> tuple[list[str], list[str]]:
        """Try what a copy into this mailbox will ask of it beyond appending (creating folders
        with these special uses, and with names like ``folders``), on probe folders removed
        again.

        :return: ``(problems, notes)``: what the copy would fail on, and what it will do
            differently or what was verified."""
        return [], []

    # -- messages --------------------------------------------------------------------------
    @abc.abstractmethod
    def listing(self, path: tuple[str, ...]) -> Listing:
        """Every message of the folder, and the token for a later :meth:`changes`."""

    def listing_without_identities(self, path: tuple[str, ...]) -> Listing:
        """:meth:`listing`, where identities, flags and dates may be left empty: for a copy into
        an empty folder, which matches nothing and reads them with the bytes it copies (see
        :meth:`fetch`). Adapters override it where that saves reading every message (IMAP: the
        headers)."""
        return self.listing(path)

    def labels_offered(self) -> bool:
        """Whether the server answers Gmail's label items (``X-GM-EXT-1``)."""
        return False

    def message_labels(self, path: tuple[str, ...]) -> dict[Ref, tuple[int, frozenset[str]]]:
        """Per message of the folder: its Gmail message id and labels (label names as Gmail
        writes them, ``/`` between levels; system labels such as ``\\Inbox``, ``\\Sent``).
        Only where :meth:`labels_offered`."""
        raise NotImplementedError(f"{self.label}: the server has no labels")

    @abc.abstractmethod
    def changes(self, path: tuple[str, ...], token: str, known: Collection[Ref]) -> Changes | None:
        """What changed since ``token``, or ``None`` when the token is no longer valid (UIDVALIDITY
        changed, sync state expired): the engine then compares the full :meth:`listing`.

        :param known: references the engine holds from earlier passes, to report removals among.
        """

    @abc.abstractmethod
    def append_mark(self, path: tuple[str, ...]) -> str | None:
        """A mark such that every message appended later is returned by
        :meth:`listing_since` (IMAP: UIDVALIDITY and UIDNEXT). ``None`` when the adapter cannot
        tell; :meth:`listing_since` then lists the whole folder."""

    @abc.abstractmethod
    def listing_since(self, path: tuple[str, ...], mark: str | None) -> list[MessageInfo]:
        """Messages appended since ``mark`` (all messages when the mark is ``None`` or stale)."""

    def listings_since(
        self, wanted: Sequence[tuple[tuple[str, ...], str | None]]
    ) -> dict[tuple[str, ...], list[MessageInfo]]:
        """:meth:`listing_since` of several ``(path, mark)`` at once, where the protocol lets
        an adapter ask for them together; a folder it leaves out is asked alone."""
        return {}

    @abc.abstractmethod
    def fetch(self, path: tuple[str, ...], refs: Sequence[Ref]) -> Iterable[Message]:
        """The exact bytes of the given messages with their current flags and dates, in one
        batch, in any order."""

    def fetch_then(
        self, path: tuple[str, ...], refs: Sequence[Ref], following: Sequence[Ref] | None,
        on_message: Callable[[Message], None] | None = None,
        on_start: Callable[[MessageInfo], Callable[[bytes], None] | None] | None = None,
    ) -> Iterable[Message]:  # fmt: skip
        """:meth:`fetch`; an adapter that can ask ahead asks for ``following`` (the next batch,
        fetched by the next call) before this batch has arrived, and one that reads messages
        one by one may hand each to ``on_message`` as it arrives (the result holds it too).
        :meth:`end_fetches` once the last batch is fetched, or when the copy stops early.

        ``on_start``: an adapter that reads a big message as a stream may first tell its ref,
        flags, date and size (``identity`` empty), and hand its bytes as they arrive to the
        callable ``on_start`` returns (``None``: not wanted). Such a message is then given to
        ``on_message`` next, before anything else; if not, what was handed on is void."""
        return self.fetch(path, refs)

    def end_fetches(self) -> None:
        """Forget a request sent ahead by :meth:`fetch_then` and never fetched."""
        return None

    @abc.abstractmethod
    def append(self, path: tuple[str, ...], messages: Sequence[Message]) -> list[AppendResult]:
        """Append messages with their flags and dates, one result per message, in order.

        A refusal of one message (too big, over quota) is reported in its result and does not stop
        the others; connection failures raise :class:`MailboxError`.
        """

    def appender(self, path: tuple[str, ...]) -> Appender:
        """Appends batches to ``path``; an adapter whose protocol can have several appends
        under way at once returns one with :attr:`Appender.depth` above 1."""
        return Appender(self, path)

    @abc.abstractmethod
    def set_flags(
        self, path: tuple[str, ...], ref: Ref, add: frozenset[str], remove: frozenset[str]
    ) -> str | None:
        """Add and remove flags on one message; a note naming the flags the destination did not
        store (``None``: all stored), as :attr:`AppendResult.note` for a copy."""

    @abc.abstractmethod
    def delete(self, path: tuple[str, ...], refs: Collection[Ref]) -> None:
        """Remove messages for good (used only when the plan propagates deletions)."""


class Appender:
    """Batches appended to one folder, answered oldest first: :meth:`send` a batch, then
    :meth:`receive` its results. At most :attr:`depth` batches are sent and not yet received
    (this one appends each batch in :meth:`receive`: depth 1, nothing under way).

    Invariant for every adapter: a batch's results come only from the server's confirmation, so
    nothing is recorded before it; a batch sent and never received (:meth:`abandon`) may have
    landed, and is found again by identity after the folder's append mark. A batch is made of
    whole messages only: one given up half sent never lands.
    """

    depth = 1

    def __init__(self, mailbox: Mailbox, path: tuple[str, ...]) -> None:
        self.mailbox, self.path = mailbox, path
        self._sent: list[Sequence[Message]] = []

    @property
    def in_flight(self) -> int:
        return len(self._sent)

    def send(self, messages: Sequence[Message]) -> None:
        self._sent.append(messages)

    def open(self) -> None:
        """Start a batch whose messages are given one by one (:meth:`add`) as they arrive;
        :meth:`close` ends it, and it is then sent as :meth:`send` would."""
        self._adding: list[Message] = []

    def add(self, message: Message) -> None:
        self._adding.append(message)

    streams = False  # whether :meth:`begin` is offered

    def begin(self, info: MessageInfo) -> None:
        """Start adding a message whose ``info.size`` bytes follow in :meth:`more` (by an
        appender that :attr:`streams`); :meth:`finish` adds it once they are all sent."""
        raise NotImplementedError

    def more(self, chunk: bytes) -> None:
        raise NotImplementedError

    def finish(self, message: Message) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.send(self._adding)

    def receive(self) -> list[AppendResult]:
        """The results of the oldest batch sent, one per message, in order (as
        :meth:`Mailbox.append`)."""
        return self.mailbox.append(self.path, self._sent.pop(0))

    def abandon(self) -> None:
        """Give up the batches sent and not received (the copy failed)."""
        self._sent.clear()
