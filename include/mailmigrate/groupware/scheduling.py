"""No migration ever emails anyone: what the copy does about servers that schedule (RFC 6638).

A CalDAV server with implicit scheduling (it announces ``calendar-auto-schedule``) sends
invitations when an organizer's event with attendees is PUT, and replies when an attendee's
is. The copy therefore writes every item with ``Schedule-Reply: F`` and, on such servers, with
``SCHEDULE-AGENT=CLIENT`` on ORGANIZER and every ATTENDEE (RFC 6638 §7.1: the server must not
schedule for them).

Not every server honours that parameter (Xandikos 0.4.10 schedules anyway, and sends iMIP mail
when it is configured to). So before the first meeting goes to a scheduling destination,
:func:`probe` writes one probe event there, organised by the account itself, whose only
attendee (marked ``SCHEDULE-AGENT=CLIENT``) is at the reserved ``.invalid`` domain (RFC 6761:
nothing sent to it can reach anyone), reads it back and deletes it. The server's
``SCHEDULE-STATUS`` on that attendee tells what it would do for real attendees:

- none: it honours ``SCHEDULE-AGENT=CLIENT``; meetings are copied;
- ``3.x`` (invalid calendar user, no authority): it schedules but delivers nothing outside
  itself; meetings are copied;
- anything else (``1.x`` sent or pending, ``5.x`` delivery failed, ``2.0``): it would send
  invitations; meetings with attendees are not copied to it and each is reported, until its
  outbound scheduling mail is turned off.
"""

from __future__ import annotations

import secrets

from mailmigrate.errors import DavError
from mailmigrate.groupware.content import unfolded_lines
from mailmigrate.groupware.dav import CALENDAR, Collection, DavAccount

PROBE_ATTENDEE = "mailto:scheduling-probe@mailmigrate.invalid"
HONOURS, LOCAL_ONLY, SENDS = "honours SCHEDULE-AGENT=CLIENT", "delivers nothing outside", "sends"


def is_meeting(content: str) -> bool:
    """Whether an item would make a scheduling server send something: it has attendees."""
    return any(line[:8].upper() == "ATTENDEE" for line in unfolded_lines(content))


def probe(account: DavAccount, calendar: Collection) -> str:
    """What ``account``'s server does with a ``SCHEDULE-AGENT=CLIENT`` attendee (see the module
    docstring). Servers without implicit scheduling are :data:`HONOURS` without a probe."""
    if not account.schedules:
        return HONOURS
    organizer = next((a for a in account.addresses if a.lower().startswith("mailto:")), None)
    if organizer is None:
        return HONOURS  # no address of its own: the server cannot see it as an organizer
    uid = f"mailmigrate-scheduling-probe-{secrets.token_hex(8)}"
    text = "\r\n".join([
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//mailmigrate//scheduling probe//EN",
        "BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20000101T000000Z",
        "DTSTART:20000101T000000Z", "DURATION:PT1M", "SUMMARY:mailmigrate scheduling probe",
        f"ORGANIZER;SCHEDULE-AGENT=CLIENT:{organizer}",
        f"ATTENDEE;SCHEDULE-AGENT=CLIENT;RSVP=FALSE:{PROBE_ATTENDEE}",
        "END:VEVENT", "END:VCALENDAR", "",
    ])  # fmt: skip
    href = f"{calendar.href}{uid}.ics"
    account.put(CALENDAR, href, text, None)
    try:
        stored = account.fetch(calendar, [href]).get(href, ("", None))[0]
    finally:
        try:
            account.delete(href, None)
        except DavError:
            pass  # a leftover probe in the past harms no one; the copy goes on
    statuses = [line for line in unfolded_lines(stored)
                if line.upper().startswith("ATTENDEE") and "SCHEDULE-STATUS=" in line.upper()]  # fmt: skip
    if not statuses:
        return HONOURS
    code = statuses[0].upper().split("SCHEDULE-STATUS=", 1)[1].lstrip('"')
    return LOCAL_ONLY if code.startswith("3.") else SENDS
