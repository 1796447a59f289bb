"""The hot IMAP commands of a copy, written straight to the session's socket: ``UID FETCH``
(pipelined: the next batch's sent before this one's answer is read), ``MULTIAPPEND`` sent
message by message as the messages arrive, several commands in one flight (STATUS of every
folder, EXAMINE with its FETCH), their answers read by
:mod:`~mailmigrate.mailbox.imap_responses`.
"""

from __future__ import annotations

import datetime as dt
import imaplib
import re
from collections.abc import Sequence
from typing import Any

from mailmigrate.mailbox.imap_responses import (
    FETCH_START,
    UNESCAPE,
    OutOfStep,
    format_internaldate,
    parse_fetch,
    read_line,
    read_response,
    store_untagged,
)


def run_command(
    imap: imaplib.IMAP4, parts: Sequence[bytes], on_fetch=None
) -> tuple[str, list[bytes]]:
    """Send one complete command (``parts`` after the tag, already joined with their spaces and
    literals) and read its responses until the tagged one; ``on_fetch(items)`` gets each FETCH.

    :return: imaplib's ``(typ, [text])`` of the tagged response.
    """
    tag = imap._new_tag()
    try:
        _send(imap, tag, parts)
        while True:
            line = read_line(imap)
            if line.startswith(tag + b" "):
                typ, _, text = line[len(tag) + 1 : -2].partition(b" ")
                return typ.decode("ascii", "replace"), [text]
            if line.startswith(b"+"):
                raise imaplib.IMAP4.abort(f"unexpected continuation: {line[:200]!r}")
            fragments, literals = read_response(imap, line)
            if on_fetch is not None and FETCH_START.match(fragments[0]):
                on_fetch(parse_fetch(fragments, literals))
            else:
                store_untagged(imap, fragments, literals)
    finally:
        imap.tagged_commands.pop(tag, None)


def _send(imap: imaplib.IMAP4, tag: bytes, parts: Sequence[bytes], end: bytes = b"\r\n") -> None:
    """Send small parts coalesced and large ones on their own (no copy of a big message)."""
    pending = [tag, b" "] if tag else []
    pending_size = 0
    for part in parts:
        if len(part) >= 65536:
            if pending:
                imap.send(b"".join(pending))
                pending, pending_size = [], 0
            imap.send(part)
            continue
        pending.append(part)
        pending_size += len(part)
        if pending_size >= 262144:
            imap.send(b"".join(pending))
            pending, pending_size = [], 0
    pending.append(end)
    if pending != [b""]:
        imap.send(b"".join(pending))


def uid_fetch(
    imap: imaplib.IMAP4, uid_set: str, items: Sequence[bytes], modifiers: str | None = None
) -> dict[int, dict[bytes, Any]]:
    """``UID FETCH uid_set (items) [(modifiers)]`` keyed by UID; responses without a UID (flag
    updates another session caused) are dropped.

    :raises imaplib.IMAP4.error: the server refused the command (NO/BAD).
    """
    command = fetch_command(uid_set, items, modifiers)
    by_uid: dict[int, dict[bytes, Any]] = {}

    def keep(entry: dict[bytes, Any]) -> None:
        uid = entry.get(b"UID")
        if isinstance(uid, int):
            by_uid.setdefault(uid, {}).update(entry)

    typ, data = run_command(imap, [command], keep)
    if typ != "OK":
        raise imaplib.IMAP4.error(f"FETCH command error: {typ} {data[0].decode(errors='replace')}")
    return by_uid


class FetchAhead:
    """A ``UID FETCH`` sent before the answer of the one ahead of it was read (see
    :func:`uid_fetch_ahead`): its tag, its UIDs, and what of its answer was read already."""

    __slots__ = ("imap", "key", "tag", "uids", "stash", "answer")

    def __init__(self, imap: imaplib.IMAP4, key: Any, tag: bytes, uids: set[int]) -> None:
        self.imap, self.key, self.tag, self.uids = imap, key, tag, uids
        self.stash: dict[int, dict[bytes, Any]] = {}
        self.answer: tuple[str, bytes] | None = None


