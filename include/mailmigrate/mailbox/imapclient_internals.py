"""The private parts of imapclient, and of the imaplib session beneath it, that the IMAP adapter uses.

imapclient has no public way to send a command it does not know (``CREATE ... (USE (...))``,
``SETMETADATA``, a streamed ``UID FETCH``/``APPEND``), to quote a folder name as it would, or to
reset a broken session's socket. Those needs go through the functions here and nowhere else, so
that a new imapclient release is checked in one place: ``tests/engine/test_imapclient_internals.py``
compares :data:`RELIED_ON` with the installed version and fails, naming the attribute, when one is
gone or its signature changed. The version is pinned exactly in ``requirements.txt``.
"""

from __future__ import annotations

import imaplib
from typing import Any

from imapclient import IMAPClient, imap4, tls

# What is relied on, with the signature (parameters after self) each callable must keep.
# "attribute" means an attribute every connected session has (assigned in __init__ or connect).
RELIED_ON: dict[tuple[type, str], tuple[str, ...] | str] = {
    (IMAPClient, "_imap"): "attribute",  # the imaplib.IMAP4 session under the client
    (IMAPClient, "_normalise_folder"): ("folder_name",),
    (imaplib.IMAP4, "_simple_command"): ("name", "*args"),
    (imaplib.IMAP4, "_new_tag"): (),
    (imaplib.IMAP4, "_append_untagged"): ("typ", "dat"),
    (imaplib.IMAP4, "tagged_commands"): "attribute",
    (imaplib.IMAP4, "sock"): "attribute",
    (imaplib.IMAP4, "file"): "attribute",
    (imaplib.IMAP4, "untagged_responses"): "attribute",
    (IMAPClient, "_proc_folder_list"): ("folder_data",),
    (IMAPClient, "_create_IMAP4"): (),
    (IMAPClient, "_process_select_response"): ("resp",),
    (imaplib.IMAP4, "state"): "attribute",
    (imaplib.IMAP4, "is_readonly"): "attribute",
    (IMAPClient, "_timeout"): "attribute",
    (imaplib.IMAP4, "_get_capabilities"): (),
    (imap4.IMAP4WithTimeout, "__init__"): ("address", "port", "timeout"),
    (tls.IMAP4_TLS, "__init__"): ("host", "port", "ssl_context", "timeout"),
}


class _Greeted:
    """An imaplib session that takes the server's capabilities from its greeting's
    ``[CAPABILITY ...]`` code (RFC 3501 7.1; Dovecot, Cyrus and others send it) instead of
    asking with a CAPABILITY command: a round trip less per connection. A greeting without
    one (or with one that does not parse) is asked as before."""

    def _get_capabilities(self) -> None:
        greeted = self.untagged_responses.get("CAPABILITY")
        words: list[str] = []
        if greeted and isinstance(greeted[-1], bytes):
            try:
                words = greeted[-1].decode("ascii").upper().split()
            except UnicodeDecodeError:
                words = []
        if "IMAP4REV1" not in words and "IMAP4REV2" not in words:
            super()._get_capabilities()
            return
        self.untagged_responses.pop("CAPABILITY", None)  # as the command would have
        self.capabilities = tuple(words)


class _Plain(_Greeted, imap4.IMAP4WithTimeout):
    pass


class _Tls(_Greeted, tls.IMAP4_TLS):
    pass


class Client(IMAPClient):
    """imapclient's client over a session of :class:`_Greeted` (plain or implicit TLS)."""

    def _create_IMAP4(self) -> imaplib.IMAP4:
        if self.stream:
            return super()._create_IMAP4()
        connect_timeout = getattr(self._timeout, "connect", None)
        if self.ssl:
            return _Tls(self.host, self.port, self.ssl_context, connect_timeout)
        return _Plain(self.host, self.port, connect_timeout)


def session(client: IMAPClient) -> imaplib.IMAP4:
    """The imaplib session the client talks through (for :mod:`mailmigrate.mailbox.imap_wire`)."""
    return client._imap


def quoted_folder(client: IMAPClient, name: str) -> bytes:
    """``name`` encoded and quoted exactly as imapclient puts folder names on the wire."""
    return client._normalise_folder(name)


def simple_command(client: IMAPClient, name: str, *args: Any) -> tuple[str, list[Any]]:
    """imaplib's ``(typ, data)`` of a command imapclient has no method for; never raises on NO."""
    return client._imap._simple_command(name, *args)


def getquotaroot(client: IMAPClient, mailbox: str) -> tuple[str, list[Any]]:
    """imaplib's own GETQUOTAROOT: imapclient 4.1 fails on a QUOTAROOT without roots."""
    return client._imap.getquotaroot(mailbox)


def reset_socket(client: IMAPClient) -> tuple[Any, Any]:
    """The session's socket (``None`` before it connected) and its reader file, to close hard."""
    imap = client._imap
    return getattr(imap, "sock", None), imap.file


def begin_examine(imap: imaplib.IMAP4) -> None:
    """What imaplib's ``select(readonly=True)`` does before it sends EXAMINE: forget the
    untagged responses of earlier commands (the EXAMINE's own are read from the store)."""
    imap.untagged_responses = {}
    imap.is_readonly = True


def end_examine(client: IMAPClient, imap: imaplib.IMAP4, ok: bool) -> dict[bytes, Any]:
    """After the EXAMINE's answer, what imaplib and imapclient do: the session's state, and
    the folder's facts as ``select_folder`` returns them (``{}`` when refused)."""
    if not ok:
        imap.state = "AUTH"  # a failed SELECT/EXAMINE leaves no folder selected (RFC 3501)
        return {}
    imap.state = "SELECTED"
    return client._process_select_response(imap.untagged_responses)


def take_untagged(imap: imaplib.IMAP4, name: str) -> list[Any]:
    """The untagged responses of kind ``name`` imaplib has stored, removed from its store."""
    return imap.untagged_responses.pop(name, [])


def folder_list(client: IMAPClient, imap: imaplib.IMAP4, name: str) -> list[tuple]:
    """imapclient's ``(flags, delimiter, name)`` tuples of the stored ``LIST``/``LSUB``
    responses (read by :func:`mailmigrate.mailbox.imap_wire.pipelined`), names decoded as
    imapclient decodes them."""
    return client._proc_folder_list(take_untagged(imap, name))


def compress_session(imap: imaplib.IMAP4, reader: Any, send: Any) -> None:
    """Read the session through ``reader`` and send through ``send`` from now on (the
    compression layer of :mod:`mailmigrate.mailbox.imap_compress`)."""
    imap.file = reader
    imap.send = send
