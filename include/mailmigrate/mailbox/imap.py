"""The IMAP adapter: :class:`~mailmigrate.mailbox.base.Mailbox` over imapclient.

Messages are identified by UID inside a folder whose UIDVALIDITY is part of every sync token.
This module holds the session and the reading side; folders are in
:mod:`~mailmigrate.mailbox.imap_folders`, writes in :mod:`~mailmigrate.mailbox.imap_writes`,
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

from mailmigrate import identity as ident
from mailmigrate.connections import Endpoint
from mailmigrate.errors import MailboxError
from mailmigrate.mailbox import imap_wire
from mailmigrate.mailbox import imapclient_internals as internals
from mailmigrate.mailbox.base import (
    Changes,
    Listing,
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
    message_id_header,
    uid_ranges,
)
from mailmigrate.mailbox.imap_folders import ImapFolders
from mailmigrate.mailbox.imap_session import TRANSIENT_ERRORS, abandon, open_session
from mailmigrate.mailbox.imap_writes import ImapWrites

FETCH_ITEMS = [b"BODY.PEEK[]", b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"]
LIST_FIELDS = [b"RFC822.SIZE", b"FLAGS", b"INTERNALDATE", b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]


class ImapMailbox(ImapFolders, ImapWrites, Mailbox):
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
            raise imap_wire.MalformedResponse(f"SELECT reply: {exc}") from None
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
    def _examine_and_fetch(
        self, path: tuple[str, ...], uid_set: str, items: list[bytes]
    ) -> tuple[dict[bytes, Any], dict[int, dict[bytes, Any]]]:
        """EXAMINE (fresh) and ``UID FETCH uid_set (items)`` in one round trip: the folder's
        facts as :meth:`_select` gives them, and the items by UID (none when the folder is
        empty: a server may refuse a UID set in an empty folder).

        Sent together safely: a refused EXAMINE leaves no folder selected, so the FETCH behind
        it fails too and is ignored."""
        imap = internals.session(self.client)
        quoted = internals.quoted_folder(self.client, self.name_of(path))
        self._selected = None
        internals.begin_examine(imap)
        by_uid: dict[int, dict[bytes, Any]] = {}

        def keep(entry: dict[bytes, Any]) -> None:
            uid = entry.get(b"UID")
            if isinstance(uid, int):
                by_uid.setdefault(uid, {}).update(entry)

        (typ, text), (fetched, why) = imap_wire.pipelined(
            imap, [b"EXAMINE " + quoted, imap_wire.fetch_command(uid_set, items)], keep
        )
        try:
            info = internals.end_examine(self.client, imap, typ == "OK")
        except (ValueError, TypeError, AttributeError, IndexError) as exc:
            raise imap_wire.MalformedResponse(f"EXAMINE reply: {exc}") from None
        if typ != "OK":
            raise ServerRefused(f"examine failed: {typ} {text.decode(errors='replace')}")
        if b"UIDNEXT" not in info:  # optional in a SELECT reply (Courier leaves it out)
            status = self.client.folder_status(self.name_of(path), [b"UIDNEXT"])
            info[b"UIDNEXT"] = status[b"UIDNEXT"]
        self._select_info = info
        self._selected = (path, False)
        if not info.get(b"EXISTS"):
            return info, {}
        if fetched != "OK":
            raise ServerRefused(f"FETCH failed: {fetched} {why.decode(errors='replace')}")
        return info, by_uid

    def _infos(
        self, criteria: str, min_uid: int = 0, data: dict[int, dict[bytes, Any]] | None = None,
        headers: dict[int, bytes] | None = None,
    ) -> list[MessageInfo]:  # fmt: skip
        """Message infos for the selected folder's UIDs in ``criteria`` (a UID set); ``data``:
        their ``LIST_FIELDS`` when fetched already; ``headers``: the headers of those without
        a Message-ID, when fetched already."""
        if data is None:
            data = self._uid_fetch(criteria, LIST_FIELDS)
        data = {uid: d for uid, d in data.items() if uid >= min_uid and b"RFC822.SIZE" in d}
        missing = [uid for uid, d in data.items() if not ident.message_id(message_id_header(d))]
        if headers is None:
            fetched = self._uid_fetch(missing, [b"BODY.PEEK[HEADER]"]) if missing else {}
            headers = {uid: d.get(b"BODY[HEADER]") or b"" for uid, d in fetched.items()}
        infos = []
        for uid in sorted(data):
            d = data[uid]
            size = int(d[b"RFC822.SIZE"])
            msgid = ident.message_id(message_id_header(d))
            infos.append(
                MessageInfo(
                    ref=uid,
                    identity=ident.identity(size, msgid, headers.get(uid)),
                    size=size,
                    flags=clean_flags(d.get(b"FLAGS", ())),
                    internaldate=d.get(b"INTERNALDATE"),
                )
            )
        return infos

    @guarded("listing messages in")
    def listing(self, path: tuple[str, ...]) -> Listing:
        info, data = self._examine_and_fetch(path, "1:*", LIST_FIELDS)
        token = self._token(info)
        messages = self._infos("1:*", data=data) if info.get(b"EXISTS") else []
        return Listing(messages=messages, token=token)

    @guarded("listing messages in")
    def listing_without_identities(self, path: tuple[str, ...]) -> Listing:
        """UIDs and sizes only, from the index: for a copy into an empty folder, which matches
        nothing and reads identities, flags and dates with the bytes it fetches. Skips reading
        every message's header (a pass over the source's files) and starts the copy sooner."""
        info, data = self._examine_and_fetch(path, "1:*", [b"RFC822.SIZE"])
        token = self._token(info)
        if not info.get(b"EXISTS"):
            return Listing(messages=[], token=token)
        messages = [
            MessageInfo(ref=uid, identity="", size=int(d[b"RFC822.SIZE"]))
            for uid, d in sorted(data.items())
            if b"RFC822.SIZE" in d
        ]
        return Listing(messages=messages, token=token)

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

    @guarded("reading changes in")
    def changes(self, path: tuple[str, ...], token: str, known: Collection[Ref]) -> Changes | None:
        then = json.loads(token)
        now = self._status(path)
        if int(now[b"UIDVALIDITY"]) != then["v"]:
            return None
        modseq = now[b"HIGHESTMODSEQ"]
        if (
            then["m"] is not None
            and modseq is not None
            and int(modseq) == then["m"]
            and int(now[b"UIDNEXT"]) == then["n"]
            and int(now[b"EXISTS"]) == then["c"]
        ):
            return Changes(token=token)
        info = self._select(path, fresh=True)
        if int(info[b"UIDVALIDITY"]) != then["v"]:
            return None
        changes = Changes(token=self._token(info))
        if not info.get(b"EXISTS"):
            changes.removed = set(known)
            return changes
        changes.new = self._infos(f"{then['n']}:*", min_uid=then["n"])
        if then["m"] is not None and info.get(b"HIGHESTMODSEQ"):
            changed = self._uid_fetch("1:*", [b"FLAGS"], f"CHANGEDSINCE {then['m']}")
        else:
            changed = self._uid_fetch("1:*", [b"FLAGS"])
        changes.flags = {
            uid: clean_flags(d[b"FLAGS"]) for uid, d in changed.items() if b"FLAGS" in d
        }
        if int(info[b"EXISTS"]) != then["c"] + len(changes.new):
            present = set(self.client.search("ALL"))
            changes.removed = {ref for ref in known if ref not in present}
        return changes

    @guarded("reading append mark of")
    def append_mark(self, path: tuple[str, ...]) -> str | None:
        """From the UIDs the server gave this session's pipelined appends when they were the
        last write to the folder (no STATUS): never later than the server's own UIDNEXT, so
        nothing appended after it is missed."""
        if path in self._marks:
            return self._marks[path]
        status = self._status(path)
        return f"{int(status[b'UIDVALIDITY'])}:{int(status[b'UIDNEXT'])}"

    @guarded("listing new messages in")
    def listing_since(self, path: tuple[str, ...], mark: str | None) -> list[MessageInfo]:
        """Nothing, without a command, when the folder's state read for this pass
        (:meth:`read_states`; the folder not written through this session since) says it is
        empty or has nothing after ``mark``."""
        if self._nothing_since(path, mark):
            return []
        since = int(mark.split(":")[1]) if mark else 1
        info, data = self._examine_and_fetch(path, f"{since}:*", LIST_FIELDS)
        if not info.get(b"EXISTS"):
            return []
        if mark and int(mark.split(":")[0]) == int(info[b"UIDVALIDITY"]):
            return self._infos(f"{since}:*", min_uid=since, data=data)
        if since == 1:
            return self._infos("1:*", data=data)
        return self._infos("1:*")  # another folder under the same name: everything is new

    def _nothing_since(self, path: tuple[str, ...], mark: str | None) -> bool:
        read = self.folder_states.get(path)
        if read is None:
            return False
        if not read[b"EXISTS"]:
            return True
        if mark:
            validity, uidnext = (int(x) for x in mark.split(":"))
            return validity == int(read[b"UIDVALIDITY"]) and uidnext >= int(read[b"UIDNEXT"])
        return False

    @guarded("listing messages in")
    def listings_since(
        self, wanted: Sequence[tuple[tuple[str, ...], str | None]]
    ) -> dict[tuple[str, ...], list[MessageInfo]]:
        """:meth:`listing_since` of several folders in two round trips: EXAMINE and UID FETCH
        of each folder, all sent at once; then, the same way, the headers of messages without
        a Message-ID. A folder the flights do not answer plainly (refused, another UIDVALIDITY
        than the mark's, no UIDNEXT) is left out, for :meth:`listing_since` to ask alone."""
        out: dict[tuple[str, ...], list[MessageInfo]] = {}
        asked = []
        for path, mark in wanted:
            if self._nothing_since(path, mark):
                out[path] = []
            else:
                since = int(mark.split(":")[1]) if mark else 1
                asked.append((path, mark, since))
        if len(asked) < 2:  # one folder alone costs the same flight
            return out
        listed = {}
        everything_since = [(path, f"{since}:*") for path, _, since in asked]
        for (path, mark, since), (info, data, fetched) in zip(
            asked, self._examine_and_fetch_many(everything_since, LIST_FIELDS), strict=True
        ):
            if not info or b"UIDNEXT" not in info:
                continue
            if not info.get(b"EXISTS"):
                out[path] = []
            elif fetched and (not mark or int(mark.split(":")[0]) == int(info[b"UIDVALIDITY"])):
                listed[path] = {u: d for u, d in data.items() if u >= since and b"RFC822.SIZE" in d}
        anonymous = {
            path: [uid for uid, d in data.items() if not ident.message_id(message_id_header(d))]
            for path, data in listed.items()
        }
        headers: dict[tuple[str, ...], dict[int, bytes]] = {path: {} for path in listed}
        asked_again = [(path, uid_ranges(uids)) for path, uids in anonymous.items() if uids]
        for (path, _), (info, data, fetched) in zip(
            asked_again,
            self._examine_and_fetch_many(asked_again, [b"BODY.PEEK[HEADER]"]),
            strict=True,
        ):
            if info and fetched:
                headers[path] = {uid: d.get(b"BODY[HEADER]") or b"" for uid, d in data.items()}
        for path, data in listed.items():
            if all(uid in headers[path] for uid in anonymous[path]):
                out[path] = self._infos("", data=data, headers=headers[path])
        return out

    def _examine_and_fetch_many(
        self, wanted: Sequence[tuple[tuple[str, ...], str]], items: list[bytes]
    ) -> list[tuple[dict[bytes, Any], dict[int, dict[bytes, Any]], bool]]:
        """:meth:`_examine_and_fetch` of several ``(path, uid_set)`` in one round trip: per
        folder its facts (``{}``: refused or unreadable), the items by UID, and whether the
        FETCH was answered OK."""
        if not wanted:
            return []
        imap = internals.session(self.client)
        commands = []
        for path, uid_set in wanted:
            quoted = internals.quoted_folder(self.client, self.name_of(path))
            commands += [b"EXAMINE " + quoted, imap_wire.fetch_command(uid_set, items)]
        infos: list[dict[bytes, Any]] = [{} for _ in wanted]
        fetched: list[dict[int, dict[bytes, Any]]] = [{} for _ in wanted]
        reading = [0]  # the folder whose FETCH responses come next

        def keep(entry: dict[bytes, Any]) -> None:
            if isinstance(entry.get(b"UID"), int):
                fetched[reading[0]].setdefault(entry[b"UID"], {}).update(entry)

        def tagged(index: int, typ: str) -> None:
            if index % 2 == 0:  # an EXAMINE: its responses are in imaplib's store
                reading[0] = index // 2
                try:
                    infos[index // 2] = internals.end_examine(self.client, imap, typ == "OK")
                except (ValueError, TypeError, AttributeError, IndexError):
                    pass  # asked alone, where a malformed reply is reported
                internals.begin_examine(imap)

        self._selected = None
        internals.begin_examine(imap)
        answers = imap_wire.pipelined(imap, commands, keep, tagged)
        return [
            (info, data, typ == "OK")
            for info, data, (typ, _) in zip(infos, fetched, answers[1::2], strict=True)
        ]

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
            except imap_wire.MalformedResponse:
                self._malformed_in.update((path, uid) for uid in uids)
                self._drop_session()
        messages = []
        for uid in uids:
            try:
                messages.extend(self._fetch_batch(path, [uid]))
            except imap_wire.MalformedResponse as exc:
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