def uid_fetch_ahead(
    imap: imaplib.IMAP4,
    uids: Sequence[int],
    uid_set: str,
    items: Sequence[bytes],
    sent: FetchAhead | None = None,
    following: tuple[Any, Sequence[int], str] | None = None,
    on_complete=None,
    on_start=None,
) -> tuple[dict[int, dict[bytes, Any]], FetchAhead | None]:
    """:func:`uid_fetch` of ``uids`` (``uid_set``), pipelined: ``sent`` is its FETCH when it
    was sent ahead; with ``following`` (``(key, uids, uid_set)`` of the next batch) that FETCH
    is sent before this one's answer is read, so the server streams the next batch without
    waiting a round trip for the request. Responses for the following UIDs read on the way are
    kept for it. Until the returned :class:`FetchAhead` is read by the next call, the session
    must not be used for anything else (or must be dropped). ``on_complete(uid, items)`` is
    called once per UID of this batch as soon as every one of ``items`` of it has been read.
    ``on_start(uid, items, size)`` is asked before a big ``BODY[]`` of this batch arrives
    whose response holds every other item before it (so the UID is complete once the literal
    is): a callable it returns gets the literal's bytes as they arrive.

    :return: this batch's items keyed by UID, and the FETCH sent ahead (or ``None``).
    :raises imaplib.IMAP4.error: the server refused this FETCH (NO/BAD).
    """
    if sent is None:
        tag = send_command(imap, [fetch_command(uid_set, items)])
        by_uid: dict[int, dict[bytes, Any]] = {}
        answer = None
    else:
        tag, by_uid, answer = sent.tag, sent.stash, sent.answer
    ahead = None
    outstanding = {tag}
    if following is not None:
        key, next_uids, next_set = following
        ahead = FetchAhead(imap, key, send_command(imap, [fetch_command(next_set, items)]),
                           set(next_uids))  # fmt: skip
        outstanding.add(ahead.tag)
    wanted = set(uids)
    keys = [item.replace(b".PEEK", b"") for item in items]
    done: set[int] = set()

    def completed(uid: int, merged: dict[bytes, Any]) -> None:
        ready = on_complete is not None and uid in wanted and uid not in done
        if ready and all(key in merged for key in keys):
            done.add(uid)
            on_complete(uid, merged)

    for uid, merged in list(by_uid.items()):  # read with the batch ahead of this one
        completed(uid, merged)

    def keep(entry: dict[bytes, Any]) -> None:
        uid = entry.get(b"UID")
        if isinstance(uid, int):
            into = ahead.stash if ahead is not None and uid not in wanted and uid in ahead.uids else by_uid  # fmt: skip
            merged = into.setdefault(uid, {})
            merged.update(entry)
            if into is by_uid:
                completed(uid, merged)

    def literal(before: dict[bytes, Any] | None, size: int):
        if on_start is None or not before or next(reversed(before)) != b"BODY[]":
            return None
        uid = before.get(b"UID")
        if uid not in wanted or uid in done or not all(key in before for key in keys):
            return None
        return on_start(uid, before, size)

    early: dict[bytes, tuple[str, bytes]] = {}
    typ, text = answer or read_tagged(imap, tag, outstanding, early, keep, literal)
    if ahead is not None and ahead.tag in early:
        ahead.answer = early.pop(ahead.tag)
    if typ != "OK":
        raise imaplib.IMAP4.error(f"FETCH command error: {typ} {text.decode(errors='replace')}")
    return by_uid, ahead


def fetch_command(uid_set: str, items: Sequence[bytes], modifiers: str | None = None) -> bytes:
    """``UID FETCH uid_set (items) [(modifiers)]``."""
    command = b"UID FETCH " + uid_set.encode("ascii") + b" (" + b" ".join(items) + b")"
    if modifiers:
        command += b" (" + modifiers.encode("ascii") + b")"
    return command


def multiappend(
    imap: imaplib.IMAP4,
    quoted_mailbox: bytes,
    messages: Sequence[tuple[Sequence[str], dt.datetime | None, bytes]],
) -> tuple[str, list[bytes]]:
    """``APPEND mailbox (flags) "date" {n+}`` ... for every message in one command (RFC 3502),
    with non-synchronizing literals: only for servers that advertise LITERAL+.

    :param messages: ``(flags, internaldate or None, content)`` per message.
    :return: ``(typ, [text])`` of the tagged response (``APPENDUID`` is in the text).
    """
    typ, data = run_command(imap, append_parts(quoted_mailbox, messages))
    check_append_reply(typ, data[0])
    return typ, data


def append_parts(
    quoted_mailbox: bytes, messages: Sequence[tuple[Sequence[str], dt.datetime | None, bytes]]
) -> list[bytes]:
    """The parts of ``APPEND mailbox (flags) "date" {n+}`` ... with non-synchronizing
    literals (LITERAL+), for :func:`run_command` or :func:`send_command`."""
    parts: list[bytes] = [b"APPEND ", quoted_mailbox]
    for flags, when, content in messages:
        parts += append_message_parts(flags, when, content)
    return parts


