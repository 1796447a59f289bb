"""The IMAP adapter: :class:`~mailmigrate.mailbox.base.Mailbox` over imapclient.

Messages are identified by UID inside a folder whose UIDVALIDITY is part of every sync token.
Listing reads sizes, flags, dates and Message-IDs in one FETCH; only messages without a
Message-ID get their header read for a hash. Appends use MULTIAPPEND (RFC 3502) with LITERAL+
where the server offers them and read the new UIDs from APPENDUID (RFC 4315).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import secrets
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from imapclient import IMAPClient, imap_utf7
from imapclient.exceptions import IMAPClientError, ProtocolError
from imapclient.response_parser import parse_response

from mailmigrate import identity as ident
from mailmigrate.connections import Endpoint
from mailmigrate.errors import MailboxError
from mailmigrate.mailbox import imap_wire
from mailmigrate.mailbox import imapclient_internals as internals
from mailmigrate.mailbox.base import (
    SPECIAL_USES,
    Appender,
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
from mailmigrate.mailbox.imap_append import Hooks, PipelinedAppender
from mailmigrate.mailbox.imap_session import TRANSIENT_ERRORS, abandon, open_session

FETCH_ITEMS = [b"BODY.PEEK[]", b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"]
LIST_FIELDS = [b"RFC822.SIZE", b"FLAGS", b"INTERNALDATE", b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]
HEADER_FIELDS_KEY = b"BODY[HEADER.FIELDS (MESSAGE-ID)]"
# How servers name that item in their reply: Courier quotes the field ("MESSAGE-ID").
HEADER_FIELDS_KEYS = (HEADER_FIELDS_KEY, b'BODY[HEADER.FIELDS ("MESSAGE-ID")]')
# Server refusals that concern the connection, not one message: reconnect and retry. Not
# [LIMIT] (RFC 5530: an implementation limit, e.g. Dovecot's message size limit): it answers
# the same every time, so a message refused with it is reported, not retried.
RETRYABLE_CODES = ("[UNAVAILABLE]", "[INUSE]", "[SERVERBUG]")


class ServerRefused(Exception):
    """A NO/BAD answer to a command this module sent past imapclient's own methods (a raw CREATE,
    a streamed APPEND). Never imapclient's ``IMAPClientError``: :func:`_guarded` turns it into a
    :class:`MailboxError` that is retryable only for :data:`RETRYABLE_CODES`, as it does
    imapclient's own refusals, and it cannot be mistaken for a lost connection."""


# What a server's refusal of a command looks like here: imapclient's, or this module's own.
REFUSALS = (IMAPClientError, ServerRefused)
STORAGE = re.compile(rb"\bSTORAGE (\d+) (\d+)", re.IGNORECASE)
APPENDUID = imap_wire.APPENDUID
# Capabilities the engine uses where offered, for which roles, and what it does without them.
FALLBACKS = {
    "UIDPLUS": (("destination",), "appended messages are found by identity after each batch"),
    "MULTIAPPEND": (("destination",), "one APPEND per message instead of one per batch"),
    "LITERAL+": (("destination",), "every message waits for the server's go-ahead"),
    "CONDSTORE": (("source",), "a delta reads the flags of every message of every folder"),
    "SPECIAL-USE": (("source", "destination"), "special folders are recognised by their names"),
    "CREATE-SPECIAL-USE": (("destination",), "special folders are created without attributes"),
    "NAMESPACE": (("source", "destination"), "the separator comes from LIST, no prefix"),
    "QUOTA": (("destination",), "free space cannot be checked before the copy"),
}
# RFC 3501 flag: "\\" atom (system flags) or atom (keywords). An atom is printable ASCII
# without ( ) { SP % * " \\ ]: nothing that could end a flag list or start a literal.
FLAG = re.compile(r"\\?[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+")


