"""The IMAP adapter: :class:`~mailmigrate.mailbox.base.Mailbox` over imapclient.

Messages are identified by UID inside a folder whose UIDVALIDITY is part of every sync token.
This module holds the session and the reading of messages; folders are in
:mod:`~mailmigrate.mailbox.imap_folders`, listings in :mod:`~mailmigrate.mailbox.imap_listings`,
writes in :mod:`~mailmigrate.mailbox.imap_writes`,
the error guard and reply helpers they share in :mod:`~mailmigrate.mailbox.imap_common`.
Listing reads sizes, flags, dates and Message-IDs in one FETCH; only messages without a
Message-ID get their header read for a hash. Appends use MULTIAPPEND (RFC 3502) with LITERAL+
where the server offers them and read the new UIDs from APPENDUID (RFC 4315).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from imapclient import IMAPClient, imap_utf7
from imapclient.exceptions import ProtocolError
from imapclient.response_parser import parse_response

from mailmigrate.connections import Endpoint
from mailmigrate.errors import MailboxError
from mailmigrate.mailbox import imap_responses, imap_wire
from mailmigrate.mailbox import imapclient_internals as internals
from mailmigrate.mailbox.base import (
    Mailbox,
    Message,
    MessageInfo,
    Ref,
)
from mailmigrate.mailbox.imap_common import (
    REFUSALS,
    ServerRefused,
    clean_flags,
    gmail_label,
    guarded,
    uid_ranges,
)
from mailmigrate.mailbox.imap_folders import ImapFolders
from mailmigrate.mailbox.imap_listings import ImapListings
from mailmigrate.mailbox.imap_session import TRANSIENT_ERRORS, abandon, open_session
from mailmigrate.mailbox.imap_writes import ImapWrites

FETCH_ITEMS = [b"BODY.PEEK[]", b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"]


class ImapMailbox(ImapFolders, ImapListings, ImapWrites, Mailbox):
    """One account on an IMAP server.

    :param endpoint: the server and its options (``security``, ``ca_file``, ``auth``...).
    :param user: the account's login.
    :param password: the account's password, or ``None`` for the connection's admin credentials.
    :param label: names this mailbox in errors, e.g. ``"source alice@example.com"``.
    """

    def __init__(self, endpoint: Endpoint, user: str, password: str | None, label: str):
        self.endpoint = endpoint
        self.user = user
        self._password = password
        self.label = label
        self._client: IMAPClient | None = None
        self._selected: tuple[tuple[str, ...], bool] | None = None
        self._select_info: dict[bytes, Any] = {}
        self._permanent_for: dict[bytes, Any] | None = None
        self._permanent: frozenset[str] | None = None
        self._lost_in: dict[tuple[tuple[str, ...], int], int] = {}  # connection losses in fetch
        self._malformed_in: set[tuple[tuple[str, ...], int]] = set()  # never handed on early
        self._ahead: imap_wire.FetchAhead | None = None  # the next batch's FETCH, sent ahead
        self._listed: set[tuple[str, ...]] | None = None  # folders this session listed/created
        self._marks: dict[tuple[str, ...], str] = {}  # append marks known from APPENDUIDs
        # What read_states read, per folder; one dict shared by the connections of share_states.
        self.folder_states: dict[tuple[str, ...], dict[bytes, Any]] = {}
        self.prefix = ""
        self.separator = "/"

    # -- session ---------------------------------------------------------------------------
    def connect(self) -> None:
        old, self._client = self._client, None
        if old is not None:  # a retried connect must not leave a session open on the server
            abandon(old)
        client = open_session(self.endpoint, self.user, self._password, self.label)
        self._selected = None
        self._listed = None
        try:
            personal = self._enable_and_namespace(client)
            if personal:
                prefix, separator = personal[0]
            else:
                folders = client.list_folders(directory="", pattern="")
                prefix, separator = "", folders[0][1] if folders and folders[0][1] else None
        except (*REFUSALS, *TRANSIENT_ERRORS) as exc:
            # Never guess the namespace after a lost answer: folders would map elsewhere.
            abandon(client)
            raise MailboxError(
                f"{self.label}: reading the namespace failed: {exc}",
                retryable=isinstance(exc, TRANSIENT_ERRORS),
            ) from None
        self.prefix = prefix
        self.separator = (separator.decode() if isinstance(separator, bytes) else separator) or "/"
        self._client = client

    def _enable_and_namespace(self, client: IMAPClient) -> Any:
        """``ENABLE CONDSTORE`` and ``NAMESPACE`` where offered, in one round trip: the
        personal namespace, or ``None`` (without NAMESPACE, or refused: the separator then
        comes from LIST).

        :raises ServerRefused: the server refused ENABLE."""
        commands = [b"ENABLE CONDSTORE"] if client.has_capability("CONDSTORE") else []
        if client.has_capability("NAMESPACE"):
            commands.append(b"NAMESPACE")
        if not commands:
            return None
        imap = internals.session(client)
        internals.take_untagged(imap, "NAMESPACE")
        replies = imap_wire.pipelined(imap, commands)
        if commands[0] == b"ENABLE CONDSTORE" and replies[0][0] != "OK":
            raise ServerRefused(f"ENABLE failed: {replies[0][1].decode(errors='replace')}")
        data = internals.take_untagged(imap, "NAMESPACE")
        if commands[-1] != b"NAMESPACE" or replies[-1][0] != "OK" or not data:
            return None
        try:
            personal = parse_response(data)[0]
        except (ValueError, IndexError, ProtocolError):
            return None
        if not personal:
            return None
        return [
            (imap_utf7.decode(prefix) if client.folder_encode else prefix,
             separator.decode() if isinstance(separator, bytes) else separator)
            for prefix, separator in personal
        ]  # fmt: skip

    def close(self) -> None:
        """Log out without waiting for the server's goodbye: everything the session did was
        answered already, so only a round trip would be lost by waiting."""
        client, self._client = self._client, None
        if client is not None:
            try:
                imap_wire.send_logout(internals.session(client))
            except Exception:
                pass
            try:
                client.shutdown()
            except Exception:
                pass

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            self.connect()
        assert self._client is not None
        return self._client

    def has(self, capability: str) -> bool:
        return self.client.has_capability(capability)

    def _uid_fetch(
        self, uid_set: str | Sequence[int], items: list[bytes], modifiers: str | None = None
    ) -> dict[int, dict[bytes, Any]]:
        """``UID FETCH`` keyed by UID. Unlike imapclient's fetch it takes UID ranges (``5:*``)
        and drops unsolicited FETCH responses that carry no UID, so a flag update pushed by
        another session is never mistaken for the message with that sequence number. Parsed by
        :mod:`~mailmigrate.mailbox.imap_wire` (about ten times cheaper than imapclient's lexer)."""
        if not isinstance(uid_set, str):
            uid_set = uid_ranges(uid_set)
        if not uid_set:
            return {}
        return imap_wire.uid_fetch(internals.session(self.client), uid_set, items, modifiers)

    @guarded("reading server facts")
    def describe(self) -> dict[str, Any]:
        capabilities = sorted(c.decode() for c in self.client.capabilities())
        return {
            "protocol": "imap",
            "server": f"{self.endpoint.host}:{self.client.port}",
            "capabilities": capabilities,
            "namespace_prefix": self.prefix,
            "separator": self.separator,
            "append_limit": self.append_limit(),
        }

    # -- names -----------------------------------------------------------------------------
    def path_of(self, name: str) -> tuple[str, ...]:
        if name.upper() == "INBOX":
            return ("INBOX",)
        if self.prefix and name.startswith(self.prefix):
            name = name[len(self.prefix) :]
        return tuple(name.split(self.separator)) if self.separator else (name,)

    def name_of(self, path: tuple[str, ...]) -> str:
        if path == ("INBOX",):
            return "INBOX"
        return self.prefix + self.separator.join(path)

    def valid_name_part(self, part: str) -> bool:
        return bool(part) and self.separator not in part and not any(ord(c) < 32 for c in part)

    # -- selection and tokens --------------------------------------------------------------
    def _select(
        self, path: tuple[str, ...], *, writable: bool = False, fresh: bool = False
    ) -> dict[bytes, Any]:
        """SELECT (EXAMINE unless ``writable``) the folder, unless it is selected already.

        :param fresh: select again all the same, for up-to-date UIDNEXT, EXISTS and MODSEQ.
        """
        if not fresh and (
            self._selected == (path, writable) or (self._selected == (path, True) and not writable)
        ):
            return self._select_info
        try:
            info = self.client.select_folder(self.name_of(path), readonly=not writable)
        except (ValueError, TypeError, AttributeError, IndexError) as exc:
            # imapclient's reading of FLAGS/PERMANENTFLAGS fails on a reply that is no IMAP
            raise imap_responses.MalformedResponse(f"SELECT reply: {exc}") from None
        if b"UIDNEXT" not in info:  # optional in a SELECT reply (Courier leaves it out)
            status = self.client.folder_status(self.name_of(path), [b"UIDNEXT"])
            info[b"UIDNEXT"] = status[b"UIDNEXT"]
        self._select_info = info
        self._selected = (path, writable)
        return self._select_info

    def _token(self, info: dict[bytes, Any]) -> str:
        return json.dumps(
            {
                "v": int(info[b"UIDVALIDITY"]),
                "n": int(info.get(b"UIDNEXT") or 0),
                "m": int(info[b"HIGHESTMODSEQ"]) if info.get(b"HIGHESTMODSEQ") else None,
                "c": int(info.get(b"EXISTS") or 0),
            },
            separators=(",", ":"),
        )

    def _status_items(self, size: bool = False) -> list[bytes]:
        items = [b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY"]
        if self.has("CONDSTORE"):
            items.append(b"HIGHESTMODSEQ")
        if size and self.has("STATUS=SIZE"):
            items.append(b"SIZE")
        return items

    def _status(self, path: tuple[str, ...]) -> dict[bytes, Any]:
        """The folder's state: from :meth:`read_states` while unwritten, else by STATUS."""
        read = self.folder_states.get(path)
        if read is not None:
            return read
        return self._state_of(self.client.folder_status(self.name_of(path), self._status_items()))

    @staticmethod
    def _state_of(status: dict[bytes, Any]) -> dict[bytes, Any]:
        return {
            b"UIDVALIDITY": status[b"UIDVALIDITY"],
            b"UIDNEXT": status[b"UIDNEXT"],
            b"HIGHESTMODSEQ": status.get(b"HIGHESTMODSEQ"),
            b"EXISTS": status[b"MESSAGES"],
            b"SIZE": status.get(b"SIZE"),
        }

    @guarded("reading the state of folders")
    def read_states(self, paths: Collection[tuple[str, ...]]) -> None:
        quoted = {path: internals.quoted_folder(self.client, self.name_of(path)) for path in paths}
        replies = imap_wire.status_many(internals.session(self.client), list(quoted.values()),
                                        self._status_items(size=True))  # fmt: skip
        for path, name in quoted.items():
            reply = replies.get(imap_wire.unquote(name))
            if reply and all(k in reply for k in (b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY")):
                self.folder_states[path] = self._state_of(reply)

    def known_size(self, path: tuple[str, ...]) -> int | None:
        read = self.folder_states.get(path)
        return None if read is None or read[b"SIZE"] is None else int(read[b"SIZE"])

    def share_states(self, other: Mailbox) -> None:
        if isinstance(other, ImapMailbox):
            self.folder_states = other.folder_states

    def _written(self, path: tuple[str, ...]) -> None:
        """The folder changed through this session: its read state is stale from now on."""
        self.folder_states.pop(path, None)
        self._marks.pop(path, None)

    def _note_mark(self, path: tuple[str, ...], mark: str | None) -> None:
        if mark is None:
            self._marks.pop(path, None)
        else:
            self._marks[path] = mark

    @guarded("counting messages in")
    def message_count(self, path: tuple[str, ...]) -> int:
        """The number of messages in a folder, from STATUS (no SELECT, no listing)."""
        read = self.folder_states.get(path)
        if read is not None:
            return int(read[b"EXISTS"])
        status = self.client.folder_status(self.name_of(path), [b"MESSAGES"])
        return int(status[b"MESSAGES"])

    @guarded("reading the identity of")
    def folder_marker(self, path: tuple[str, ...]) -> str | None:
        """The folder's UIDVALIDITY, from STATUS (a deleted and re-created folder gets another)."""
        read = self.folder_states.get(path)
        if read is not None:
            return f"uidvalidity {int(read[b'UIDVALIDITY'])}"
        status = self.client.folder_status(self.name_of(path), [b"UIDVALIDITY"])
        return f"uidvalidity {int(status[b'UIDVALIDITY'])}"

    # -- reading ---------------------------------------------------------------------------
    def labels_offered(self) -> bool:
        return self.has("X-GM-EXT-1")

    @guarded("reading Gmail labels in")
    def message_labels(self, path: tuple[str, ...]) -> dict[Ref, tuple[int, frozenset[str]]]:
        info = self._select(path, fresh=True)
        if not info.get(b"EXISTS"):
            return {}
        data = self._uid_fetch("1:*", [b"X-GM-MSGID", b"X-GM-LABELS"])
        return {
            uid: (
                int(d[b"X-GM-MSGID"]),
                frozenset(gmail_label(x) for x in d.get(b"X-GM-LABELS") or ()),
            )
            for uid, d in data.items()
            if b"X-GM-MSGID" in d
        }

    @guarded("reading append mark of")
    def append_mark(self, path: tuple[str, ...]) -> str | None:
        """From the UIDs the server gave this session's pipelined appends when they were the
        last write to the folder (no STATUS): never later than the server's own UIDNEXT, so
        nothing appended after it is missed."""
        if path in self._marks:
            return self._marks[path]
        status = self._status(path)
        return f"{int(status[b'UIDVALIDITY'])}:{int(status[b'UIDNEXT'])}"

    @guarded("fetching messages from")
    def fetch_then(
        self, path: tuple[str, ...], refs: Sequence[Ref], following: Sequence[Ref] | None,
        on_message: Callable[[Message], None] | None = None,
        on_start: Callable[[MessageInfo], Callable[[bytes], None] | None] | None = None,
    ) -> Iterable[Message]:  # fmt: skip
        """:meth:`fetch`, with the FETCH of ``following`` sent before this batch's answer is
        read (:func:`~mailmigrate.mailbox.imap_wire.uid_fetch_ahead`): the source streams
        batch after batch without a round trip between them. ``on_message`` gets each message
        as soon as all its items are read (before the batch's end; the batch's result holds
        it too); ``on_start`` is told a big message's flags, date and size before its bytes
        arrive (see :meth:`Mailbox.fetch_then`)."""
        return self.fetch(path, refs, following, on_message, on_start)

    def end_fetches(self) -> None:
        """Drop the session when a FETCH sent ahead was never read (the copy stopped early):
        its answer would be taken for the next command's."""
        ahead, self._ahead = self._ahead, None
        client = self._client
        if ahead is not None and client is not None and ahead.imap is internals.session(client):
            self._drop_session()

    @guarded("fetching messages from")
    def fetch(
        self, path: tuple[str, ...], refs: Sequence[Ref], following: Sequence[Ref] | None = None,
        on_message: Callable[[Message], None] | None = None,
        on_start: Callable[[MessageInfo], Callable[[bytes], None] | None] | None = None,
    ) -> Iterable[Message]:  # fmt: skip
        """The batch in one FETCH; message by message where that failed before.

        One message the server cannot deliver comes back with an ``error`` (reported, the rest
        copied) instead of costing the folder: at once for a malformed reply (the same every
        time); for a connection lost inside it, after it was lost in its batch and then twice
        on its own (each loss raises as before, so the folder's retries reconnect with
        back-off, and a network fault is never taken for the message's)."""
        uids = [int(r) for r in refs]
        if not any((path, uid) in self._lost_in for uid in uids):
            try:
                if any((path, uid) in self._malformed_in for uid in uids):
                    on_start = None  # what it handed on early was given up: not again
                return self._fetch_batch(path, uids, [int(r) for r in following or ()],
                                         on_message, on_start)  # fmt: skip
            except TRANSIENT_ERRORS:
                for uid in uids:
                    self._lost_in[(path, uid)] = 1
                raise
            except imap_responses.MalformedResponse:
                self._malformed_in.update((path, uid) for uid in uids)
                self._drop_session()
        messages = []
        for uid in uids:
            try:
                messages.extend(self._fetch_batch(path, [uid]))
            except imap_responses.MalformedResponse as exc:
                self._drop_session()
                messages.append(self._unreadable(uid, f"malformed reply: {exc}"))
            except TRANSIENT_ERRORS as exc:
                losses = self._lost_in.get((path, uid), 0) + 1
                if losses < 3:
                    self._lost_in[(path, uid)] = losses
                    raise
                self._drop_session()
                why = f"the connection was lost inside this message {losses} times ({exc})"
                messages.append(self._unreadable(uid, why))
            self._lost_in.pop((path, uid), None)
        return messages

    def _fetch_batch(
        self, path: tuple[str, ...], uids: list[int], following: list[int] | None = None,
        on_message: Callable[[Message], None] | None = None,
        on_start: Callable[[MessageInfo], Callable[[bytes], None] | None] | None = None,
    ) -> list[Message]:  # fmt: skip
        """One FETCH of ``uids`` (its answer read, sent ahead or now); with ``following``,
        the next batch's FETCH is sent ahead. Any failure with a FETCH sent ahead drops the
        session: its answer would be taken for another command's."""
        sent, self._ahead = self._ahead, None
        key = (path, tuple(uids))
        if sent is not None and (
            self._client is None or sent.imap is not internals.session(self._client)
        ):
            sent = None  # sent on a session since dropped  # fmt: skip
        if sent is not None and sent.key != key:
            self._drop_session()  # sent ahead for another batch: its answer is still coming
            sent = None
        self._select(path)
        imap = internals.session(self.client)
        complete = None
        if on_message is not None:

            def complete(uid: int, items: dict[bytes, Any]) -> None:
                on_message(self._message_of(uid, items))

        start = None
        if on_start is not None:

            def start(uid: int, items: dict[bytes, Any], size: int):
                if items.get(b"RFC822.SIZE") != size:  # reported as unreadable once read
                    return None
                flags = clean_flags(items.get(b"FLAGS", ()))
                return on_start(MessageInfo(ref=uid, identity="", size=size, flags=flags,
                                            internaldate=items.get(b"INTERNALDATE")))  # fmt: skip

        try:
            data, self._ahead = imap_wire.uid_fetch_ahead(
                imap, uids, uid_ranges(uids), FETCH_ITEMS, sent,
                ((path, tuple(following)), following, uid_ranges(following)) if following else None,
                complete, start,
            )  # fmt: skip
        except BaseException:
            if following or sent is not None:
                self._ahead = None
                self._drop_session()
            raise
        return [self._message_of(uid, d) for uid, d in data.items() if b"BODY[]" in d]

    def _message_of(self, uid: int, items: dict[bytes, Any]) -> Message:
        """A fetched message (with BODY[]), or an unreadable one when its size is not the
        size the server lists (copied, it would never match its source again: identities hold
        the size)."""
        content = items[b"BODY[]"]
        listed = items.get(b"RFC822.SIZE")
        if isinstance(listed, int) and listed != len(content):
            return self._unreadable(uid, f"the server sent {len(content)} bytes of a message "
                                         f"it lists as {listed} bytes")  # fmt: skip
        info = MessageInfo(
            ref=uid,
            identity="",
            size=len(content),
            flags=clean_flags(items.get(b"FLAGS", ())),
            internaldate=items.get(b"INTERNALDATE"),
        )
        return Message(info=info, content=content)

    def _unreadable(self, uid: int, why: str) -> Message:
        return Message(MessageInfo(ref=uid, identity="", size=0), b"", error=f"{self.label}: {why}")

    def _drop_session(self) -> None:
        """Forget a session whose replies can no longer be trusted; the next use reconnects."""
        client, self._client = self._client, None
        self._selected = None
        if client is not None:
            abandon(client)
