"""A Gmail simulator, named as such: Dovecot shaped like Gmail, and a proxy that adds X-GM-EXT-1.

There is no real Gmail here. Two pieces stand in for it:

- :func:`seed_gmail` fills an account of a Dovecot server of the ``gmail`` layout (see
  :mod:`harness.dovecot`) the way Gmail shows a mailbox over IMAP: each message once in every
  label folder it has (INBOX, Work, ``[Gmail]/Sent Mail``...), once in ``[Gmail]/All Mail``
  unless it is in Spam or Trash, once in ``[Gmail]/Starred`` when starred and in
  ``[Gmail]/Important`` when important; every copy has the same bytes, flags (a starred message
  is ``\\Flagged`` everywhere) and INTERNALDATE, as on Gmail where they are one message.
- :class:`GmailSimulator`, a :class:`~harness.proxy.CuttingProxy` in front of that Dovecot,
  adds ``X-GM-EXT-1`` to every capability list and answers ``UID FETCH <set> (X-GM-MSGID
  X-GM-LABELS)`` itself: a message's labels are the folders holding a copy with the same bytes
  (system labels ``\\Inbox``, ``\\Sent``, ``\\Draft``, ``\\Starred``, ``\\Important`` for the
  special folders), its X-GM-MSGID a number drawn from those bytes. Everything else goes to
  Dovecot unchanged. Only the items the engine asks for are simulated (no X-GM-RAW search, no
  STORE of labels, no X-GM-THRID).
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from imapclient import imap_utf7

from harness.corpus import seed_folder
from harness.dovecot import DovecotServer
from harness.forwarding import close_sockets
from harness.proxy import CuttingProxy

ALL_MAIL = "[Gmail]/All Mail"
STARRED = "[Gmail]/Starred"
IMPORTANT = "[Gmail]/Important"
SENT = "[Gmail]/Sent Mail"
NOT_IN_ALL = ("[Gmail]/Spam", "[Gmail]/Trash")
SYSTEM_LABELS = {"INBOX": "\\Inbox", SENT: "\\Sent", "[Gmail]/Drafts": "\\Draft",
                 STARRED: "\\Starred", IMPORTANT: "\\Important"}  # fmt: skip
_CAPABILITY = re.compile(rb"CAPABILITY IMAP4rev1", re.IGNORECASE)
_LABEL_FETCH = re.compile(rb"^(\S+) UID FETCH (\S+) \(X-GM-MSGID X-GM-LABELS\)\r\n$", re.I)
_SELECT = re.compile(rb'^\S+ (?:SELECT|EXAMINE) (?:"((?:[^"\\]|\\.)*)"|(\S+))', re.IGNORECASE)
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


@dataclass
class GmailMessage:
    """One Gmail message: bytes, date, labels (folder names, "INBOX" for the inbox)."""

    raw: bytes
    when: datetime
    labels: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    starred: bool = False
    important: bool = False
    folders: list[str] = field(init=False)

    def __post_init__(self) -> None:
        if self.starred and "\\Flagged" not in self.flags:
            self.flags = (*self.flags, "\\Flagged")
        self.folders = list(self.labels)
        if not set(self.labels) & set(NOT_IN_ALL):
            self.folders.append(ALL_MAIL)
        if self.starred:
            self.folders.append(STARRED)
        if self.important:
            self.folders.append(IMPORTANT)


def seed_gmail(client, messages: Sequence[GmailMessage]) -> dict[str, int]:
    """Store ``messages`` as Gmail shows them (see the module docstring); folders by count."""
    by_folder: dict[str, list] = {}
    for message in messages:
        for folder in message.folders:
            by_folder.setdefault(folder, []).append((message.raw, message.flags, message.when))
    for folder, batch in by_folder.items():
        seed_folder(client, folder, batch)
    return {folder: len(batch) for folder, batch in by_folder.items()}


def gmail_id(raw: bytes) -> int:
    """The simulated X-GM-MSGID of a message: 63 bits of its bytes' SHA-256."""
    return int(hashlib.sha256(raw).hexdigest()[:15], 16)


