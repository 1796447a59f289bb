"""The two hot IMAP commands of a copy, read and written straight off the session's socket.

``UID FETCH`` responses and ``MULTIAPPEND`` commands carry every byte of a migration. imapclient
lexes FETCH responses one character at a time in Python, and imaplib keeps each response line in
its untagged-response store before anyone reads it; on a 6,000-message mailbox that was most of
the engine's CPU time. Here a FETCH response is read line by line, literals in one ``read``, and
the few items around them are split by one regular expression. Anything else the server says
meanwhile (``EXISTS``, ``EXPUNGE``, response codes) goes to imaplib's store as imaplib would put
it there, so the session stays usable by imapclient afterwards.

Values come back in imapclient's shapes: ints, ``bytes``, tuples for lists, ``None`` for NIL,
timezone-aware datetimes for INTERNALDATE.
"""

from __future__ import annotations

import datetime as dt
import imaplib
import re
from collections.abc import Sequence
from typing import Any

_FETCH_START = re.compile(rb"\* \d+ FETCH \(")
_UNTAGGED = re.compile(rb"\* (?P<type>[A-Z-]+)(?: (?P<data>.*))?$|\* (?P<num>\d+) (?P<type2>[A-Z-]+)(?: (?P<data2>.*))?$", re.DOTALL)  # fmt: skip
_RESPONSE_CODE = re.compile(rb"\[(?P<type>[A-Z-]+)( (?P<data>.*))?\]")
_TOKEN = re.compile(
    rb'[ ]*(?:(?P<open>\()|(?P<close>\))|"(?P<quoted>(?:[^"\\]|\\.)*)"'
    rb"|(?P<atom>[^\s()\"\[\]]+(?:\[[^\]]*\](?:<\d+>)?)?))"
)
_UNESCAPE = re.compile(rb"\\(.)")
# One ``KEY value`` pair of a FETCH response whose values are flat: a number, a quoted string, a
# list of atoms (FLAGS, MODSEQ), a literal (replaced by NUL, which IMAP never sends outside one)
# or an atom. Responses with nested lists (BODYSTRUCTURE, ENVELOPE) take the general tokenizer.
_PAIR_PATTERN = (
    rb'([^\s()"\[\]\x00]+(?:\[[^\]]*\](?:<\d+>)?)?) '
    rb'(?:(\d+)|"((?:[^"\\]|\\.)*)"|\(([^()"\x00]*)\)|(\x00)|([^\s()"\x00]+))(?=[ )])'
)
_PAIR = re.compile(_PAIR_PATTERN)
_INTERNALDATE = re.compile(rb" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")  # fmt: skip
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {name.encode().lower(): number for number, name in enumerate(_MONTHS, start=1)}
_ZONES: dict[bytes, dt.timezone] = {}
_LISTS: dict[tuple[bytes, bool], tuple[Any, ...]] = {}


class MalformedResponse(imaplib.IMAP4.error):
    """A reply that does not parse as IMAP. Not a lost connection (retrying reads the same reply
    again), but the session is out of step with the server and must be dropped."""


class OutOfStep(imaplib.IMAP4.abort):
    """A line that answers no command under way and is no untagged response: the server read
    something else than the commands sent (Cyrus, failing an APPEND with "System I/O error",
    reads the rest of its literal as commands). The session is lost; a new one may do."""


class _Word(bytes):
    """An atom as the tokenizer read it, typed (number, NIL) only once its item is known: the
    atoms of FLAGS stay text (a keyword ``2024`` or ``0123`` is a keyword, not a number)."""


