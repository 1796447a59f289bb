"""The canonical form two groupware copies are compared in: equal through every rewrite a server
may legitimately make, different for every change the copy definition protects."""

from __future__ import annotations

import pytest
from harness import groupware_corpus as corpus

from mailmigrate.errors import ContentError
from mailmigrate.groupware.content import canonical, components_of, uid_of, without_scheduling
from mailmigrate.groupware.scheduling import is_meeting

MEETING = corpus.weekly_meeting()


def fold(text: str, width: int = 40) -> str:
    out = []
    for line in text.split("\r\n"):
        while len(line) > width:
            out.append(line[:width])
            line = " " + line[width:]
        out.append(line)
    return "\r\n".join(out)


def reorder(text: str) -> str:
    """Each component's properties in reverse order (BEGIN/END lines stay in place)."""
    lines, out, block = text.split("\r\n"), [], []
    for line in lines:
        if line.startswith(("BEGIN:", "END:")):
            out += reversed(block)
            block = []
            out.append(line)
        else:
            block.append(line)
    return "\r\n".join(out + block)


REWRITES = {
    "folded": fold,
    "reordered": reorder,
    "lf line ends": lambda t: t.replace("\r\n", "\n"),
    "new PRODID and DTSTAMP": lambda t: t.replace("PRODID:-//mailmigrate//corpus//EN",
                                                  "PRODID:-//Server//X")
    .replace("DTSTAMP:20260901T080000Z", "DTSTAMP:20261201T000000Z"),
    "LAST-MODIFIED added": lambda t: t.replace("END:VEVENT", "LAST-MODIFIED:20261201T000000Z\r\nEND:VEVENT"),
    "rrule parts reordered": lambda t: t.replace("FREQ=WEEKLY;BYDAY=MO;COUNT=8", "COUNT=8;FREQ=WEEKLY;BYDAY=MO"),
    "vtimezone respelled": lambda t: t.replace("TZNAME:CEST\r\n", ""),
    "scheduling marks": without_scheduling,
    "schedule-status": lambda t: t.replace("RSVP=TRUE:", "RSVP=TRUE;SCHEDULE-STATUS=1.1:"),
    "parameter order and case": lambda t: t.replace("ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED",
                                                    "partstat=ACCEPTED;role=REQ-PARTICIPANT"),
}  # fmt: skip

CHANGES = {
    "reply changed": lambda t: t.replace("PARTSTAT=DECLINED", "PARTSTAT=ACCEPTED", 1),
    "attendee lost": lambda t: t.replace("mailto:guest7@example.org", "mailto:guest7@example.com"),
    "exception dropped": lambda t: t.replace("EXDATE;TZID=Europe/Berlin:20261019T100000\r\n", ""),
    "moved instance lost": lambda t: t[: t.index("BEGIN:VEVENT", t.index("RRULE"))] + "END:VCALENDAR\r\n",
    "time zone changed": lambda t: t.replace("DTSTART;TZID=Europe/Berlin:20261005", "DTSTART;TZID=Europe/London:20261005"),
    "alarm changed": lambda t: t.replace("TRIGGER:-PT15M", "TRIGGER:-PT5M"),
    "category lost": lambda t: t.replace("CATEGORIES:Planning,Team", "CATEGORIES:Planning"),
    "class changed": lambda t: t.replace("CLASS:CONFIDENTIAL", "CLASS:PUBLIC"),
    "attachment cut": lambda t: t.replace(corpus.ATTACHMENT, corpus.ATTACHMENT[:-8]),
}  # fmt: skip


@pytest.mark.parametrize("rewrite", REWRITES)
def test_legitimate_rewrites_compare_equal(rewrite):
    assert canonical(REWRITES[rewrite](MEETING)) == canonical(MEETING)


@pytest.mark.parametrize("change", CHANGES)
def test_real_changes_compare_different(change):
    changed = CHANGES[change](MEETING)
    assert changed != MEETING
    assert canonical(changed) != canonical(MEETING)


def test_contacts_compare_through_type_spelling_and_not_through_a_lost_phone():
    card = corpus.CONTACTS["ada@corpus"]
    respelled = card.replace("TEL;TYPE=WORK,VOICE:", "TEL;TYPE=voice;TYPE=work:")
    assert canonical(fold(respelled)) == canonical(card)
    lost = card.replace("TEL;TYPE=CELL:+44 7700 900000\r\n", "")
    assert canonical(lost) != canonical(card)
    photo = card.replace(corpus.PHOTO, corpus.PHOTO[:-4] + "AAAA")
    assert canonical(photo) != canonical(card)


def test_uid_components_and_meetings():
    assert uid_of(fold(MEETING, 10)) == "weekly-meeting@corpus"
    assert components_of(MEETING) == {"VEVENT"}
    assert components_of(corpus.TASKS["pack-boxes@corpus"]) == {"VTODO"}
    assert components_of(corpus.CONTACTS["ada@corpus"]) == {"VCARD"}
    assert is_meeting(MEETING) and not is_meeting(corpus.ALL_DAY)


def test_without_scheduling_marks_only_organizer_and_attendees():
    marked = without_scheduling(MEETING)
    changed = [line for line in marked.split("\r\n") if "SCHEDULE-AGENT=CLIENT" in line]
    assert len(changed) == 2 * 51  # organizer and 50 attendees, master and moved instance
    assert all(line.startswith(("ORGANIZER", "ATTENDEE")) for line in changed)
    assert 'CN="Guest 0, Team"' in marked  # a quoted parameter stays quoted


def test_broken_items_raise_content_error():
    with pytest.raises(ContentError):
        canonical(
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nEND:VCALENDAR\r\n".replace(
                "END:VCALENDAR", ""
            )
        )
