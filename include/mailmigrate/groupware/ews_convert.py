"""Exchange items as iCalendar and vCard text, and back (exchangelib items; icalendar and vobject
read what comes in, the text going out is written here line by line, like content.py reads it).

What maps (everything else is not carried; :func:`~mailmigrate.groupware.ews_parse.to_exchange`
names what an item would lose so the copy reports it instead of writing less than it read):

- **Events** (``CalendarItem``): UID, SUMMARY, DESCRIPTION (text body), LOCATION, DTSTART/DTEND
  with their time zone (IANA name; Exchange stores a Windows zone, exchangelib maps it), all-day
  dates, RRULE (daily, weekly by days, monthly by date or by n-th weekday, yearly by date or by
  n-th weekday of a month; COUNT, UNTIL or no end; INTERVAL), cancelled instances as EXDATE (Exchange's deleted occurrences), changed
  instances as RECURRENCE-ID components (its modified occurrences, with their own times,
  summary, attendees...), CLASS (sensitivity), CATEGORIES, TRANSP (free/busy), ORGANIZER and
  ATTENDEE (required, optional, resources) with their replies (PARTSTAT) and RSVP, one display
  alarm (the reminder), inline ATTACH values (file attachments).
- **Tasks** (``Task``): UID, SUMMARY, DESCRIPTION, DTSTART and DUE (dates: Exchange keeps no
  time), STATUS, PERCENT-COMPLETE, COMPLETED (Exchange sets it when a task is completed), PRIORITY
  (importance), inline ATTACH values.
- **Contacts** (``Contact``): UID, FN, N (family, given, middle), ORG (company, department),
  TITLE, BDAY, NOTE, up to three EMAIL, TEL (work, home, cell, fax, other; two each for work and
  home), ADR (work, home, other), PHOTO (the contact photo attachment).
- **Groups** (``DistributionList``; written by :mod:`~mailmigrate.groupware.ews_cards`): a vCard group (``X-ADDRESSBOOKSERVER-KIND``)
  whose members are the account's contacts by UID, other addresses by ``mailto:``.

Not carried: vCard 4 groups (rendered in Apple's form), attachments of changed instances, linked (URI) attachments,
floating times, RELATED-TO (subtasks), more than one alarm, N prefixes and suffixes. Contacts
and tasks have no UID on Exchange: the UID lives in an extended property
(:class:`GroupwareUid`); an item created in Outlook gets ``ews-<digest of its id>``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re

import icalendar
from exchangelib import (
    CalendarItem,
    Contact,
    DistributionList,
    EWSTimeZone,
    Task,
)
from exchangelib.attachments import FileAttachment
from exchangelib.extended_properties import ExtendedProperty
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    AbsoluteYearlyPattern,
    DailyPattern,
    EndDatePattern,
    NumberedPattern,
    Recurrence,
    RelativeMonthlyPattern,
    RelativeYearlyPattern,
    WeeklyPattern,
)

from mailmigrate.errors import ContentError

EWS_UTC = EWSTimeZone("UTC")
PRODID = "PRODID:-//mailmigrate//Exchange groupware//EN"
DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]  # exchangelib: weekday 1 = Monday
REPLY = {"Accept": "ACCEPTED", "Decline": "DECLINED", "Tentative": "TENTATIVE"}
REPLY_BACK = {v: k for k, v in REPLY.items()} | {"NEEDS-ACTION": "NoResponseReceived"}
CLASS = {"Private": "PRIVATE", "Confidential": "CONFIDENTIAL", "Personal": "X-PERSONAL"}
CLASS_BACK = {v: k for k, v in CLASS.items()}
STATUS = {"NotStarted": "NEEDS-ACTION", "InProgress": "IN-PROCESS", "Completed": "COMPLETED",
          "Deferred": "CANCELLED", "WaitingOnOthers": "X-WAITING"}  # fmt: skip
STATUS_BACK = {v: k for k, v in STATUS.items()}
PRIORITY = {"High": "1", "Low": "9"}
PHONES = {"BusinessPhone": "WORK,VOICE", "BusinessPhone2": "WORK,VOICE", "HomePhone": "HOME",
          "HomePhone2": "HOME", "MobilePhone": "CELL", "BusinessFax": "WORK,FAX",
          "HomeFax": "HOME,FAX", "OtherTelephone": "VOICE"}  # fmt: skip
ADDRESSES = {"Business": "WORK", "Home": "HOME", "Other": "OTHER"}
ADDRESSES_BACK = {v: k for k, v in ADDRESSES.items()}


class GroupwareUid(ExtendedProperty):
    """The iCalendar/vCard UID of a contact or task (Exchange has no such field for them)."""

    distinguished_property_set_id = "PublicStrings"
    property_name = "mailmigrate-groupware-uid"
    property_type = "String"


for _cls in (Contact, Task, DistributionList):
    try:
        _cls.register("groupware_uid", GroupwareUid)
    except ValueError:  # already registered (a reload)
        pass


def escape(text: str) -> str:
    return (text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n"))  # fmt: skip


def _param(value: str) -> str:
    return f'"{value}"' if any(c in value for c in ",;:") else value


def _fold(lines: list[str]) -> str:
    out = []
    for line in lines:
        while len(line) > 74:
            out.append(line[:74])
            line = " " + line[74:]
        out.append(line)
    return "\r\n".join(out) + "\r\n"


def item_uid(item) -> str:
    """The UID an Exchange item is known by (see the module docstring)."""
    uid = getattr(item, "uid", None) if isinstance(item, CalendarItem) else item.groupware_uid
    return uid or id_uid(item.id)


def id_uid(item_id: str) -> str:
    """The UID of an item created outside mailmigrate, from its (stable) Exchange id."""
    return "ews-" + hashlib.sha256(item_id.encode()).hexdigest()[:24]


# -- Exchange -> text --------------------------------------------------------------------------


def _when(name: str, value, tz) -> str:
    if isinstance(value, dt.datetime):
        key = getattr(tz, "key", "UTC")
        if key in ("UTC", "Etc/UTC", "GMT"):
            return f"{name}:{value.astimezone(EWS_UTC):%Y%m%dT%H%M%SZ}"
        return f"{name};TZID={key}:{value.astimezone(tz):%Y%m%dT%H%M%S}"
    return f"{name};VALUE=DATE:{value:%Y%m%d}"


def _nth(pattern) -> str:
    """``2MO``, ``-1FR``: the day of a relative pattern (Exchange's "last" is -1)."""
    day, week = int(pattern.weekday), int(pattern.week_number)
    if day > 7:
        raise ContentError("a recurrence on 'a day', 'a weekday' or 'a weekend day' is not carried")
    return f"{-1 if week == 5 else week}{DAYS[day - 1]}"


def _rrule(recurrence: Recurrence, tz) -> str:
    pattern, boundary = recurrence.pattern, recurrence.boundary
    if isinstance(pattern, DailyPattern):
        parts = ["FREQ=DAILY"]
    elif isinstance(pattern, WeeklyPattern):
        days = ",".join(DAYS[int(d) - 1] for d in pattern.weekdays)
        parts = ["FREQ=WEEKLY", f"BYDAY={days}"]
    elif isinstance(pattern, AbsoluteMonthlyPattern):
        parts = ["FREQ=MONTHLY", f"BYMONTHDAY={pattern.day_of_month}"]
    elif isinstance(pattern, AbsoluteYearlyPattern):
        parts = ["FREQ=YEARLY", f"BYMONTH={int(pattern.month)}",
                 f"BYMONTHDAY={pattern.day_of_month}"]  # fmt: skip
    elif isinstance(pattern, RelativeMonthlyPattern):
        parts = ["FREQ=MONTHLY", f"BYDAY={_nth(pattern)}"]
    elif isinstance(pattern, RelativeYearlyPattern):
        parts = ["FREQ=YEARLY", f"BYMONTH={int(pattern.month)}", f"BYDAY={_nth(pattern)}"]
    else:
        raise ContentError(f"recurrence {type(pattern).__name__} is not carried")
    if getattr(pattern, "interval", 1) not in (None, 1):
        parts.append(f"INTERVAL={pattern.interval}")
    if isinstance(boundary, NumberedPattern):
        parts.append(f"COUNT={boundary.number}")
    elif isinstance(boundary, EndDatePattern):
        parts.append(f"UNTIL={boundary.end:%Y%m%d}")
    return "RRULE:" + ";".join(parts)


def event_text(item: CalendarItem, exceptions=()) -> str:
    """A calendar item as an iCalendar resource (see the module docstring for what maps), with
    its ``exceptions`` (the items of its modified occurrences) as overridden instances."""
    tz = item._start_timezone or EWSTimeZone("UTC")
    events = _vevent(item, item_uid(item), tz)
    for exception in sorted(exceptions, key=lambda e: e.original_start or e.start):
        events += _vevent(exception, item_uid(item), tz, item.is_all_day)
    first = item.start if isinstance(item.start, dt.date) else None
    return _fold(["BEGIN:VCALENDAR", "VERSION:2.0", PRODID, *_timezones(events, first), *events,
                  "END:VCALENDAR"])  # fmt: skip


def _timezones(lines: list[str], first: dt.date | None) -> list[str]:
    """A VTIMEZONE for each TZID the lines use (RFC 5545 wants them; from the IANA database,
    from a year before the item to 2038)."""
    out = []
    names = sorted(
        {m.group(1) for line in lines for m in [re.search(r";TZID=([^;:]+)", line)] if m}
    )
    start = (first if not isinstance(first, dt.datetime) else first.date()) or dt.date(1970, 1, 1)
    for name in names:
        try:
            zone = icalendar.Timezone.from_tzid(name, first_date=start - dt.timedelta(days=366))
        except Exception:  # noqa: BLE001 - a zone the database lacks: the TZID alone stays
            continue
        out += zone.to_ical().decode().replace("\r\n ", "").splitlines()
    return out


def _vevent(item: CalendarItem, uid: str, tz, master_all_day: bool | None = None) -> list[str]:
    start, end = item.start, item.end
    if item.is_all_day:
        end = end + dt.timedelta(days=1)  # exchangelib's all-day end is the last day
    lines = ["BEGIN:VEVENT", f"UID:{uid}",
             f"DTSTAMP:{(item.last_modified_time or dt.datetime.now(dt.UTC)):%Y%m%dT%H%M%SZ}"]  # fmt: skip
    if master_all_day is not None:  # an overridden instance: which one it replaces
        original = item.original_start or item.recurrence_id
        lines.append(_when("RECURRENCE-ID", original.date() if master_all_day else original, tz))
    lines += [_when("DTSTART", start, item._start_timezone or tz),
              _when("DTEND", end, item._end_timezone or tz)]  # fmt: skip
    if item.recurrence is not None and master_all_day is None:
        lines.append(_rrule(item.recurrence, tz))
        for gone in item.deleted_occurrences or []:
            value = gone.start.date() if item.is_all_day else gone.start
            lines.append(_when("EXDATE", value, tz))
    lines.append(f"SUMMARY:{escape(item.subject or '')}")
    if item.text_body or item.body:
        lines.append(f"DESCRIPTION:{escape(str(item.text_body or item.body))}")
    if item.location:
        lines.append(f"LOCATION:{escape(item.location)}")
    if item.sensitivity in CLASS:
        lines.append(f"CLASS:{CLASS[item.sensitivity]}")
    if item.categories:
        lines.append("CATEGORIES:" + ",".join(escape(c) for c in item.categories))
    if item.legacy_free_busy_status == "Free":
        lines.append("TRANSP:TRANSPARENT")
    people = [(a, "REQ-PARTICIPANT") for a in item.required_attendees or []]
    people += [(a, "OPT-PARTICIPANT") for a in item.optional_attendees or []]
    people += [(a, "NON-PARTICIPANT") for a in item.resources or []]
    if people and item.organizer is not None:
        name = f";CN={_param(item.organizer.name)}" if item.organizer.name else ""
        lines.append(f"ORGANIZER{name}:mailto:{item.organizer.email_address}")
    for attendee, role in people:
        box = attendee.mailbox
        params = [f"CN={_param(box.name)}"] if box.name else []
        if role == "NON-PARTICIPANT":
            params.append("CUTYPE=RESOURCE")
        params += [f"ROLE={role}", f"PARTSTAT={REPLY.get(attendee.response_type, 'NEEDS-ACTION')}"]
        if item.is_response_requested:
            params.append("RSVP=TRUE")
        lines.append(f"ATTENDEE;{';'.join(params)}:mailto:{box.email_address}")
    if master_all_day is None:
        lines += attach_lines(item)
    if item.reminder_is_set:
        minutes = int(item.reminder_minutes_before_start or 0)
        lines += ["BEGIN:VALARM", "ACTION:DISPLAY", "DESCRIPTION:Reminder",
                  f"TRIGGER:-PT{minutes}M", "END:VALARM"]  # fmt: skip
    return [*lines, "END:VEVENT"]


def task_text(item: Task) -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", PRODID, "BEGIN:VTODO", f"UID:{item_uid(item)}",
             f"DTSTAMP:{(item.last_modified_time or dt.datetime.now(dt.UTC)):%Y%m%dT%H%M%SZ}",
             f"SUMMARY:{escape(item.subject or '')}"]  # fmt: skip
    if item.text_body or item.body:
        lines.append(f"DESCRIPTION:{escape(str(item.text_body or item.body))}")
    if item.start_date:
        lines.append(f"DTSTART;VALUE=DATE:{item.start_date:%Y%m%d}")
    if item.due_date:
        lines.append(f"DUE;VALUE=DATE:{item.due_date:%Y%m%d}")
    lines.append(f"STATUS:{STATUS.get(item.status or 'NotStarted', 'NEEDS-ACTION')}")
    if item.percent_complete:
        lines.append(f"PERCENT-COMPLETE:{int(item.percent_complete)}")
    if item.complete_date and item.status == "Completed":
        lines.append(f"COMPLETED:{item.complete_date.astimezone(EWS_UTC):%Y%m%dT%H%M%SZ}")
    if item.importance in PRIORITY:
        lines.append(f"PRIORITY:{PRIORITY[item.importance]}")
    lines += attach_lines(item)
    return _fold([*lines, "END:VTODO", "END:VCALENDAR"])