def check_append_reply(typ: str, text: bytes) -> None:
    """A BAD answer to an APPEND is a protocol error, not a refusal of the messages (as imaplib
    takes it): :raises imaplib.IMAP4.error:."""
    if typ == "BAD":
        raise imaplib.IMAP4.error(f"APPEND command error: BAD {text.decode(errors='replace')}")


def append_message_parts(
    flags: Sequence[str], when: dt.datetime | None, content: bytes
) -> list[bytes]:
    """One message of an APPEND (LITERAL+): `` (flags) "date" {n+}\r\n`` and its bytes."""
    return [*append_message_head(flags, when, len(content)), content]


def append_message_head(flags: Sequence[str], when: dt.datetime | None, size: int) -> list[bytes]:
    """`` (flags) "date" {size+}\r\n``: one message of an APPEND (LITERAL+) up to its bytes."""
    parts = [b" (" + " ".join(flags).encode("utf-8") + b")"]
    if when is not None:
        parts.append(b' "' + format_internaldate(when) + b'"')
    parts.append(b" {" + str(size).encode("ascii") + b"+}\r\n")
    return parts


def open_command(imap: imaplib.IMAP4, parts: Sequence[bytes]) -> bytes:
    """Send the start of a command (no line end: :func:`send_more` adds to it, :func:`close_command`
    ends it), e.g. an APPEND whose messages are sent as they arrive. :return: its tag."""
    tag = imap._new_tag()
    imap.tagged_commands.pop(tag, None)  # answered through read_tagged, not imaplib
    _send(imap, tag, parts, end=b"")
    return tag


def send_more(imap: imaplib.IMAP4, parts: Sequence[bytes]) -> None:
    """More of a command opened by :func:`open_command`."""
    _send(imap, b"", parts, end=b"")


def close_command(imap: imaplib.IMAP4) -> None:
    """End a command opened by :func:`open_command`."""
    imap.send(b"\r\n")


def send_command(imap: imaplib.IMAP4, parts: Sequence[bytes]) -> bytes:
    """Send one complete command without waiting for its answer (pipelining: several may be
    under way at once); :func:`read_tagged` reads the answer. :return: the command's tag."""
    tag = imap._new_tag()
    imap.tagged_commands.pop(tag, None)  # answered through read_tagged, not imaplib
    _send(imap, tag, parts)
    return tag


def read_tagged(
    imap: imaplib.IMAP4,
    tag: bytes,
    outstanding: set[bytes],
    early: dict[bytes, tuple[str, bytes]],
    on_fetch=None,
    on_literal=None,
) -> tuple[str, bytes]:
    """Read until the tagged answer of ``tag`` (a command of :func:`send_command`). A server
    may answer pipelined commands out of order: the answer of another tag in ``outstanding``
    read on the way is kept in ``early`` for its own call. ``on_fetch(items)`` gets each FETCH
    response (``on_literal``: see :func:`read_response`); other untagged responses go to
    imaplib's store, as imaplib would put them.

    :return: ``(typ, text)`` of the tagged answer.
    :raises MalformedResponse: a tagged answer to no command under way.
    """
    if tag in early:
        return early.pop(tag)
    while True:
        line = read_line(imap)
        if line.startswith(b"+"):
            raise imaplib.IMAP4.abort(f"unexpected continuation: {line[:200]!r}")
        if not line.startswith(b"* "):
            head, _, rest = line[:-2].partition(b" ")
            typ, _, text = rest.partition(b" ")
            answer = typ.decode("ascii", "replace"), text
            if head == tag:
                return answer
            if head not in outstanding or head in early:
                raise OutOfStep(f"out of step with the server: an answer to no command under "
                                f"way: {line[:200]!r}")  # fmt: skip
            early[head] = answer
            continue
        streamed = on_literal if on_fetch is not None and FETCH_START.match(line) else None
        fragments, literals = read_response(imap, line, streamed)
        if on_fetch is not None and FETCH_START.match(fragments[0]):
            on_fetch(parse_fetch(fragments, literals))
        else:
            store_untagged(imap, fragments, literals)


APPENDUID = re.compile(rb"\[APPENDUID (\d+) ([\d:,]+)\]", re.IGNORECASE)


