"""What the parts of the IMAP adapter (:mod:`~mailmigrate.mailbox.imap` and its folder and
write halves) share: the one place where protocol and socket failures become
:class:`~mailmigrate.errors.MailboxError` (:func:`guarded`), what a flag atom is, and small
readers of server replies.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from imapclient import imap_utf7
from imapclient.exceptions import IMAPClientError

from mailmigrate.errors import MailboxError
from mailmigrate.mailbox import imap_responses
from mailmigrate.mailbox.imap_session import TRANSIENT_ERRORS, abandon

# Server refusals that concern the connection, not one message: reconnect and retry. Not
# [LIMIT] (RFC 5530: an implementation limit, e.g. Dovecot's message size limit): it answers
# the same every time, so a message refused with it is reported, not retried.
RETRYABLE_CODES = ("[UNAVAILABLE]", "[INUSE]", "[SERVERBUG]")


class ServerRefused(Exception):
    """A NO/BAD answer to a command the adapter sent past imapclient's own methods (a raw CREATE,
    a streamed APPEND). Never imapclient's ``IMAPClientError``: :func:`guarded` turns it into a
    :class:`MailboxError` that is retryable only for :data:`RETRYABLE_CODES`, as it does
    imapclient's own refusals, and it cannot be mistaken for a lost connection."""


HEADER_FIELDS_KEY = b"BODY[HEADER.FIELDS (MESSAGE-ID)]"
# How servers name that item in their reply: Courier quotes the field ("MESSAGE-ID").
HEADER_FIELDS_KEYS = (HEADER_FIELDS_KEY, b'BODY[HEADER.FIELDS ("MESSAGE-ID")]')
# What a server's refusal of a command looks like here: imapclient's, or the adapter's own.
REFUSALS = (IMAPClientError, ServerRefused)
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


def flag_text(flag: bytes | str | int) -> str:
    """A flag as text. imapclient reads an atom of digits as an int (a keyword ``2024``) but keeps
    leading zeros as bytes (``0123``), so ``str`` gives back the atom exactly."""
    if isinstance(flag, bytes):
        return flag.decode("utf-8", "replace")  # not an atom when it is not ASCII: refused later
    return str(flag)


def eight_bit(data: bytes) -> bytes:
    """The bytes above 127 of ``data``, in order."""
    return bytes(b for b in data if b > 127) if not data.isascii() else b""


def message_id_header(fetched: dict[bytes, Any]) -> bytes:
    """The Message-ID header lines a FETCH of ``HEADER.FIELDS (MESSAGE-ID)`` returned."""
    for key in HEADER_FIELDS_KEYS:
        value = fetched.get(key)
        if value is not None:
            return value
    return b""


def clean_flags(flags: Iterable[bytes | str]) -> frozenset[str]:
    key = flags if isinstance(flags, tuple) else tuple(flags)
    cleaned = _CLEANED.get(key)
    if cleaned is None:  # a mailbox has few distinct flag sets: remember them
        out = {flag_text(f) for f in key}
        out.discard("\\Recent")
        cleaned = frozenset(out)
        if len(_CLEANED) < 4096:
            _CLEANED[key] = cleaned
    return cleaned


def gmail_label(value: bytes | int | str) -> str:
    """A Gmail label as text: modified UTF-7 decoded; a numeric label stays its digits."""
    if isinstance(value, bytes):
        return imap_utf7.decode(value)
    return str(value)


def guarded(operation: str):
    """Turn protocol and socket failures into :class:`MailboxError` naming the folder."""

    def decorate(method):
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any):
            folder = "/".join(args[0]) if args and isinstance(args[0], tuple) else None
            where = f" {folder}" if folder else ""
            try:
                return method(self, *args, **kwargs)
            except MailboxError:
                raise
            except imap_responses.MalformedResponse as exc:
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
