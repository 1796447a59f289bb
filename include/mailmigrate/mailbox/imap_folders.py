"""The IMAP adapter's folders: listing, creating (one round trip for a whole pass), subscribing,
quota, and the probes of the ``test`` step. A mixin of
:class:`~mailmigrate.mailbox.imap.ImapMailbox`: it works through that class's session
(``client``, ``has``, ``name_of``, ``path_of``, ``_select``, ``_listed``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Collection, Sequence
from typing import Any

from imapclient.exceptions import IMAPClientError

from mailmigrate.errors import MailboxError
from mailmigrate.mailbox import imap_wire
from mailmigrate.mailbox import imapclient_internals as internals
from mailmigrate.mailbox.base import SPECIAL_USES, Folder, FolderStats, Quota
from mailmigrate.mailbox.imap_common import REFUSALS, RETRYABLE_CODES, ServerRefused, guarded

STORAGE = re.compile(rb"\bSTORAGE (\d+) (\d+)", re.IGNORECASE)
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


class ImapFolders:
    """Folder operations of :class:`~mailmigrate.mailbox.imap.ImapMailbox`."""

    label: str
    client: Any
    _listed: set[tuple[str, ...]] | None

    @guarded("listing folders")
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

    @guarded("reading folder size")
    def folder_stats(self, path: tuple[str, ...]) -> FolderStats:
        info = self._select(path, fresh=True)
        if not info.get(b"EXISTS"):
            return FolderStats(messages=0, size=0, largest=0)
        fetched = self._uid_fetch("1:*", [b"RFC822.SIZE"])
        sizes = [d[b"RFC822.SIZE"] for d in fetched.values() if b"RFC822.SIZE" in d]
        return FolderStats(messages=len(sizes), size=sum(sizes), largest=max(sizes, default=0))

    @guarded("creating folder")
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

    @guarded("creating folders")
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

    @guarded("subscribing folder")
    def subscribe(self, path: tuple[str, ...]) -> None:
        self.client.subscribe_folder(self.name_of(path))

    @guarded("reading quota")
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

    @guarded("probing folder creation")
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