def uid_set(text: bytes) -> list[int]:
    """A UID set as a server writes it (``b"4:6,9"``) -> ``[4, 5, 6, 9]``."""
    uids: list[int] = []
    for part in text.split(b","):
        first, _, last = part.partition(b":")
        uids.extend(range(int(first), int(last or first) + 1))
    return uids


_STATUS_REPLY = re.compile(rb"\* STATUS (?P<name>.*) \((?P<items>[^()]*)\)$", re.DOTALL)


def unquote(name: bytes) -> bytes:
    """A mailbox name as sent or received: an atom as is, a quoted string without its quotes."""
    if len(name) >= 2 and name[:1] == b'"' and name[-1:] == b'"':
        return UNESCAPE.sub(rb"\1", name[1:-1])
    return name


def status_many(
    imap: imaplib.IMAP4, quoted_names: Sequence[bytes], items: Sequence[bytes]
) -> dict[bytes, dict[bytes, int]]:
    """``STATUS name (items)`` for every name, pipelined: all commands are sent at once, so
    the replies of all folders take one round trip instead of one each.

    :return: the items of each folder the server answered, keyed by its unquoted name as the
        server wrote it (folders it refused are missing; so is a reply whose name came as a
        literal: the caller asks for those one at a time).
    """
    if not quoted_names:
        return {}
    wanted = b" (" + b" ".join(items) + b")\r\n"
    tags = [imap._new_tag() for _ in quoted_names]
    open_tags = set(tags)
    replies: dict[bytes, dict[bytes, int]] = {}
    try:
        imap.send(
            b"".join(
                tag + b" STATUS " + name + wanted
                for tag, name in zip(tags, quoted_names, strict=True)
            )
        )
        while open_tags:
            line = read_line(imap)
            tag = line.split(b" ", 1)[0]
            if tag in open_tags:
                open_tags.discard(tag)
                continue
            if line.startswith(b"+"):
                raise imaplib.IMAP4.abort(f"unexpected continuation: {line[:200]!r}")
            fragments, literals = read_response(imap, line)
            match = _STATUS_REPLY.match(fragments[0]) if not literals else None
            if match is None:
                store_untagged(imap, fragments, literals)
                continue
            words = match.group("items").split()
            replies[unquote(match.group("name"))] = {
                key.upper(): int(value)
                for key, value in zip(words[::2], words[1::2], strict=False)
                if value.isdigit()
            }
    finally:
        for tag in tags:
            imap.tagged_commands.pop(tag, None)
    return replies


def pipelined(
    imap: imaplib.IMAP4, commands: Sequence[bytes], on_fetch=None, on_tagged=None
) -> list[tuple[str, bytes]]:
    """Send ``commands`` (complete, without tags) at once and read all their responses: one
    round trip for all. ``on_fetch(items)`` gets each FETCH response; other untagged responses
    go to imaplib's store, as imaplib would put them; ``on_tagged(index, typ)`` is called as
    each command's tagged answer is read (a server answers them in order).

    :return: ``(typ, text)`` of each command's tagged response, in the order sent.
    """
    tags = [imap._new_tag() for _ in commands]
    position = {tag: index for index, tag in enumerate(tags)}
    done: dict[bytes, tuple[str, bytes]] = {}
    try:
        imap.send(b"".join(tag + b" " + command + b"\r\n" for tag, command in
                           zip(tags, commands, strict=True)))  # fmt: skip
        while len(done) < len(tags):
            line = read_line(imap)
            tag = line.split(b" ", 1)[0]
            if tag in position:
                typ, _, text = line[len(tag) + 1 : -2].partition(b" ")
                done[tag] = (typ.decode("ascii", "replace"), text)
                if on_tagged is not None:
                    on_tagged(position[tag], done[tag][0])
                continue
            if line.startswith(b"+"):
                raise imaplib.IMAP4.abort(f"unexpected continuation: {line[:200]!r}")
            fragments, literals = read_response(imap, line)
            if on_fetch is not None and FETCH_START.match(fragments[0]):
                on_fetch(parse_fetch(fragments, literals))
            else:
                store_untagged(imap, fragments, literals)
    finally:
        for tag in tags:
            imap.tagged_commands.pop(tag, None)
    return [done[tag] for tag in tags]


def send_logout(imap: imaplib.IMAP4) -> None:
    """Send ``LOGOUT`` without waiting for the server's goodbye (the caller closes the socket
    next: a round trip less at the end of every session)."""
    tag = imap._new_tag()
    imap.tagged_commands.pop(tag, None)
    imap.send(tag + b" LOGOUT\r\n")