class _Literal:
    """Marks where a literal sits among a response's tokens."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


class InternalDate(dt.datetime):
    """An INTERNALDATE as read from a server; it keeps its exact text, which an APPEND of the
    same message sends back unchanged (no formatting, and the server's own zone offset)."""

    __slots__ = ("raw",)
    raw: bytes


def _zone(sign: bytes, hours: bytes, minutes: bytes) -> dt.timezone:
    key = sign + hours + minutes
    zone = _ZONES.get(key)
    if zone is None:
        offset = dt.timedelta(hours=int(hours), minutes=int(minutes))
        zone = _ZONES[key] = dt.timezone(-offset if sign == b"-" else offset)
    return zone


def parse_internaldate(text: bytes) -> dt.datetime:
    """``b"17-Jul-1996 02:44:25 -0700"`` -> an aware datetime (ValueError when malformed)."""
    month = _MONTH_NUMBER.get(text[3:6].lower()) if len(text) == 26 else None
    if month is not None and text[2:3] == b"-" and text[20:21] == b" ":
        # The fixed layout every server sends (day padded with a space or a zero).
        when = InternalDate(int(text[7:11]), month, int(text[0:2]), int(text[12:14]),
                            int(text[15:17]), int(text[18:20]),
                            tzinfo=_zone(text[21:22], text[22:24], text[24:26]))  # fmt: skip
        when.raw = text
        return when
    match = _INTERNALDATE.match(text)
    if not match:
        raise ValueError(f"not an IMAP date-time: {text!r}")
    day, month_name, year, hour, minute, second, sign, zh, zm = match.groups()
    return dt.datetime(int(year), _MONTH_NUMBER[month_name.lower()], int(day), int(hour),
                       int(minute), int(second), tzinfo=_zone(sign, zh, zm))  # fmt: skip


def format_internaldate(when: dt.datetime) -> bytes:
    """A datetime as an IMAP date-time (a naive one is taken as local time, as imapclient does);
    one read by :func:`parse_internaldate` as the server wrote it."""
    raw = getattr(when, "raw", None)
    if raw is not None:
        return raw
    if when.tzinfo is None:
        when = when.astimezone()
    offset = when.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f"{when.day:02d}-{_MONTHS[when.month - 1]}-{when.year:04d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} {sign}{minutes // 60:02d}{minutes % 60:02d}"
    ).encode()


def _read_line(imap: imaplib.IMAP4) -> bytes:
    line = imap.readline()
    if not line:
        raise imaplib.IMAP4.abort("socket error: EOF")
    if not line.endswith(b"\r\n"):
        raise imaplib.IMAP4.abort(f"socket error: unterminated line: {line[:200]!r}")
    return line


STREAM_MIN = 64 * 1024  # a literal at least this big may be handed on as it arrives
STREAM_CHUNK = 64 * 1024


def _read_response(
    imap: imaplib.IMAP4, first: bytes, on_literal=None
) -> tuple[list[bytes], list[bytes]]:
    """The line fragments of one response (literal markers and CRLF removed) and its literals.

    ``on_literal(items, size)`` is asked before a FETCH response's literal of at least
    :data:`STREAM_MIN` bytes is read, with the response's items before it (the literal's own
    item last, as ``b""``); a callable it returns gets the literal's bytes chunk by chunk as
    they arrive (the literal is returned whole all the same)."""
    fragments, literals = [], []
    line = first
    while True:
        if line.endswith(b"}\r\n"):
            start = line.rfind(b"{")
            size = line[start + 1 : -3]
            if start >= 0 and size.isdigit():
                fragments.append(line[:start])
                sink = None
                if on_literal is not None and int(size) >= STREAM_MIN:
                    sink = on_literal(_items_before(fragments, literals), int(size))
                literals.append(_read_literal(imap, int(size), sink))
                line = _read_line(imap)
                continue
        fragments.append(line[:-2])
        return fragments, literals


def _items_before(fragments: list[bytes], literals: list[bytes]) -> dict[bytes, Any] | None:
    """The items of a FETCH response read up to a literal (which is left as ``b""``)."""
    try:
        return parse_fetch([*fragments, b")"], [*literals, b""])
    except MalformedResponse:
        return None


