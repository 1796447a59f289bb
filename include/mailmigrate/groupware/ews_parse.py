"""iCalendar and vCard text read into exchangelib items (the inverse of
:mod:`mailmigrate.groupware.ews_convert`), and the check that nothing is lost on the way.

Invariant: :func:`to_exchange` never returns an item that would hold less than the text said.
It renders the item it built back to text and compares both canonical forms
(:func:`~mailmigrate.groupware.content.canonical`); a difference raises :class:`NotCarried`
naming the properties, and the copy reports the item instead of writing it. Only what Exchange
decides itself is left out of that comparison: ORGANIZER (the mailbox's owner organizes what is
created in it), SEQUENCE (Exchange counts its own), a task's COMPLETED time, an alarm's text
(Exchange's reminder has none: it shows the subject), and the TYPE parameter of EMAIL.

A recurring meeting becomes the series (RRULE) plus, by instance number, the instances to
cancel (EXDATE) and to change (each RECURRENCE-ID component); :class:`Converted` carries them.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal

import icalendar
import vobject
from dateutil.rrule import rrulestr
from exchangelib import CalendarItem, EWSDate, EWSDateTime, EWSTimeZone, Task
from exchangelib.attachments import FileAttachment
from exchangelib.properties import Attendee, Body, Mailbox
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    AbsoluteYearlyPattern,
    DailyPattern,
    DeletedOccurrence,
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    Recurrence,
    RelativeMonthlyPattern,
    RelativeYearlyPattern,
    WeeklyPattern,
)

from mailmigrate.errors import ContentError
from mailmigrate.groupware.content import canonical, unfolded_lines
from mailmigrate.groupware.ews_cards import KnownContact, MissingMember, NotCarried, card_item
from mailmigrate.groupware.ews_convert import (
    CLASS_BACK,
    DAYS,
    REPLY_BACK,
    STATUS_BACK,
    item_text,
)

IGNORED = {"ORGANIZER", "COMPLETED", "DTSTAMP", "PRODID", "SEQUENCE"}
MAX_INSTANCES = 10_000  # instances looked through to number one
UTC = EWSTimeZone("UTC")


def _tz(value: dt.datetime) -> EWSTimeZone:
    key = getattr(value.tzinfo, "key", None) or str(value.tzinfo or "UTC")
    try:
        return EWSTimeZone("UTC" if key in ("UTC", "Etc/UTC", "utc") else key)
    except Exception:  # an unknown zone: the loss check names DTSTART
        return EWSTimeZone("UTC")


def _moment(value, tz: EWSTimeZone):
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # floating time: Exchange has none (the loss check says so)
            value = value.replace(tzinfo=dt.UTC)
        utc = value.astimezone(dt.UTC)
        return EWSDateTime(*utc.timetuple()[:6], tzinfo=EWSTimeZone("UTC")).astimezone(tz)
    return EWSDate(value.year, value.month, value.day)


def _nth(values) -> tuple[int, int]:
    """(week number 1-5, weekday 1-7) of one BYDAY such as ``2MO`` or ``-1FR``."""
    match = re.fullmatch(r"([+]?[1-4]|-1)?(MO|TU|WE|TH|FR|SA|SU)", str(values[0]).upper())
    if len(values) != 1 or match is None or match.group(1) is None:
        raise NotCarried(f"Exchange cannot hold the recurrence day {','.join(map(str, values))}")
    week = int(match.group(1))
    return (5 if week == -1 else week), DAYS.index(match.group(2)) + 1


def _recurrence(rule, start) -> Recurrence:
    rule = {k.upper(): v for k, v in rule.items()}
    freq = rule.pop("FREQ", [""])[0]
    interval = int(rule.pop("INTERVAL", [1])[0])
    first = (
        start if isinstance(start, dt.date) and not isinstance(start, dt.datetime) else start.date()
    )
    if freq == "DAILY":
        pattern = DailyPattern(interval=interval)
    elif freq == "WEEKLY":
        days = [d.upper() for d in rule.pop("BYDAY", [DAYS[first.weekday()]])]
        pattern = WeeklyPattern(interval=interval, weekdays=[DAYS.index(d) + 1 for d in days])
    elif freq == "MONTHLY" and "BYDAY" in rule:
        week, day = _nth(rule.pop("BYDAY"))
        pattern = RelativeMonthlyPattern(interval=interval, weekday=day, week_number=week)
    elif freq == "MONTHLY":
        day = int(rule.pop("BYMONTHDAY", [first.day])[0])
        pattern = AbsoluteMonthlyPattern(interval=interval, day_of_month=day)
    elif freq == "YEARLY" and interval == 1 and "BYDAY" in rule:
        week, day = _nth(rule.pop("BYDAY"))
        month = int(rule.pop("BYMONTH", [first.month])[0])
        pattern = RelativeYearlyPattern(weekday=day, week_number=week, month=month)
    elif freq == "YEARLY" and interval == 1:
        day = int(rule.pop("BYMONTHDAY", [first.day])[0])
        pattern = AbsoluteYearlyPattern(
            day_of_month=day, month=int(rule.pop("BYMONTH", [first.month])[0])
        )
    else:
        raise NotCarried(f"Exchange cannot hold the recurrence FREQ={freq}")
    if "COUNT" in rule:
        boundary = NumberedPattern(start=first, number=int(rule.pop("COUNT")[0]))
    elif "UNTIL" in rule:
        until = rule.pop("UNTIL")[0]
        until = until.date() if isinstance(until, dt.datetime) else until
        boundary = EndDatePattern(start=first, end=until)
    else:
        boundary = NoEndPattern(start=first)
    rule.pop("WKST", None)
    if rule:
        raise NotCarried(f"Exchange cannot hold the recurrence parts {', '.join(sorted(rule))}")
    return Recurrence(pattern=pattern, boundary=boundary)


def _list(value) -> list:
    return value if isinstance(value, list) else [value] if value is not None else []


def _event(component, account) -> CalendarItem:
    start = component.decoded("DTSTART")
    if "DTEND" in component:
        end = component.decoded("DTEND")
    else:
        end = start + (component.decoded("DURATION") if "DURATION" in component else dt.timedelta())
    all_day = not isinstance(start, dt.datetime)
    tz = EWSTimeZone("UTC") if all_day else _tz(start)
    item = CalendarItem(account=account, uid=str(component["UID"]),
                        subject=str(component.get("SUMMARY", "")), is_all_day=all_day,
                        start=_moment(start, tz),
                        end=_moment(end - dt.timedelta(days=1) if all_day else end, tz))  # fmt: skip
    item._start_timezone = item._end_timezone = tz
    if "RRULE" in component:
        item.recurrence = _recurrence(component["RRULE"], start)
    if "DESCRIPTION" in component:
        item.body = Body(str(component["DESCRIPTION"]))
    if "LOCATION" in component:
        item.location = str(component["LOCATION"])
    item.sensitivity = CLASS_BACK.get(str(component.get("CLASS", "")).upper(), "Normal")
    categories = []
    for value in _list(component.get("CATEGORIES")):
        categories += [str(c) for c in value.cats]
    item.categories = categories or None
    if str(component.get("TRANSP", "")).upper() == "TRANSPARENT":
        item.legacy_free_busy_status = "Free"
    required, optional, resources, rsvp = [], [], [], False
    for address in _list(component.get("ATTENDEE")):
        params = address.params
        box = Mailbox(email_address=str(address).split(":", 1)[-1], name=params.get("CN"))
        person = Attendee(mailbox=box, response_type=REPLY_BACK.get(
            str(params.get("PARTSTAT", "NEEDS-ACTION")).upper(), "Unknown"))  # fmt: skip
        role = str(params.get("ROLE", "REQ-PARTICIPANT")).upper()
        rsvp = rsvp or str(params.get("RSVP", "")).upper() == "TRUE"
        if params.get("CUTYPE", "").upper() == "RESOURCE":
            resources.append(person)
        else:
            (optional if role == "OPT-PARTICIPANT" else required).append(person)
    item.required_attendees = required or None
    item.optional_attendees = optional or None
    item.resources = resources or None
    item.is_response_requested = rsvp if (required or optional or resources) else None
    _attachments(component, item)
    alarms = [a for a in component.subcomponents if a.name == "VALARM"]
    if alarms and isinstance(alarms[0].decoded("TRIGGER"), dt.timedelta):
        minutes = -alarms[0].decoded("TRIGGER").total_seconds() / 60
        if minutes >= 0 and minutes == int(minutes):
            item.reminder_is_set, item.reminder_minutes_before_start = True, int(minutes)
    else:
        item.reminder_is_set = False
    return item


def _attachments(component, item) -> None:
    """Inline (base64) ATTACH values as file attachments; a link (URI) is not carried (the loss
    check names ATTACH)."""
    files = []
    for number, value in enumerate(_list(component.get("ATTACH")), start=1):
        if str(value.params.get("VALUE", "")).upper() != "BINARY":
            continue
        name = (
            value.params.get("X-FILENAME") or value.params.get("FILENAME") or f"attachment{number}"
        )
        files.append(FileAttachment(name=name, content=base64.b64decode(value.to_ical()),
                                    content_type=value.params.get("FMTTYPE",
                                                                  "application/octet-stream")))  # fmt: skip
    if files:
        item.attachments = files


def _task(component, account) -> Task:
    item = Task(account=account, subject=str(component.get("SUMMARY", "")))
    item.groupware_uid = str(component["UID"])
    if "DESCRIPTION" in component:
        item.body = Body(str(component["DESCRIPTION"]))
    for name, attr in (("DTSTART", "start_date"), ("DUE", "due_date")):
        if name in component:
            value = component.decoded(name)
            setattr(item, attr, _moment(value.date() if isinstance(value, dt.datetime) else value,
                                        None))  # fmt: skip
    item.status = STATUS_BACK.get(
        str(component.get("STATUS", "NEEDS-ACTION")).upper(), "NotStarted"
    )
    if "PERCENT-COMPLETE" in component:
        item.percent_complete = Decimal(int(component["PERCENT-COMPLETE"]))
    _attachments(component, item)
    priority = int(component.get("PRIORITY", 0) or 0)
    item.importance = "High" if 1 <= priority <= 4 else "Low" if priority >= 6 else "Normal"
    return item


def _flat(form, path=()) -> set:
    out = set()
    for name, lines, children in form:
        out |= {(path + (name,), line) for line in lines if line[0] not in IGNORED
                and not (name == "VALARM" and line[0] == "DESCRIPTION")}  # fmt: skip
        out |= _flat(children, path + (name,))
    return out


def _without_email_types(text: str) -> str:
    out = []
    for line in unfolded_lines(text):
        if line.upper().startswith("EMAIL;"):
            line = "EMAIL:" + line.split(":", 1)[1]
        out.append(line)
    return "\r\n".join(out) + "\r\n"


@dataclass
class Converted:
    """What to write: the item, and for a recurring meeting the instances to cancel and the
    instances to change (1-based instance numbers, as EWS's ``InstanceIndex``)."""

    item: object
    cancelled: list[int] = field(default_factory=list)
    moved: list[tuple[int, CalendarItem]] = field(default_factory=list)


def _as_datetime(value) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.combine(value, dt.time())


def _instance_numbers(master):
    """A function: an instance's start (RECURRENCE-ID or EXDATE value) -> its number."""
    start = _as_datetime(master.decoded("DTSTART"))
    rule = rrulestr(master["RRULE"].to_ical().decode(), dtstart=start)

    def number(target) -> int:
        target = _as_datetime(target)
        if (target.tzinfo is None) != (start.tzinfo is None):
            raise NotCarried(f"instance {target} and the series differ in time zone use")
        for count, when in enumerate(rule, start=1):
            if when == target:
                return count
            if when > target or count > MAX_INSTANCES:
                break
        raise NotCarried(f"{target} is not an instance of the series")

    return number


def _meeting(parts: list, account) -> Converted:
    masters = [c for c in parts if "RECURRENCE-ID" not in c]
    if len(masters) != 1:
        raise NotCarried("Exchange needs the series of overridden instances (no master found)")
    master = masters[0]
    item = _event(master, account)
    converted = Converted(item)
    if "RRULE" not in master:
        if len(parts) > 1:
            raise NotCarried("overridden instances without a recurrence")
        return converted
    number = _instance_numbers(master)
    gone = []
    for value in _list(master.get("EXDATE")):
        for entry in value.dts:
            converted.cancelled.append(number(entry.dt))
            gone.append(DeletedOccurrence(start=_moment(_as_datetime(entry.dt), UTC)))
    item.deleted_occurrences = gone or None  # read back by the loss check only
    for part in parts:
        if part is master:
            continue
        exception = _event(part, account)
        original = part.decoded("RECURRENCE-ID")
        exception.original_start = _moment(_as_datetime(original), UTC)
        converted.moved.append((number(original), exception))
    return converted


def to_exchange(text: str, account, contacts: dict[str, KnownContact] | None = None) -> Converted:
    """The exchangelib item (unsaved) holding ``text``; :class:`NotCarried` when it cannot.
    ``contacts`` (UID -> contact on Exchange) resolves a group's members."""
    contacts = contacts or {}
    try:
        if "BEGIN:VCARD" in text.upper()[:200]:
            converted = Converted(card_item(text, account, contacts))
        else:
            calendar = icalendar.Calendar.from_ical(text)
            parts = [c for c in calendar.subcomponents if c.name in ("VEVENT", "VTODO")]
            if parts and all(c.name == "VEVENT" for c in parts):
                converted = _meeting(parts, account)
            elif len(parts) == 1:
                converted = Converted(_task(parts[0], account))
            else:
                raise NotCarried("Exchange holds one task or one event series per item")
    except (NotCarried, MissingMember):
        raise
    except (ValueError, KeyError, AttributeError, vobject.base.ParseError) as exc:
        raise ContentError(f"not readable for Exchange: {type(exc).__name__}: {exc}") from None
    uids = {known.item_id: uid for uid, known in contacts.items()}
    rendered = item_text(converted.item, [e for _, e in converted.moved], uids)
    lost = _flat(canonical(_without_email_types(text))) ^ _flat(
        canonical(_without_email_types(rendered))
    )
    names = sorted({line[0] for _, line in lost})
    if "DURATION" in names:  # DTSTART + DURATION is held as the end it means
        names = [n for n in names if n not in ("DTEND", "DURATION")]
    if names:
        raise NotCarried(f"Exchange cannot hold {', '.join(names)} as written")
    return converted