def uid_ranges(uids: Iterable[int]) -> str:
    """A compact UID set: ``[1, 2, 3, 7, 9, 10]`` -> ``"1:3,7,9:10"``."""
    parts: list[str] = []
    run: list[int] = []
    for uid in sorted(set(uids)):
        if run and uid == run[-1] + 1:
            run.append(uid)
            continue
        if run:
            parts.append(f"{run[0]}:{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [uid]
    if run:
        parts.append(f"{run[0]}:{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


_CLEANED: dict[tuple, frozenset[str]] = {}


def _flag_text(flag: bytes | str | int) -> str:
    """A flag as text. imapclient reads an atom of digits as an int (a keyword ``2024``) but keeps
    leading zeros as bytes (``0123``), so ``str`` gives back the atom exactly."""
    if isinstance(flag, bytes):
        return flag.decode("utf-8", "replace")  # not an atom when it is not ASCII: refused later
    return str(flag)


def _eight_bit(data: bytes) -> bytes:
    """The bytes above 127 of ``data``, in order."""
    return bytes(b for b in data if b > 127) if not data.isascii() else b""


def _message_id_header(fetched: dict[bytes, Any]) -> bytes:
    """The Message-ID header lines a FETCH of ``HEADER.FIELDS (MESSAGE-ID)`` returned."""
    for key in HEADER_FIELDS_KEYS:
        value = fetched.get(key)
        if value is not None:
            return value
    return b""


def _clean_flags(flags: Iterable[bytes | str]) -> frozenset[str]:
    key = flags if isinstance(flags, tuple) else tuple(flags)
    cleaned = _CLEANED.get(key)
    if cleaned is None:  # a mailbox has few distinct flag sets: remember them
        out = {_flag_text(f) for f in key}
        out.discard("\\Recent")
        cleaned = frozenset(out)
        if len(_CLEANED) < 4096:
            _CLEANED[key] = cleaned
    return cleaned


def _label(value: bytes | int | str) -> str:
    """A Gmail label as text: modified UTF-7 decoded; a numeric label stays its digits."""
    if isinstance(value, bytes):
        return imap_utf7.decode(value)
    return str(value)


def _guarded(operation: str):
    """Turn protocol and socket failures into :class:`MailboxError` naming the folder."""

    def decorate(method):
        @functools.wraps(method)
        def wrapper(self: ImapMailbox, *args: Any, **kwargs: Any):
            folder = "/".join(args[0]) if args and isinstance(args[0], tuple) else None
            where = f" {folder}" if folder else ""
            try:
                return method(self, *args, **kwargs)
            except MailboxError:
                raise
            except imap_wire.MalformedResponse as exc:
                self._drop_session()  # out of step with the server
                raise MailboxError(
                    f"{self.label}: {operation}{where}: malformed reply from the server: {exc}",
                    folder=folder,
                ) from None
            except TRANSIENT_ERRORS as exc:
                client, self._client = self._client, None
                if client is not None:
                    abandon(client)
                raise MailboxError(
                    f"{self.label}: {operation}{where}: connection lost ({exc})",
                    retryable=True,
                    folder=folder,
                ) from None
            except REFUSALS as exc:
                text = str(exc)
                raise MailboxError(
                    f"{self.label}: {operation}{where}: server said: {text}",
                    retryable=any(code in text for code in RETRYABLE_CODES),
                    folder=folder,
                ) from None

        return wrapper

    return decorate


class ImapMailbox(Mailbox):
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
        except (IMAPClientError, *TRANSIENT_ERRORS) as exc:
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

        :raises IMAPClientError: the server refused ENABLE."""
        commands = [b"ENABLE CONDSTORE"] if client.has_capability("CONDSTORE") else []
        if client.has_capability("NAMESPACE"):
            commands.append(b"NAMESPACE")
        if not commands:
            return None
        imap = internals.session(client)
        internals.take_untagged(imap, "NAMESPACE")
        replies = imap_wire.pipelined(imap, commands)
        if commands[0] == b"ENABLE CONDSTORE" and replies[0][0] != "OK":
            raise IMAPClientError(f"ENABLE failed: {replies[0][1].decode(errors='replace')}")
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

    @_guarded("reading server facts")
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

    # -- folders ---------------------------------------------------------------------------
    @_guarded("listing folders")
    def list_folders(self) -> list[Folder]:
        """Subscriptions and folders in one round trip (LSUB and LIST pipelined)."""
        imap = internals.session(self.client)
        for kind in ("LSUB", "LIST"):
            internals.take_untagged(imap, kind)  # nothing left over from earlier commands
        replies = imap_wire.pipelined(imap, [b'LSUB "" "*"', b'LIST "" "*"'])
        for kind, (typ, text) in zip(("LSUB", "LIST"), replies, strict=True):
            if typ != "OK":
                raise ServerRefused(f"{kind} failed: {typ} {text.decode(errors='replace')}")
        subscribed = {name for _, _, name in internals.folder_list(self.client, imap, "LSUB")}
        folders = []
        for flags, _, name in internals.folder_list(self.client, imap, "LIST"):
            attributes = {f.decode() if isinstance(f, bytes) else f for f in flags}
            lowered = {a.lower() for a in attributes}
            # RFC 8457's \\Important too: a label-based source's view (see mailmigrate.labels).
            uses = (*SPECIAL_USES, "\\Important")
            special = next((use for use in uses if use.lower() in lowered), None)
            folders.append(
                Folder(
                    path=self.path_of(name),
                    name=name,
                    special_use=special,
                    subscribed=name in subscribed or name.upper() == "INBOX",
                    selectable="\\noselect" not in lowered and "\\nonexistent" not in lowered,
                )
            )
        self._listed = {folder.path for folder in folders}
        return folders

    @_guarded("reading folder size")
    def folder_stats(self, path: tuple[str, ...]) -> FolderStats:
        info = self._select(path, fresh=True)
        if not info.get(b"EXISTS"):
            return FolderStats(messages=0, size=0, largest=0)
        fetched = self._uid_fetch("1:*", [b"RFC822.SIZE"])
        sizes = [d[b"RFC822.SIZE"] for d in fetched.values() if b"RFC822.SIZE" in d]
        return FolderStats(messages=len(sizes), size=sum(sizes), largest=max(sizes, default=0))

    @_guarded("creating folder")
    def create_folder(self, path: tuple[str, ...], special_use: str | None = None) -> None:
        """Create the folder and any missing parent. The folders this session listed
        (:meth:`list_folders`, plus what it created since) stand for the server's: no LIST
        before each CREATE."""
        existing = self._listed
        if existing is None:
            existing = {self.path_of(name) for _, _, name in self.client.list_folders()}
        for depth in range(1, len(path) + 1):
            part = path[:depth]
            if part in existing or part == ("INBOX",):
                continue
            name = self.name_of(part)
            if special_use and depth == len(path) and self.has("CREATE-SPECIAL-USE"):
                self._create_with_use(name, special_use)
            else:
                self.client.create_folder(name)
            if self._listed is not None:
                self._listed.add(part)

    @_guarded("creating folders")
    def prepare_folders(
        self, wanted: Sequence[tuple[tuple[str, ...], str | None, bool, bool]]
    ) -> dict[tuple[str, ...], tuple[str, Exception]]:
        """Every CREATE (parents first, ``(USE (...))`` where CREATE-SPECIAL-USE is offered)
        and SUBSCRIBE in one round trip; a CREATE refused for its attribute (``[USEATTR]``) is
        sent again without it. A refused CREATE of a parent fails its children too (reported
        with the first refusal of each folder)."""
        if len(wanted) < 2 or self._listed is None:
            return super().prepare_folders(wanted)
        known = set(self._listed)
        commands: list[bytes] = []
        owners: list[tuple[str, tuple[str, ...], tuple[str, ...], bool]] = []
        for path, use, create, subscribe in wanted:
            for depth in range(1, len(path) + 1) if create else ():
                part = path[:depth]
                if part in known or part == ("INBOX",):
                    continue
                known.add(part)
                command = b"CREATE " + internals.quoted_folder(self.client, self.name_of(part))
                attributed = bool(use) and depth == len(path) and self.has("CREATE-SPECIAL-USE")
                commands.append(command + f" (USE ({use}))".encode() if attributed else command)
                owners.append(("create", path, part, attributed))
            if subscribe:
                commands.append(b"SUBSCRIBE " + internals.quoted_folder(self.client,
                                                                        self.name_of(path)))  # fmt: skip
                owners.append(("subscribe", path, path, False))
        replies = imap_wire.pipelined(internals.session(self.client), commands)
        failed: dict[tuple[str, ...], tuple[str, Exception]] = {}
        for (step, path, part, attributed), (typ, text) in zip(owners, replies, strict=True):
            reply = text.decode(errors="replace")
            if typ != "OK" and attributed and "[USEATTR]" in reply.upper():
                try:  # created without the attribute, as _create_with_use does
                    self.client.create_folder(self.name_of(part))
                    typ = "OK"
                except IMAPClientError as exc:
                    reply = str(exc).removeprefix("create failed: ")
            if typ == "OK":
                if step == "create":
                    self._listed.add(part)
                continue
            if path in failed:
                continue
            reason = f"{step} failed: {reply}"
            error = MailboxError(
                f"{self.label}: {'creating' if step == 'create' else 'subscribing'} folder "
                f"{'/'.join(path)}: server said: {reason}",
                retryable=any(code in reason for code in RETRYABLE_CODES),
                folder="/".join(path),
            )
            if error.retryable:
                raise error
            failed[path] = (step, error)
        return failed

    def _create_with_use(self, name: str, use: str) -> bool:
        """``CREATE name (USE (use))`` (RFC 6154). A server that refuses the attribute (another
        folder holds it, or it is not allowed: ``[USEATTR]``) gets a plain CREATE: the folder is
        made all the same, without the attribute. :return: whether the attribute was set."""
        quoted = internals.quoted_folder(self.client, name)
        typ, data = internals.simple_command(self.client, "CREATE", quoted, f"(USE ({use}))")
        if typ == "OK":
            return True
        text = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
        if "[USEATTR]" not in text.upper():
            raise ServerRefused(f"create failed: {text}")
        self.client.create_folder(name)
        return False

    @_guarded("subscribing folder")
    def subscribe(self, path: tuple[str, ...]) -> None:
        self.client.subscribe_folder(self.name_of(path))

    @_guarded("reading quota")
    def quota(self) -> Quota | None:
        if not self.has("QUOTA"):
            return None
        typ, data = internals.getquotaroot(self.client, "INBOX")
        if typ != "OK":
            return None
        for line in data[1] if len(data) > 1 else []:
            match = STORAGE.search(line if isinstance(line, bytes) else b"")
            if match:
                return Quota(used=int(match.group(1)) * 1024, limit=int(match.group(2)) * 1024)
        return None

    def append_limit(self) -> int | None:
        for capability in self.client.capabilities():
            if capability.upper().startswith(b"APPENDLIMIT="):
                return int(capability.split(b"=", 1)[1])
        return None

    def fallbacks(self, role: str) -> list[str]:
        absent = {c for c in FALLBACKS if not self.has(c)}
        return [f"no {c}: {text}" for c, (roles, text) in FALLBACKS.items()
                if c in absent and role in roles]  # fmt: skip

    @_guarded("probing folder creation")
    def probe(
        self, special_uses: Collection[str], folders: Collection[tuple[str, ...]] = ()
    ) -> tuple[list[str], list[str]]:
        """Create probe folders and delete them again: one with the first special use the copy
        needs, and one per kind of unusual character in the names of the folders it will
        create (servers differ: Cyrus refuses ``%``, Courier an emoji)."""
        problems, notes = self._probe_special_use(special_uses)
        return problems, notes + self._probe_names(folders)

    def _probe_names(self, folders: Collection[tuple[str, ...]]) -> list[str]:
        existing = {self.path_of(name) for _, _, name in self.client.list_folders()}
        by_kind: dict[str, tuple[str, set[str]]] = {}
        for path in folders:
            if path in existing or path == ("INBOX",):
                continue
            for char in "".join(path):
                if char.isascii() and (char.isalnum() or char in " -_."):
                    continue
                kind = char if char.isascii() else "astral" if ord(char) > 0xFFFF else "bmp"
                by_kind.setdefault(kind, (char, set()))[1].add("/".join(path))
        notes = []
        for char, names in by_kind.values():
            probe = self.name_of((f"mailmigrate-probe-{secrets.token_hex(4)} {char}",))
            try:
                self.client.create_folder(probe)
            except IMAPClientError as exc:
                listed = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
                notes.append(f"{self.label}: the server refuses folder names with {char!r} "
                             f"({exc}): {listed} will be reported, not copied")  # fmt: skip
                continue
            try:
                self._delete_probe(probe)
            except IMAPClientError as exc:
                notes.append(f"{self.label}: the probe folder {probe} could not be deleted "
                             f"({exc}): delete it by hand")  # fmt: skip
        return notes

    def _probe_special_use(self, special_uses: Collection[str]) -> tuple[list[str], list[str]]:
        if not special_uses or not self.has("CREATE-SPECIAL-USE"):
            return [], []
        use = sorted(special_uses)[0]
        name = self.name_of((f"mailmigrate-probe-{secrets.token_hex(4)}",))
        try:
            attributed = self._create_with_use(name, use)
        except REFUSALS as exc:
            return [f"{self.label}: creating a folder with {use} on a probe folder failed "
                    f"({exc}): the copy would fail creating its special folders"], []  # fmt: skip
        try:
            self._delete_probe(name)
        except IMAPClientError as exc:
            return [], [f"{self.label}: the probe folder {name} could not be deleted ({exc}): "
                        "delete it by hand"]  # fmt: skip
        if not attributed:
            return [], [f"{self.label}: the server refuses special-use attributes in CREATE "
                        f"([USEATTR]): special folders are created without them"]  # fmt: skip
        return [], [f"CREATE-SPECIAL-USE tried on a probe folder with {use}: it works"]

    def _delete_probe(self, name: str) -> None:
        try:
            self.client.delete_folder(name)
        except IMAPClientError:
            if not self.has("METADATA"):
                raise
            # Cyrus keeps folders with a special use from deletion (specialuse_protect): the
            # use goes first (RFC 6154's /private/specialuse entry).
            quoted = internals.quoted_folder(self.client, name)
            imap_wire.run_command(
                internals.session(self.client),
                [b"SETMETADATA ", quoted, b" (/private/specialuse NIL)"],
            )
            self.client.delete_folder(name)

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

    @_guarded("reading the state of folders")
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

    @_guarded("counting messages in")
    def message_count(self, path: tuple[str, ...]) -> int:
        """The number of messages in a folder, from STATUS (no SELECT, no listing)."""
        read = self.folder_states.get(path)
        if read is not None:
            return int(read[b"EXISTS"])
        status = self.client.folder_status(self.name_of(path), [b"MESSAGES"])
        return int(status[b"MESSAGES"])

    @_guarded("reading the identity of")
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
        self, criteria: str, min_uid: int = 0, data: dict[int, dict[bytes, Any]] | None = None
    ) -> list[MessageInfo]:
        """Message infos for the selected folder's UIDs in ``criteria`` (a UID set); ``data``:
        their ``LIST_FIELDS`` when fetched already."""
        if data is None:
            data = self._uid_fetch(criteria, LIST_FIELDS)
        data = {uid: d for uid, d in data.items() if uid >= min_uid and b"RFC822.SIZE" in d}
        headers: dict[int, bytes] = {}
        missing = [uid for uid, d in data.items() if not ident.message_id(_message_id_header(d))]
        if missing:
            fetched = self._uid_fetch(missing, [b"BODY.PEEK[HEADER]"])
            headers = {uid: d.get(b"BODY[HEADER]") or b"" for uid, d in fetched.items()}
        infos = []
        for uid in sorted(data):
            d = data[uid]
            size = int(d[b"RFC822.SIZE"])
            msgid = ident.message_id(_message_id_header(d))
            infos.append(
                MessageInfo(
                    ref=uid,
                    identity=ident.identity(size, msgid, headers.get(uid)),
                    size=size,
                    flags=_clean_flags(d.get(b"FLAGS", ())),
                    internaldate=d.get(b"INTERNALDATE"),
                )
            )
        return infos

    @_guarded("listing messages in")
    def listing(self, path: tuple[str, ...]) -> Listing:
        info, data = self._examine_and_fetch(path, "1:*", LIST_FIELDS)
        token = self._token(info)
        messages = self._infos("1:*", data=data) if info.get(b"EXISTS") else []
        return Listing(messages=messages, token=token)

    @_guarded("listing messages in")
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

    @_guarded("reading Gmail labels in")
    def message_labels(self, path: tuple[str, ...]) -> dict[Ref, tuple[int, frozenset[str]]]:
        info = self._select(path, fresh=True)
        if not info.get(b"EXISTS"):
            return {}
        data = self._uid_fetch("1:*", [b"X-GM-MSGID", b"X-GM-LABELS"])
        return {
            uid: (int(d[b"X-GM-MSGID"]), frozenset(_label(x) for x in d.get(b"X-GM-LABELS") or ()))
            for uid, d in data.items()
            if b"X-GM-MSGID" in d
        }

    @_guarded("reading changes in")
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
            uid: _clean_flags(d[b"FLAGS"]) for uid, d in changed.items() if b"FLAGS" in d
        }
        if int(info[b"EXISTS"]) != then["c"] + len(changes.new):
            present = set(self.client.search("ALL"))
            changes.removed = {ref for ref in known if ref not in present}
        return changes

    @_guarded("reading append mark of")
    def append_mark(self, path: tuple[str, ...]) -> str | None:
        """From the UIDs the server gave this session's pipelined appends when they were the
        last write to the folder (no STATUS): never later than the server's own UIDNEXT, so
        nothing appended after it is missed."""
        if path in self._marks:
            return self._marks[path]
        status = self._status(path)
        return f"{int(status[b'UIDVALIDITY'])}:{int(status[b'UIDNEXT'])}"

    @_guarded("listing new messages in")
    def listing_since(self, path: tuple[str, ...], mark: str | None) -> list[MessageInfo]:
        """Nothing, without a command, when the folder's state read for this pass
        (:meth:`read_states`; the folder not written through this session since) says it is
        empty or has nothing after ``mark``."""
        read = self.folder_states.get(path)
        if read is not None:
            if not read[b"EXISTS"]:
                return []
            if mark:
                validity, uidnext = (int(x) for x in mark.split(":"))
                if validity == int(read[b"UIDVALIDITY"]) and uidnext >= int(read[b"UIDNEXT"]):
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

    @_guarded("fetching messages from")
    def fetch_then(
        self, path: tuple[str, ...], refs: Sequence[Ref], following: Sequence[Ref] | None,
        on_message: Callable[[Message], None] | None = None,
    ) -> Iterable[Message]:  # fmt: skip
        """:meth:`fetch`, with the FETCH of ``following`` sent before this batch's answer is
        read (:func:`~mailmigrate.mailbox.imap_wire.uid_fetch_ahead`): the source streams
        batch after batch without a round trip between them. ``on_message`` gets each message
        as soon as all its items are read (before the batch's end; the batch's result holds
        it too)."""
        return self.fetch(path, refs, following, on_message)

    def end_fetches(self) -> None:
        """Drop the session when a FETCH sent ahead was never read (the copy stopped early):
        its answer would be taken for the next command's."""
        ahead, self._ahead = self._ahead, None
        client = self._client
        if ahead is not None and client is not None and ahead.imap is internals.session(client):
            self._drop_session()

    @_guarded("fetching messages from")
    def fetch(
        self, path: tuple[str, ...], refs: Sequence[Ref], following: Sequence[Ref] | None = None,
        on_message: Callable[[Message], None] | None = None,
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
                return self._fetch_batch(path, uids, [int(r) for r in following or ()],
                                         on_message)  # fmt: skip
            except TRANSIENT_ERRORS:
                for uid in uids:
                    self._lost_in[(path, uid)] = 1
                raise
            except imap_wire.MalformedResponse:
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

        try:
            data, self._ahead = imap_wire.uid_fetch_ahead(
                imap, uids, uid_ranges(uids), FETCH_ITEMS, sent,
                ((path, tuple(following)), following, uid_ranges(following)) if following else None,
                complete,
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
            flags=_clean_flags(items.get(b"FLAGS", ())),
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

    # -- writing ---------------------------------------------------------------------------
    def _storable(self, flags: frozenset[str]) -> tuple[list[str], list[str]]:
        """The flags this folder stores, and why each other one is left out.

        Invariant: nothing but RFC 3501 flag atoms is ever written into a command, so a flag read
        from a hostile source (a literal in its FLAGS reply) cannot end the flag list and inject
        a command into this session. Without ``\\*`` in PERMANENTFLAGS only the flags listed
        there are stored (case-insensitively, as IMAP compares flags)."""
        permanent = self._permanent_flags()
        kept, left_out = [], []
        for flag in sorted(flags):
            if not FLAG.fullmatch(flag):
                left_out.append(f"{flag[:60]!r} (not an IMAP flag)")
            elif permanent is not None and flag.lower() not in permanent:
                left_out.append(f"{flag} (the folder stores no such flag: PERMANENTFLAGS)")
            else:
                kept.append(flag)
        return kept, left_out

    def _permanent_flags(self) -> frozenset[str] | None:
        """The selected folder's PERMANENTFLAGS, lowered; ``None`` when any flag is stored."""
        info = self._select_info
        if self._permanent_for is not info:
            permanent = frozenset(_flag_text(f).lower() for f in info.get(b"PERMANENTFLAGS", ()))
            self._permanent = None if not permanent or "\\*" in permanent else permanent
            self._permanent_for = info
        return self._permanent

    @_guarded("appending to")
    def append(self, path: tuple[str, ...], messages: Sequence[Message]) -> list[AppendResult]:
        if not messages:
            return []
        self._written(path)
        self._select(path, writable=True)
        name = self.name_of(path)
        storable = [self._storable(m.info.flags) for m in messages]
        flags = [kept for kept, _ in storable]
        results = None
        mark = None if self.has("UIDPLUS") else self.append_mark(path)
        if len(messages) > 1 and self.has("MULTIAPPEND"):
            mark = mark or self.append_mark(path)
            typ, data = self._multiappend(name, messages, flags)
            if typ == "OK":
                results = self._results(data, len(messages))
            else:
                results = self._refused_batch(path, messages, flags, mark)
        if results is None:
            results = [self._append_one(name, m, f) for m, f in zip(messages, flags, strict=True)]
        if not self.has("UIDPLUS"):
            results = self._found_refs(path, mark, messages, results)
        return self._noted(messages, storable, results)

    @_guarded("appending to")
    def appender(self, path: tuple[str, ...]) -> Appender:
        """Pipelined (:mod:`~mailmigrate.mailbox.imap_append`) where the server offers
        MULTIAPPEND, LITERAL+ and UIDPLUS; else one batch at a time through :meth:`append`."""
        if all(self.has(c) for c in ("MULTIAPPEND", "LITERAL+", "UIDPLUS")):
            hooks = Hooks(
                session=lambda: self._client, select=self._select, written=self._written,
                storable=self._storable, results=self._results, refused=self._refused_batch,
                noted=self._noted, drop_session=self._drop_session, note_mark=self._note_mark,
            )  # fmt: skip
            return PipelinedAppender(self, path, hooks, _guarded("appending to"))
        return Appender(self, path)

    def _refused_batch(
        self, path: tuple[str, ...], messages: Sequence[Message], flags: list[list[str]],
        mark: str | None, ignore: Collection[Ref] | None = None,
    ) -> list[AppendResult]:  # fmt: skip
        """A MULTIAPPEND the server refused: all-or-nothing on conforming servers, so whether
        any of it landed after ``mark`` is checked before the messages go one by one (each
        refusal then reported with its message). ``ignore`` (pipelined appends): what other
        batches stored after the mark; then only messages with this batch's identities count.

        :raises MailboxError: (retryable) part of the batch landed all the same."""
        name = self.name_of(path)
        landed = self.listing_since(path, mark)
        if ignore is not None:
            landed = [info for info in landed if info.ref not in ignore]
            mine = {m.info.identity for m in messages}
            landed = [info for info in landed if info.identity in mine]
        self._select(path, writable=True)
        if landed:
            raise MailboxError(
                f"{self.label}: appending to {name}: MULTIAPPEND failed but stored "
                f"{len(landed)} message(s); retrying the batch",
                retryable=True,
            )
        return [self._append_one(name, m, f) for m, f in zip(messages, flags, strict=True)]

    def _noted(
        self, messages: Sequence[Message], storable: list[tuple[list[str], list[str]]],
        results: list[AppendResult], before_commands: Callable[[], None] | None = None,
    ) -> list[AppendResult]:  # fmt: skip
        """The results with a note for each message stored not exactly as given (flags left
        out, header bytes the server changed). ``before_commands`` runs before any command is
        sent for that check (a pipeline reads its outstanding answers)."""
        changed = self._changed_by_server(messages, results, before_commands)
        noted = []
        for result, (_, left_out) in zip(results, storable, strict=True):
            notes = [result.note] if result.note else []
            if left_out:
                notes.append(f"flags not stored: {', '.join(left_out)}")
            if result.ref in changed:
                notes.append("the server changed its 8-bit header bytes as it stored it")
            if notes and result.error is None:
                result = dataclasses.replace(result, note="; ".join(notes))
            noted.append(result)
        return noted

    def _changed_by_server(
        self, messages: Sequence[Message], results: list[AppendResult],
        before_commands: Callable[[], None] | None = None,
    ) -> set[Ref]:  # fmt: skip
        """The appended messages this server stored with other header bytes than it was given.

        Some servers rewrite what they store: Cyrus's default ``munge8bit`` turns every 8-bit
        header byte into ``X`` (same size, same Message-ID: nothing else would notice). Only
        messages with 8-bit header bytes are read back (their header), and only those bytes are
        compared, so line ends a server normalises do not count."""
        suspects = {
            r.ref: _eight_bit(ident.header_block(m.content))
            for m, r in zip(messages, results, strict=True)
            if r.ref is not None and r.error is None and not m.content.isascii()
        }
        suspects = {ref: high for ref, high in suspects.items() if high}
        if not suspects:
            return set()
        if before_commands is not None:
            before_commands()
        stored = self._uid_fetch([int(ref) for ref in suspects], [b"BODY.PEEK[HEADER]"])
        if len(stored) < len(suspects):  # a session that has not seen its appends yet (Courier)
            self.client.noop()
            stored = self._uid_fetch([int(ref) for ref in suspects], [b"BODY.PEEK[HEADER]"])
        return {
            ref
            for ref, high in suspects.items()
            if b"BODY[HEADER]" in stored.get(int(ref), {})
            and _eight_bit(stored[int(ref)][b"BODY[HEADER]"]) != high
        }

    def _found_refs(
        self, path: tuple[str, ...], mark: str | None, messages: Sequence[Message],
        results: list[AppendResult],
    ) -> list[AppendResult]:  # fmt: skip
        """Without UIDPLUS no APPENDUID names the new messages: find them after the mark by
        identity (twins in order), so later flag changes reach them."""
        landed: dict[str, list[Ref]] = {}
        for info in self.listing_since(path, mark):
            landed.setdefault(info.identity, []).append(info.ref)
        self._select(path, writable=True)
        found = []
        for message, result in zip(messages, results, strict=True):
            refs = landed.get(message.info.identity)
            if result.error is None and result.ref is None and refs:
                result = dataclasses.replace(result, ref=refs.pop(0))
            found.append(result)
        return found

    def _multiappend(
        self, name: str, messages: Sequence[Message], flags: list[list[str]]
    ) -> tuple[str, list[Any]]:
        if self.has("LITERAL+"):
            return imap_wire.multiappend(
                internals.session(self.client),
                internals.quoted_folder(self.client, name),
                [(f, m.info.internaldate, m.content) for m, f in zip(messages, flags, strict=True)],
            )
        items = [
            {"msg": m.content, "flags": f, "date": m.info.internaldate}
            if m.info.internaldate
            else {"msg": m.content, "flags": f}
            for m, f in zip(messages, flags, strict=True)
        ]
        return self.client.multiappend(name, items)

    def _append_one(self, name: str, message: Message, flags: list[str]) -> AppendResult:
        """APPEND one message. A server that refuses a message for a keyword it cannot hold
        (Courier answers a keyword of digits with "Error in IMAP command") gets the message
        without its keywords, then each keyword by STORE: the ones it refuses are noted."""
        result = self._append_once(name, message, flags)
        keywords = [flag for flag in flags if not flag.startswith("\\")]
        if result.error is None or not keywords:
            return result
        retry = self._append_once(name, message, [f for f in flags if f.startswith("\\")])
        if retry.error is not None:
            return result
        refused = keywords
        if retry.ref is not None:
            refused = []
            for keyword in keywords:
                try:
                    self.client.add_flags([retry.ref], [keyword], silent=True)
                except IMAPClientError:
                    refused.append(keyword)
        if not refused:
            return retry
        why = result.error.removeprefix("append failed: ")
        return dataclasses.replace(
            retry, note=f"keywords not stored: {', '.join(refused)} (the server said: {why})"
        )

    def _append_once(self, name: str, message: Message, flags: list[str]) -> AppendResult:
        if self.has("LITERAL+"):
            # Not imaplib's APPEND: it rewrites line ends with a regex over the whole message,
            # which took 117 MB of memory for one 25 MB message.
            typ, data = imap_wire.multiappend(
                internals.session(self.client),
                internals.quoted_folder(self.client, name),
                [(flags, message.info.internaldate, message.content)],
            )
            if typ != "OK":
                text = f"append failed: {data[0].decode(errors='replace')}"
                if any(code in text for code in RETRYABLE_CODES):
                    raise ServerRefused(text)
                return AppendResult(error=text)
            return self._results(data, 1)[0]
        try:
            response = self.client.append(name, message.content, flags, message.info.internaldate)
        except IMAPClientError as exc:
            text = str(exc)
            if any(code in text for code in RETRYABLE_CODES):
                raise
            return AppendResult(error=text)
        results = self._results([response], 1)
        return results[0]

    def _results(self, data: list[Any], count: int) -> list[AppendResult]:
        text = b" ".join(d if isinstance(d, bytes) else str(d).encode() for d in data if d)
        match = APPENDUID.search(text)
        if match:
            uids = imap_wire.uid_set(match.group(2))
            if len(uids) == count:
                return [AppendResult(ref=uid) for uid in uids]
        return [AppendResult() for _ in range(count)]

    @_guarded("setting flags in")
    def set_flags(
        self, path: tuple[str, ...], ref: Ref, add: frozenset[str], remove: frozenset[str]
    ) -> str | None:
        """Flags the folder cannot store are left out; a server that refuses the STORE for a
        keyword (Courier: keywords of digits) gets the flags one by one, the refused left out.
        Every flag left out is named in the note returned."""
        self._written(path)
        self._select(path, writable=True)
        add_now, left_out = self._storable(add)
        remove_now = [flag for flag in sorted(remove) if FLAG.fullmatch(flag)]
        notes = [f"flags not stored: {', '.join(left_out)}"] if left_out else []
        if add_now:
            try:
                self.client.add_flags([ref], add_now, silent=True)
            except IMAPClientError as exc:
                refused = []
                for flag in add_now:
                    try:
                        self.client.add_flags([ref], [flag], silent=True)
                    except IMAPClientError:
                        if flag.startswith("\\"):
                            raise
                        refused.append(flag)
                if refused:  # worded as when a copy's APPEND is refused for them
                    notes.append(f"keywords not stored: {', '.join(refused)} "
                                 f"(the server said: {exc})")  # fmt: skip
        if remove_now:
            self.client.remove_flags([ref], remove_now, silent=True)
        return "; ".join(notes) or None

    @_guarded("deleting from")
    def delete(self, path: tuple[str, ...], refs: Collection[Ref]) -> None:
        if not refs:
            return
        self._written(path)
        self._select(path, writable=True)
        self.client.add_flags(list(refs), ["\\Deleted"], silent=True)
        if self.has("UIDPLUS"):
            self.client.uid_expunge(list(refs))
        else:
            self.client.expunge()