def contact_text(item: Contact) -> str:
    name = [item.surname or "", item.given_name or "", item.middle_name or "", "", ""]
    lines = ["BEGIN:VCARD", "VERSION:3.0", f"UID:{item_uid(item)}",
             f"FN:{escape(item.display_name or '')}",
             "N:" + ";".join(escape(part) for part in name)]  # fmt: skip
    if item.company_name or item.department:
        org = [escape(item.company_name or "")] + (
            [escape(item.department)] if item.department else []
        )
        lines.append("ORG:" + ";".join(org))
    if item.job_title:
        lines.append(f"TITLE:{escape(item.job_title)}")
    if item.birthday:
        lines.append(f"BDAY:{item.birthday:%Y-%m-%d}")
    for address in sorted(item.email_addresses or [], key=lambda a: a.label):
        lines.append(f"EMAIL;TYPE=INTERNET:{address.email}")
    for phone in sorted(item.phone_numbers or [], key=lambda p: p.label):
        if phone.phone_number:
            lines.append(f"TEL;TYPE={PHONES.get(phone.label, 'VOICE')}:{phone.phone_number}")
    for adr in sorted(item.physical_addresses or [], key=lambda a: a.label):
        parts = ["", "", adr.street or "", adr.city or "", adr.state or "", adr.zipcode or "",
                 adr.country or ""]  # fmt: skip
        lines.append(f"ADR;TYPE={ADDRESSES[adr.label]}:" + ";".join(escape(p) for p in parts))
    if item.text_body or item.body:
        lines.append(f"NOTE:{escape(str(item.text_body or item.body))}")
    photo = next((a for a in _files(item) if a.is_contact_photo), None)
    if photo is not None:
        kind = (photo.content_type or "image/jpeg").split("/")[-1].upper()
        lines.append(f"PHOTO;ENCODING=b;TYPE={kind}:{base64.b64encode(photo.content).decode()}")
    return _fold([*lines, "END:VCARD"])