def _quoted(label: str) -> bytes:
    encoded = imap_utf7.encode(label)
    if re.fullmatch(rb"[\\A-Za-z0-9$_.-]+", encoded):
        return encoded
    return b'"' + encoded.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class GmailSimulator(CuttingProxy):
    """A Gmail simulator for one account of a ``gmail``-layout Dovecot (see the module
    docstring); connect to ``host``/``port`` like to the server itself.

    :attr:`label_fetches` counts the label FETCH commands it answered.
    """

    def __init__(self, server: DovecotServer, user: str) -> None:
        super().__init__(server.host, server.port)
        self.server, self.user = server, user
        self.label_fetches = 0

    def _tamper(self, data: bytes, from_server: bool) -> bytes:
        data = super()._tamper(data, from_server)
        if from_server:
            data = _CAPABILITY.sub(rb"\g<0> X-GM-EXT-1", data)
        return data

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        if from_server:
            super()._pump(source, sink, from_server)
            return
        selected: str | None = None
        buffer, literal = b"", 0
        try:
            while data := source.recv(65536):
                buffer += data
                while buffer:
                    if literal:  # message bytes of an APPEND: pass them on untouched
                        chunk, buffer = buffer[:literal], buffer[literal:]
                        literal -= len(chunk)
                        sink.sendall(chunk)
                        continue
                    end = buffer.find(b"\r\n")
                    if end < 0:
                        break
                    line, buffer = buffer[: end + 2], buffer[end + 2 :]
                    if match := _LITERAL.search(line):
                        literal = int(match.group(1))
                    if match := _SELECT.match(line):
                        name = match.group(1) or match.group(2)
                        selected = imap_utf7.decode(re.sub(rb"\\(.)", rb"\1", name))
                    if (match := _LABEL_FETCH.match(line)) and selected is not None:
                        source.sendall(self._answer(match.group(1), match.group(2), selected))
                        continue
                    sink.sendall(line)
        except OSError:
            pass
        finally:
            close_sockets(source, sink)

    def _answer(self, tag: bytes, uid_set: bytes, folder: str) -> bytes:
        """The FETCH responses and tagged OK for ``X-GM-MSGID X-GM-LABELS`` of ``uid_set``."""
        self.label_fetches += 1
        client = self.server.master_client(self.user)
        try:
            holders: dict[str, list[str]] = {}
            for flags, _, name in client.list_folders():
                if name == ALL_MAIL or b"\\Noselect" in flags:
                    continue
                for raw in _bodies(client, name, "1:*").values():
                    holders.setdefault(hashlib.sha256(raw[1]).hexdigest(), []).append(name)
            lines = []
            for uid, (seq, raw) in sorted(_bodies(client, folder, uid_set.decode()).items()):
                names = holders.get(hashlib.sha256(raw).hexdigest(), [])
                labels = b" ".join(_quoted(SYSTEM_LABELS.get(n, n)) for n in sorted(names))
                lines.append(
                    b"* %d FETCH (UID %d X-GM-MSGID %d X-GM-LABELS (%s))\r\n"
                    % (seq, uid, gmail_id(raw), labels)
                )
        finally:
            client.logout()
        return b"".join(lines) + tag + b" OK Fetch completed (Gmail simulator).\r\n"


def _bodies(client, folder: str, uid_set: str) -> dict[int, tuple[int, bytes]]:
    """UID -> (sequence number, bytes) of a folder's messages in ``uid_set``."""
    info = client.select_folder(folder, readonly=True)
    if not info.get(b"EXISTS"):
        return {}
    fetched = client.fetch(client.search(["UID", uid_set]), ["BODY.PEEK[]"])
    return {uid: (d[b"SEQ"], d[b"BODY[]"]) for uid, d in fetched.items()}
