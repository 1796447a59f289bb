"""COMPRESS=DEFLATE (RFC 4978) under an imaplib session.

After the server's tagged OK to ``COMPRESS DEFLATE`` every byte in both directions is one raw
DEFLATE stream (no zlib header: ``wbits=-15``). What the session sends is compressed and flushed
with ``Z_SYNC_FLUSH`` per write, so each command reaches the server whole at once (pipelining
and literals work as before); what it reads is inflated as it arrives, never more than the
reader asked for at a time (a small compressed reply cannot blow up in memory).

The session keeps its socket (timeouts, shutdown and the hard reset of
:func:`~mailmigrate.mailbox.imap_session.abandon` act on it as before); only imaplib's reader
file and its ``send`` are replaced.
"""

from __future__ import annotations

import imaplib
import io
import zlib

from imapclient import IMAPClient

from mailmigrate.mailbox import imap_wire
from mailmigrate.mailbox import imapclient_internals as internals

CAPABILITY = "COMPRESS=DEFLATE"
LEVEL = 1  # fast: most mail is text, and most of what is not is already compressed


class _Inflating(io.RawIOBase):
    """The socket's bytes, inflated."""

    def __init__(self, sock) -> None:
        self._sock = sock
        self._inflate = zlib.decompressobj(-15)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size = len(buffer)
        while True:
            tail = self._inflate.unconsumed_tail
            if tail:
                out = self._inflate.decompress(tail, size)
            else:
                data = self._sock.recv(65536)
                if not data:
                    return 0
                try:
                    out = self._inflate.decompress(data, size)
                except zlib.error as exc:
                    raise imaplib.IMAP4.abort(f"socket error: bad compressed data: {exc}") from None
            if out:
                buffer[: len(out)] = out
                return len(out)


def start(client: IMAPClient) -> bool:
    """Ask for compression and, on the server's OK, compress the session from here on.

    :return: whether the session is compressed now (a server may refuse, e.g. when another
        layer already compresses: the session then goes on as it was).
    """
    imap = internals.session(client)
    typ, _ = imap_wire.run_command(imap, [b"COMPRESS DEFLATE"])
    if typ != "OK":
        return False
    sock, _reader = internals.reset_socket(client)
    deflate = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)

    def send(data: bytes) -> None:
        sock.sendall(deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH))

    internals.compress_session(imap, io.BufferedReader(_Inflating(sock), 65536), send)
    return True