def _files(item) -> list[FileAttachment]:
    return [a for a in item.attachments or [] if isinstance(a, FileAttachment)]


def attach_lines(item) -> list[str]:
    """An event's or task's file attachments as inline ATTACH values (the name as X-FILENAME
    unless it is one given here to a nameless one, ``attachment<n>``)."""
    out = []
    for file in _files(item):
        if file.is_contact_photo:
            continue
        params = [f"FMTTYPE={file.content_type or 'application/octet-stream'}", "ENCODING=BASE64",
                  "VALUE=BINARY"]  # fmt: skip
        if file.name and not re.fullmatch(r"attachment\d+", file.name):
            params.append(f"X-FILENAME={_param(file.name)}")
        out.append(f"ATTACH;{';'.join(params)}:{base64.b64encode(file.content).decode()}")
    return out


def group_text(item: DistributionList, uids: dict[str, str]) -> str:
    """A distribution list as a vCard group (Apple's form, as the DAV corpus writes it): a
    member that is a contact of the account (``uids``: item id -> UID) by its UID, any other
    by its address."""
    lines = ["BEGIN:VCARD", "VERSION:3.0", f"UID:{item_uid(item)}",
             f"FN:{escape(item.display_name or '')}", f"N:{escape(item.display_name or '')};;;;",
             "X-ADDRESSBOOKSERVER-KIND:group"]  # fmt: skip
    for member in item.members or []:
        box = member.mailbox
        # a member contact by its UID; one gone since (or not listed) by the UID of its id,
        # so that the group's text does not change with its members' lifetimes
        contact = (uids.get(box.item_id.id) or id_uid(box.item_id.id)) if box.item_id else None
        target = f"urn:uuid:{contact}" if contact else f"mailto:{box.email_address}"
        lines.append(f"X-ADDRESSBOOKSERVER-MEMBER:{target}")
    return _fold([*lines, "END:VCARD"])


def item_text(item, exceptions=(), uids: dict[str, str] | None = None) -> str:
    """The text of an Exchange item (``exceptions``: a recurring meeting's modified
    occurrences; ``uids``: contact item id -> UID, for a distribution list's members)."""
    if isinstance(item, CalendarItem):
        return event_text(item, exceptions)
    if isinstance(item, DistributionList):
        return group_text(item, uids or {})
    if isinstance(item, Task):
        return task_text(item)
    if isinstance(item, Contact):
        return contact_text(item)
    raise ContentError(f"{type(item).__name__} items are not carried")