def _read_literal(imap: imaplib.IMAP4, size: int, sink=None) -> bytes:
    if sink is None:
        literal = imap.read(size)
    else:
        chunks = []
        left = size
        while left:
            chunk = imap.read(min(left, STREAM_CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            sink(chunk)
            left -= len(chunk)
        literal = b"".join(chunks)
    if len(literal) != size:
        raise imaplib.IMAP4.abort("socket error: EOF inside a literal")
    return literal


def _atom(token: bytes) -> Any:
    if token.isdigit():
        return int(token)
    if token == b"NIL":
        return None
    return token


def _tokens(fragments: list[bytes]) -> list[Any]:
    """Flat tokens of a response: atoms, quoted strings, ``(`` / ``)`` and literal markers."""
    out: list[Any] = []
    for index, fragment in enumerate(fragments):
        position, end = 0, len(fragment)
        while position < end:
            match = _TOKEN.match(fragment, position)
            if match is None or match.end() == position:
                if fragment[position:].strip() == b"":
                    break
                raise MalformedResponse(f"unparsable FETCH response near {fragment[position:position + 80]!r}")  # fmt: skip
            position = match.end()
            kind = match.lastgroup
            if kind == "atom":
                out.append(_Word(match.group("atom")))
            elif kind == "quoted":
                text = match.group("quoted")
                out.append(_UNESCAPE.sub(rb"\1", text) if b"\\" in text else text)
            elif kind == "open":
                out.append("(")
            else:
                out.append(")")
        if index < len(fragments) - 1:
            out.append(_Literal(index))
    return out


def _nest(tokens: list[Any], literals: list[bytes]) -> list[Any]:
    stack: list[list[Any]] = [[]]
    for token in tokens:
        if isinstance(token, str):  # only "(" and ")" are str tokens
            if token == "(":
                stack.append([])
                continue
            if len(stack) == 1:
                raise MalformedResponse("unbalanced parentheses in a FETCH response")
            done = stack.pop()
            stack[-1].append(tuple(done))
        elif isinstance(token, _Literal):
            stack[-1].append(literals[token.index])
        else:
            stack[-1].append(token)
    if len(stack) != 1:
        raise MalformedResponse("unbalanced parentheses in a FETCH response")
    return stack[0]


def parse_fetch(fragments: list[bytes], literals: list[bytes]) -> dict[bytes, Any]:
    """The items of one ``* n FETCH (...)`` response as imapclient would give them, except that
    FLAGS are always ``bytes`` (imapclient makes ``2024`` an int).

    :raises MalformedResponse: the response does not parse.
    """
    head = _FETCH_START.match(fragments[0])
    if head is None:
        raise MalformedResponse(f"not a FETCH response: {fragments[0][:80]!r}")
    fragments = [fragments[0][head.end() - 1 :], *fragments[1:]]
    try:
        flat = _flat_items(b"\x00".join(fragments), literals)
        if flat is not None:
            return flat
        nested = _nest(_tokens(fragments), literals)
        if len(nested) != 1 or not isinstance(nested[0], tuple) or len(nested[0]) % 2:
            raise MalformedResponse(f"malformed FETCH response: {fragments[0][:80]!r}")
        items = nested[0]
        out: dict[bytes, Any] = {}
        for position in range(0, len(items), 2):
            key = items[position]
            key = bytes(key).upper() if isinstance(key, bytes) else str(key).encode()
            out[key] = _typed(key, items[position + 1])
        return out
    except (ValueError, IndexError) as exc:  # a date that is none, a missing literal
        raise MalformedResponse(
            f"malformed FETCH response ({exc}): {fragments[0][:80]!r}"
        ) from None


def _typed(key: bytes, value: Any) -> Any:
    """A nested response value with its atoms typed: FLAGS keep theirs as text (a literal or
    quoted string among them stays ``bytes`` too, for the destination's atom check to refuse)."""
    if key == b"FLAGS":
        if not isinstance(value, tuple) or not all(isinstance(v, bytes) for v in value):
            raise MalformedResponse(f"FLAGS is not a list of flags: {value!r:.80}")
        return tuple(bytes(v) for v in value)
    if key == b"INTERNALDATE" and isinstance(value, bytes):
        return parse_internaldate(bytes(value))
    if isinstance(value, _Word):
        return _atom(bytes(value))
    if isinstance(value, tuple):
        return tuple(_typed(b"", v) for v in value)
    return value


_VALUE_PATTERNS = {  # by the number of the _PAIR group that matched the value
    2: rb"(\d+)",
    3: rb'"((?:[^"\\]|\\.)*)"',
    4: rb'\(([^()"\x00]*)\)',
    5: rb"(\x00)",
    6: rb'([^\s()"\x00]+)',
}
_layouts: tuple[tuple[re.Pattern[bytes], tuple[tuple[bytes, int], ...]], ...] = ()


def _flat_items(text: bytes, literals: list[bytes]) -> dict[bytes, Any] | None:
    """The pairs of a response with flat values; ``None`` when it has any other shape (the
    pairs must follow each other with single spaces from ``(`` to ``)``).

    The responses to one command all look alike (``UID n FLAGS (..) INTERNALDATE ".." BODY[]
    {n}``): the first is split pair by pair, and its layout becomes one regular expression
    that splits the next ones in a single match."""
    for pattern, fields in _layouts:
        match = pattern.fullmatch(text)
        if match is not None:
            return _convert(fields, match.groups(), literals)
    fields, raws, pieces = [], [], []
    expected = 1
    for match in _PAIR.finditer(text):
        if match.start() != expected:
            return None
        expected = match.end() + 1
        kind = match.lastindex or 0
        key = match.group(1)
        fields.append((key.upper(), kind))
        raws.append(match.group(kind))
        pieces.append(re.escape(key) + b" " + _VALUE_PATTERNS[kind])
    if text != b"()" and not (expected == len(text) and text.endswith(b")")):
        return None
    _learn(pieces, fields)
    return _convert(fields, raws, literals)


def _learn(pieces: list[bytes], fields: list[tuple[bytes, int]]) -> None:
    global _layouts
    pattern = re.compile(rb"\(" + b" ".join(pieces) + rb"\)")
    if all(known.pattern != pattern.pattern for known, _ in _layouts):
        _layouts = ((pattern, tuple(fields)), *_layouts[:7])  # replaced whole: lanes share it


def _convert(
    fields: tuple[tuple[bytes, int], ...] | list[tuple[bytes, int]],
    raws: tuple[bytes, ...] | list[bytes],
    literals: list[bytes],
) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    next_literal = 0
    for (key, kind), raw in zip(fields, raws, strict=True):
        if key == b"FLAGS":
            if kind != 4:
                raise MalformedResponse(f"FLAGS is not a list of flags: {raw!r:.80}")
            value: Any = _atom_list(raw, numbers=False)
        elif kind == 2:
            value: Any = int(raw)
        elif kind == 3:
            value = _UNESCAPE.sub(rb"\1", raw) if b"\\" in raw else raw
            if key == b"INTERNALDATE":
                value = parse_internaldate(value)
        elif kind == 4:
            value = _atom_list(raw)
        elif kind == 5:
            value = literals[next_literal]
            next_literal += 1
        else:
            value = _atom(raw)
        out[key] = value
    return out


def _atom_list(inner: bytes, *, numbers: bool = True) -> tuple[Any, ...]:
    """A parenthesized list of atoms: typed (MODSEQ) or, for FLAGS, all text. The few distinct
    ones are cached."""
    key = (inner, numbers)
    value = _LISTS.get(key)
    if value is None:
        value = tuple(_atom(word) for word in inner.split()) if numbers else tuple(inner.split())
        if len(_LISTS) < 4096:
            _LISTS[key] = value
    return value


def _store_untagged(imap: imaplib.IMAP4, fragments: list[bytes], literals: list[bytes]) -> None:
    """Keep a response this module does not consume where imaplib would have kept it."""
    match = _UNTAGGED.match(fragments[0])
    if match is None and not fragments[0].startswith(b"* "):
        raise OutOfStep(f"out of step with the server: unexpected line {fragments[0][:200]!r}")
    if match is None:
        raise MalformedResponse(f"unexpected response: {fragments[0][:200]!r}")
    if match.group("num") is not None:
        typ, data = match.group("type2"), match.group("num") + b" " + (match.group("data2") or b"")
        data = data.rstrip()
    else:
        typ, data = match.group("type"), match.group("data") or b""
    name = typ.decode("ascii")
    if name == "BYE":
        raise imaplib.IMAP4.abort(f"server closed the session: {data.decode(errors='replace')}")
    for index, literal in enumerate(literals):
        head = data if index == 0 else fragments[index]
        imap._append_untagged(name, (head + b"{%d}" % len(literal), literal))
    imap._append_untagged(name, data if not literals else fragments[-1])
    if name in ("OK", "NO", "BAD"):
        code = _RESPONSE_CODE.match(data)
        if code:
            imap._append_untagged(code.group("type").decode("ascii"), code.group("data"))


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
            line = _read_line(imap)
            if line.startswith(tag + b" "):
                typ, _, text = line[len(tag) + 1 : -2].partition(b" ")
                return typ.decode("ascii", "replace"), [text]
            if line.startswith(b"+"):
                raise imaplib.IMAP4.abort(f"unexpected continuation: {line[:200]!r}")
            fragments, literals = _read_response(imap, line)
            if on_fetch is not None and _FETCH_START.match(fragments[0]):
                on_fetch(parse_fetch(fragments, literals))
            else:
                _store_untagged(imap, fragments, literals)
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
    response (``on_literal``: see :func:`_read_response`); other untagged responses go to
    imaplib's store, as imaplib would put them.

    :return: ``(typ, text)`` of the tagged answer.
    :raises MalformedResponse: a tagged answer to no command under way.
    """
    if tag in early:
        return early.pop(tag)
    while True:
        line = _read_line(imap)
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
        streamed = on_literal if on_fetch is not None and _FETCH_START.match(line) else None
        fragments, literals = _read_response(imap, line, streamed)
        if on_fetch is not None and _FETCH_START.match(fragments[0]):
            on_fetch(parse_fetch(fragments, literals))
        else:
            _store_untagged(imap, fragments, literals)


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
        return _UNESCAPE.sub(rb"\1", name[1:-1])
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
            line = _read_line(imap)
            tag = line.split(b" ", 1)[0]
            if tag in open_tags:
                open_tags.discard(tag)
                continue
            if line.startswith(b"+"):
                raise imaplib.IMAP4.abort(f"unexpected continuation: {line[:200]!r}")
            fragments, literals = _read_response(imap, line)
            match = _STATUS_REPLY.match(fragments[0]) if not literals else None
            if match is None:
                _store_untagged(imap, fragments, literals)
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
    done: dict[bytes, tuple[str, bytes]] = {}
    try:
        imap.send(b"".join(tag + b" " + command + b"\r\n" for tag, command in
                           zip(tags, commands, strict=True)))  # fmt: skip
        while len(done) < len(tags):
            line = _read_line(imap)
            tag = line.split(b" ", 1)[0]
            if tag in tags:
                typ, _, text = line[len(tag) + 1 : -2].partition(b" ")
                done[tag] = (typ.decode("ascii", "replace"), text)
                if on_tagged is not None:
                    on_tagged(tags.index(tag), done[tag][0])
                continue
            if line.startswith(b"+"):
                raise imaplib.IMAP4.abort(f"unexpected continuation: {line[:200]!r}")
            fragments, literals = _read_response(imap, line)
            if on_fetch is not None and _FETCH_START.match(fragments[0]):
                on_fetch(parse_fetch(fragments, literals))
            else:
                _store_untagged(imap, fragments, literals)
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
