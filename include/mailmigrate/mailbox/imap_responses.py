"""IMAP responses read straight off the session's socket and parsed: the reading half of
:mod:`~mailmigrate.mailbox.imap_wire`.

imapclient lexes FETCH responses one character at a time in Python, and imaplib keeps each
response line in its untagged-response store before anyone reads it; on a 6,000-message
mailbox that was most of the engine's CPU time. Here a response is read line by line, a literal
in one ``read`` (or chunk by chunk, handed on as it arrives), and the few items around them are
split by one regular expression. Anything else the server says meanwhile (``EXISTS``,
``EXPUNGE``, response codes) goes to imaplib's store as imaplib would put it there, so the
session stays usable by imapclient afterwards.

Values come back in imapclient's shapes: ints, ``bytes``, tuples for lists, ``None`` for NIL,
timezone-aware datetimes for INTERNALDATE.
"""

from __future__ import annotations

import datetime as dt
import imaplib
import re
from typing import Any

FETCH_START = re.compile(rb"\* \d+ FETCH \(")
_UNTAGGED = re.compile(rb"\* (?P<type>[A-Z-]+)(?: (?P<data>.*))?$|\* (?P<num>\d+) (?P<type2>[A-Z-]+)(?: (?P<data2>.*))?$", re.DOTALL)  # fmt: skip
_RESPONSE_CODE = re.compile(rb"\[(?P<type>[A-Z-]+)( (?P<data>.*))?\]")
_TOKEN = re.compile(
    rb'[ ]*(?:(?P<open>\()|(?P<close>\))|"(?P<quoted>(?:[^"\\]|\\.)*)"'
    rb"|(?P<atom>[^\s()\"\[\]]+(?:\[[^\]]*\](?:<\d+>)?)?))"
)
UNESCAPE = re.compile(rb"\\(.)")
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


def read_line(imap: imaplib.IMAP4) -> bytes:
    line = imap.readline()
    if not line:
        raise imaplib.IMAP4.abort("socket error: EOF")
    if not line.endswith(b"\r\n"):
        raise imaplib.IMAP4.abort(f"socket error: unterminated line: {line[:200]!r}")
    return line


STREAM_MIN = 64 * 1024  # a literal at least this big may be handed on as it arrives
STREAM_CHUNK = 64 * 1024


def read_response(
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
                line = read_line(imap)
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
                out.append(UNESCAPE.sub(rb"\1", text) if b"\\" in text else text)
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
    head = FETCH_START.match(fragments[0])
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
            value = UNESCAPE.sub(rb"\1", raw) if b"\\" in raw else raw
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


def store_untagged(imap: imaplib.IMAP4, fragments: list[bytes], literals: list[bytes]) -> None:
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
