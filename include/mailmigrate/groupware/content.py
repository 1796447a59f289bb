"""Item content: UID, the canonical form two copies are compared in, and the one change a copy
makes (scheduling turned off for the write).

iCalendar (RFC 5545) and vCard (RFC 6350) share the content-line syntax; both are read line by
line here (name, parameters, value; quotes respected), so nothing is re-serialised by a library on
the way and a copy carries the source's bytes (bar the scheduling parameter below). icalendar's
content-line parser is not used for this: it keeps only the last of repeated parameters.

The canonical form drops exactly what servers legitimately rewrite (the README's "What copied
means for groupware"): line folding and line endings, property and component order, parameter
order and the case of names, the order of a recurrence rule's parts, ``PRODID``, ``DTSTAMP``,
``LAST-MODIFIED``, ``REV`` (vCard), the spelling of vCard ``TYPE``, the VTIMEZONE definitions
(their TZIDs stay compared wherever they are used), and the RFC 6638 scheduling parameters
``SCHEDULE-AGENT``, ``SCHEDULE-STATUS``, ``SCHEDULE-FORCE-SEND`` that scheduling servers add or
consume. Everything else is compared as written, values byte for byte.
"""

from __future__ import annotations

import re

from mailmigrate.errors import ContentError

IGNORED_PROPERTIES = frozenset({"PRODID", "DTSTAMP", "LAST-MODIFIED", "REV"})
IGNORED_COMPONENTS = frozenset({"VTIMEZONE"})
SCHEDULING_PARAMETERS = frozenset({"SCHEDULE-AGENT", "SCHEDULE-STATUS", "SCHEDULE-FORCE-SEND"})
SCHEDULED_PROPERTIES = frozenset({"ORGANIZER", "ATTENDEE"})
RULES = frozenset({"RRULE", "EXRULE"})
_FOLD = re.compile(r"\r?\n[ \t]")


def unfolded_lines(text: str) -> list[str]:
    """Content lines of ``text``, unfolded, without line endings or empty lines."""
    return [line for line in _FOLD.sub("", text).replace("\r\n", "\n").split("\n") if line]


def _split(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside double quotes."""
    parts, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    return [*parts, "".join(current)]


def _value_start(line: str) -> int:
    """Index of the colon between a content line's name/parameters and its value."""
    quoted = False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == ":" and not quoted:
            return index
    raise ContentError(f"content line without a value: {line[:40]!r}")


def _parts(line: str) -> tuple[str, list[tuple[str, list[str]]], str]:
    """(NAME, [(PARAM, [values])...], value) of one unfolded content line. Repeated parameters
    stay separate entries (``TYPE=home;TYPE=voice``), which icalendar's parser would merge into
    the last one and so hide a difference."""
    colon = _value_start(line)
    name, *params = _split(line[:colon], ";")
    parsed = []
    for param in params:
        key, equals, values = param.partition("=")
        if not equals:
            raise ContentError(f"parameter without a value in {line[:40]!r}")
        parsed.append((key.upper(), [v.strip('"') for v in _split(values, ",")]))
    return name.upper(), parsed, line[colon + 1 :]


def uid_of(text: str) -> str | None:
    """The UID of an item (the first UID line: every component of a calendar resource shares
    it, RFC 4791 §4.1)."""
    for line in unfolded_lines(text):
        if line[:4].upper() == "UID:" or line[:4].upper() == "UID;":
            return _parts(line)[2]
    return None


def components_of(text: str) -> set[str]:
    """The top-level component names inside a calendar resource (``VEVENT``, ``VTODO``...) or
    ``{"VCARD"}``."""
    depth, names = 0, set()
    for line in unfolded_lines(text):
        upper = line.upper()
        if upper.startswith("BEGIN:"):
            depth += 1
            if depth == 2 or upper == "BEGIN:VCARD":
                names.add(upper[6:])
        elif upper.startswith("END:"):
            depth -= 1
    return names - IGNORED_COMPONENTS


def _canonical_params(params: list[tuple[str, list[str]]]) -> tuple[str, ...]:
    merged: dict[str, list[str]] = {}
    for key, values in params:
        if key not in SCHEDULING_PARAMETERS:
            merged.setdefault(key, []).extend(values)
    out = []
    for key, values in merged.items():
        if key == "TYPE":  # vCard TYPE is case-insensitive and a set ("HOME,VOICE" == two params)
            values = sorted({part.lower() for part in values})
        out.append(f"{key}={','.join(values)}")
    return tuple(sorted(out))


def canonical(text: str) -> tuple:
    """The comparable form of an iCalendar or vCard text: nested tuples of components, each
    with its sorted content lines and sorted sub-components. Equal forms mean equal items by
    the definition of a copy."""
    stack: list[tuple[str, list, list]] = [("", [], [])]
    for line in unfolded_lines(text):
        name, params, value = _parts(line)
        if name == "BEGIN":
            stack.append((value.upper(), [], []))
            continue
        if name == "END":
            if len(stack) < 2:
                raise ContentError(f"END:{value} without BEGIN")
            comp, lines, children = stack.pop()
            if comp not in IGNORED_COMPONENTS:
                stack[-1][2].append((comp, tuple(sorted(lines)), tuple(sorted(children))))
            continue
        if name in IGNORED_PROPERTIES:
            continue
        if name in RULES:  # RFC 5545 §3.3.10: the parts of a rule are unordered
            value = ";".join(sorted(part.upper() for part in value.split(";")))
        stack[-1][1].append((name, _canonical_params(params), value))
    if len(stack) != 1:
        raise ContentError(f"BEGIN:{stack[-1][0]} without END")
    return tuple(sorted(stack[0][2]))


def without_scheduling(text: str) -> str:
    """``text`` with ``SCHEDULE-AGENT=CLIENT`` on every ORGANIZER and ATTENDEE: RFC 6638 §7.1
    forbids a scheduling server to send invitations, updates or replies for them. Only those
    lines change (an existing SCHEDULE-AGENT is replaced); the others keep their bytes."""
    out: list[str] = []
    for line in unfolded_lines(text):
        head = line.split(":", 1)[0].split(";", 1)[0].upper()
        if head in SCHEDULED_PROPERTIES:
            colon = _value_start(line)
            name, *params = _split(line[:colon], ";")
            params = [p for p in params if p.partition("=")[0].upper() != "SCHEDULE-AGENT"]
            line = ";".join([name, *params, "SCHEDULE-AGENT=CLIENT"]) + line[colon:]
        out.append(line)
    return "\r\n".join(out) + "\r\n"
