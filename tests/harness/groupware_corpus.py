"""Groupware test corpus: the hard cases of a calendar, task and contact migration, written to a
DAV account as a client would (PUT of iCalendar and vCard texts made here, not by a library).

- ``Calendar`` (the default): a weekly meeting in Europe/Berlin across the end of DST
  (2026-10-25) with one instance moved and one cancelled, organizer and 50 attendees with their
  PARTSTAT replies, an alarm, categories, classification and an inline attachment; an all-day
  event; a floating-time event.
- ``Work`` (red): one UTC event.
- ``Tasks`` (VTODO only): a parent task with two subtasks (RELATED-TO), one completed.
- address book ``Contacts``: a contact with a photo, two addresses, three phones, two emails and
  a birthday; a second contact; a group holding both (Apple's X-ADDRESSBOOKSERVER form).
"""

from __future__ import annotations

import base64

from mailmigrate.groupware.content import canonical, unfolded_lines
from mailmigrate.groupware.dav import ADDRESSBOOK, CALENDAR, Collection, DavAccount, DavEndpoint

# a 1x1 PNG, folded as servers fold it
PHOTO = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005fe02fea7d6"
    "a4a90000000049454e44ae426082")).decode()  # fmt: skip
ATTACHMENT = base64.b64encode(b"agenda: budget, hiring, offsite\n" * 4).decode()

BERLIN = """BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE"""


def _calendar(*components: str) -> str:
    body = "\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//mailmigrate//corpus//EN",
                      *components, "END:VCALENDAR"])  # fmt: skip
    return body.replace("\n", "\r\n") + "\r\n"


def _attendees(count: int) -> list[str]:
    replies = ("ACCEPTED", "DECLINED", "TENTATIVE", "NEEDS-ACTION")
    return [f'ATTENDEE;CN="Guest {n}, Team";ROLE=REQ-PARTICIPANT;PARTSTAT={replies[n % 4]};'
            f"RSVP=TRUE:mailto:guest{n}@example.org" for n in range(count)]  # fmt: skip


def weekly_meeting(summary: str = "Weekly planning") -> str:
    common = ["ORGANIZER;CN=Owner:mailto:owner@example.org", *_attendees(50)]
    master = ["BEGIN:VEVENT", "UID:weekly-meeting@corpus", "DTSTAMP:20260901T080000Z",
              "DTSTART;TZID=Europe/Berlin:20261005T100000",
              "DTEND;TZID=Europe/Berlin:20261005T110000",
              "RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=8", "EXDATE;TZID=Europe/Berlin:20261019T100000",
              f"SUMMARY:{summary}", "CLASS:CONFIDENTIAL", "CATEGORIES:Planning,Team",
              "DESCRIPTION:Agenda in the attachment\\, minutes afterwards.",
              f"ATTACH;FMTTYPE=text/plain;ENCODING=BASE64;VALUE=BINARY:{ATTACHMENT}",
              *common, "BEGIN:VALARM", "ACTION:DISPLAY", "DESCRIPTION:Planning",
              "TRIGGER:-PT15M", "END:VALARM", "END:VEVENT"]  # fmt: skip
    moved = ["BEGIN:VEVENT", "UID:weekly-meeting@corpus", "DTSTAMP:20260901T080000Z",
             "RECURRENCE-ID;TZID=Europe/Berlin:20261026T100000",
             "DTSTART;TZID=Europe/Berlin:20261027T140000",
             "DTEND;TZID=Europe/Berlin:20261027T150000", f"SUMMARY:{summary} (moved)",
             "SEQUENCE:1", *common, "END:VEVENT"]  # fmt: skip
    return _calendar(BERLIN, *master, *moved)


ALL_DAY = _calendar("BEGIN:VEVENT", "UID:all-day@corpus", "DTSTAMP:20260901T080000Z",
                    "DTSTART;VALUE=DATE:20261224", "DTEND;VALUE=DATE:20261227",
                    "SUMMARY:Holidays", "TRANSP:TRANSPARENT", "END:VEVENT")  # fmt: skip
FLOATING = _calendar("BEGIN:VEVENT", "UID:floating@corpus", "DTSTAMP:20260901T080000Z",
                     "DTSTART:20261103T090000", "DURATION:PT30M", "SUMMARY:Standup (floating)",
                     "LOCATION:Room 4\\; second floor", "END:VEVENT")  # fmt: skip
WORK = _calendar("BEGIN:VEVENT", "UID:work-review@corpus", "DTSTAMP:20260901T080000Z",
                 "DTSTART:20261110T130000Z", "DTEND:20261110T140000Z", "SUMMARY:Review",
                 "CLASS:PRIVATE", "END:VEVENT")  # fmt: skip


def _task(uid: str, summary: str, *extra: str) -> str:
    return _calendar("BEGIN:VTODO", f"UID:{uid}", "DTSTAMP:20260901T080000Z",
                     f"SUMMARY:{summary}", *extra, "END:VTODO")  # fmt: skip


TASKS = {
    "move-office@corpus": _task(
        "move-office@corpus",
        "Move office",
        "DUE:20261130T170000Z",
        "STATUS:IN-PROCESS",
        "PRIORITY:1",
        "PERCENT-COMPLETE:50",
    ),
    "pack-boxes@corpus": _task(
        "pack-boxes@corpus",
        "Pack boxes",
        "STATUS:COMPLETED",
        "COMPLETED:20261020T120000Z",
        "PERCENT-COMPLETE:100",
        "RELATED-TO;RELTYPE=PARENT:move-office@corpus",
    ),
    "book-van@corpus": _task(
        "book-van@corpus",
        "Book a van",
        "DUE;VALUE=DATE:20261115",
        "STATUS:NEEDS-ACTION",
        "RELATED-TO:move-office@corpus",
    ),
}


def _card(*lines: str) -> str:
    return "\r\n".join(["BEGIN:VCARD", "VERSION:3.0", *lines, "END:VCARD"]) + "\r\n"


CONTACTS = {
    "ada@corpus": _card(
        "UID:ada@corpus",
        "FN:Ada Lovelace",
        "N:Lovelace;Ada;;;",
        "ORG:Analytical Engines",
        "BDAY:1815-12-10",
        "EMAIL;TYPE=INTERNET,WORK:ada@work.example",
        "EMAIL;TYPE=INTERNET,HOME:ada@home.example",
        "TEL;TYPE=WORK,VOICE:+44 20 7946 0000",
        "TEL;TYPE=CELL:+44 7700 900000",
        "TEL;TYPE=HOME:+44 20 7946 0001",
        "ADR;TYPE=WORK:;;1 Engine Row;London;;EC1A 1BB;United Kingdom",
        "ADR;TYPE=HOME:;;12 St James's Square;London;;SW1Y 4JH;United Kingdom",
        f"PHOTO;ENCODING=b;TYPE=PNG:{PHOTO}",
        "NOTE:Prefers letters\\, not calls.",
    ),
    "charles@corpus": _card(
        "UID:charles@corpus",
        "FN:Charles Babbage",
        "N:Babbage;Charles;;;",
        "EMAIL;TYPE=INTERNET:charles@example.org",
    ),
    "engines-group@corpus": _card(
        "UID:engines-group@corpus",
        "FN:Engine team",
        "N:Engine team;;;;",
        "X-ADDRESSBOOKSERVER-KIND:group",
        "X-ADDRESSBOOKSERVER-MEMBER:urn:uuid:ada@corpus",
        "X-ADDRESSBOOKSERVER-MEMBER:urn:uuid:charles@corpus",
    ),
}

EVENTS = {"weekly-meeting@corpus": weekly_meeting(), "all-day@corpus": ALL_DAY,
          "floating@corpus": FLOATING}  # fmt: skip

COLLECTIONS = [
    (Collection(CALENDAR, "", "Calendar", None, ("VEVENT",)), "calendar", EVENTS),
    (
        Collection(CALENDAR, "", "Work", "#D0312DFF", ("VEVENT",)),
        "work",
        {"work-review@corpus": WORK},
    ),
    (Collection(CALENDAR, "", "Tasks", "#2D8ED0FF", ("VTODO",)), "tasks", TASKS),
    (Collection(ADDRESSBOOK, "", "Contacts", None), "contacts", CONTACTS),
]


def populate(account: DavAccount) -> dict[str, str]:
    """Write the corpus into ``account`` (creating collections it lacks by name); returns
    collection name -> href."""
    existing = {c.name: c for c in account.collections()}
    hrefs = {}
    for template, path, items in COLLECTIONS:
        collection = existing.get(template.name)
        if collection is None or collection.kind != template.kind:
            home = account.home(template.kind).rstrip("/")
            collection = account.create(template, f"{home}/corpus-{path}/")
        hrefs[template.name] = collection.href
        for uid, text in items.items():
            account.put(
                template.kind,
                f"{collection.href}{uid}.{'ics' if template.kind == CALENDAR else 'vcf'}",
                text,
                None,
            )
    return hrefs


def snapshot(endpoint: DavEndpoint) -> dict[str, tuple[object, dict[str, tuple]]]:
    """collection name -> ((kind, colour), {uid: canonical form}) of one account."""
    account = endpoint.open()  # a DAV or an Exchange account (groupware/side.py)
    try:
        out = {}
        for collection in account.collections():
            listing = account.listing(collection)
            items = account.fetch(collection, list(listing.etags))
            texts = [content for content, _ in items.values()]
            by_uid = {}
            for text in texts:
                uid = next(line[4:] for line in unfolded_lines(text) if line.startswith("UID:"))
                by_uid[uid] = canonical(text)
            out[collection.name] = ((collection.kind, collection.color), by_uid)
        return out
    finally:
        account.close()
