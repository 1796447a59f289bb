"""Exchange-side groupware corpus: the hard cases of groupware_corpus.py as far as Exchange's
fields carry them, created in an EWS-simulator mailbox through exchangelib the way Outlook
creates them (not through mailmigrate), so contacts and tasks have no mailmigrate UID.

- ``Calendar`` (the default): a weekly meeting in Europe/Berlin across the end of DST
  (2026-10-25), 8 instances with the one of 2026-10-19 cancelled (a deleted occurrence) and the
  one of 2026-10-26 moved to Tuesday afternoon and renamed (a modified occurrence), 50 required
  attendees with their replies, a 15-minute reminder, two categories, confidential, a
  text body and a file attachment; an all-day event shown as free.
- ``Work`` (a second calendar folder): one private event at a UTC time with a location.
- ``Tasks``: in progress with a due date and high importance, completed, not started.
- ``Contacts``: a contact with a photo, two emails, three phones, two addresses, birthday,
  company, title and a note; a second, plain one; a distribution list holding both and one address.

Not here, because Exchange has no field for them (ews_convert.py says so): floating times,
subtasks.
"""

from __future__ import annotations

import base64
import datetime as dt
from decimal import Decimal

from ews_simulator.typed import cancel_occurrence, move_occurrence
from exchangelib import (
    CalendarItem,
    Contact,
    DistributionList,
    EWSDate,
    EWSDateTime,
    EWSTimeZone,
    Task,
)
from exchangelib.attachments import FileAttachment
from exchangelib.folders import Calendar
from exchangelib.indexed_properties import EmailAddress, PhoneNumber, PhysicalAddress
from exchangelib.items import SEND_TO_NONE
from exchangelib.properties import Attendee, Body, ItemId, Mailbox, Member
from exchangelib.recurrence import NumberedPattern, Recurrence, WeeklyPattern

from harness.groupware_corpus import PHOTO as PNG

BERLIN = EWSTimeZone("Europe/Berlin")
PHOTO = base64.b64decode(PNG)
AGENDA = b"agenda: budget, hiring, offsite\n" * 4
UTC = EWSTimeZone("UTC")
REPLIES = ("Accept", "Decline", "Tentative", "NoResponseReceived")


def guests(count: int) -> list[Attendee]:
    return [Attendee(mailbox=Mailbox(email_address=f"guest{n}@example.org", name=f"Guest {n}, Team"),
                     response_type=REPLIES[n % 4]) for n in range(count)]  # fmt: skip


def meeting(account, folder, subject: str = "Weekly planning") -> CalendarItem:
    return CalendarItem(
        account=account, folder=folder, uid="weekly-meeting@corpus", subject=subject,
        start=EWSDateTime(2026, 10, 5, 10, 0, tzinfo=BERLIN),
        end=EWSDateTime(2026, 10, 5, 11, 0, tzinfo=BERLIN),
        recurrence=Recurrence(pattern=WeeklyPattern(interval=1, weekdays=[1]),
                              boundary=NumberedPattern(start=EWSDate(2026, 10, 5), number=8)),
        required_attendees=guests(50), is_response_requested=True,
        categories=["Planning", "Team"], sensitivity="Confidential",
        body=Body("Agenda: budget, hiring; minutes afterwards."),
        reminder_is_set=True, reminder_minutes_before_start=15,
        attachments=[FileAttachment(name="agenda.txt", content=AGENDA, content_type="text/plain")],
    )  # fmt: skip


def populate(store, account) -> dict[str, object]:
    """Write the corpus into the simulator mailbox behind ``account``; returns name -> item."""
    created = {}
    calendar = account.calendar
    weekly = meeting(account, calendar)
    weekly.save(send_meeting_invitations=SEND_TO_NONE)
    cancel_occurrence(store, weekly.id, dt.datetime(2026, 10, 19, 8, 0, tzinfo=dt.UTC))  # fmt: skip
    # the first instance after the DST change, moved from Monday 10:00 to Tuesday 14:00 CET
    move_occurrence(store, weekly.id, dt.datetime(2026, 10, 26, 9, 0, tzinfo=dt.UTC),
                    dt.datetime(2026, 10, 27, 13, 0, tzinfo=dt.UTC),
                    dt.datetime(2026, 10, 27, 14, 0, tzinfo=dt.UTC), "Weekly planning (moved)")  # fmt: skip
    holidays = CalendarItem(account=account, folder=calendar, uid="all-day@corpus",
                            subject="Holidays", is_all_day=True, start=EWSDate(2026, 12, 24),
                            end=EWSDate(2026, 12, 26), legacy_free_busy_status="Free",
                            reminder_is_set=False)  # fmt: skip
    holidays.save()
    work = Calendar(parent=account.msg_folder_root, name="Work", folder_class="IPF.Appointment")
    work.save()
    review = CalendarItem(account=account, folder=work, uid="work-review@corpus", subject="Review",
                          start=EWSDateTime(2026, 11, 10, 13, 0, tzinfo=UTC),
                          end=EWSDateTime(2026, 11, 10, 14, 0, tzinfo=UTC),
                          sensitivity="Private", location="Room 4; second floor",
                          reminder_is_set=False)  # fmt: skip
    review.save()
    tasks = account.tasks
    for subject, extra in (
        ("Move office", {"status": "InProgress", "due_date": EWSDate(2026, 11, 30),
                         "percent_complete": Decimal(50), "importance": "High"}),
        ("Pack boxes", {"status": "Completed", "percent_complete": Decimal(100)}),
        ("Book a van", {"status": "NotStarted", "due_date": EWSDate(2026, 11, 15)}),
    ):  # fmt: skip
        task = Task(account=account, folder=tasks, subject=subject, **extra)
        task.save()
        created[subject] = task
    ada = Contact(
        account=account, folder=account.contacts, display_name="Ada Lovelace", given_name="Ada",
        surname="Lovelace", company_name="Analytical Engines", job_title="Analyst",
        birthday=EWSDate(1815, 12, 10), body=Body("Prefers letters, not calls."),
        email_addresses=[EmailAddress(label="EmailAddress1", email="ada@work.example"),
                         EmailAddress(label="EmailAddress2", email="ada@home.example")],
        phone_numbers=[PhoneNumber(label="BusinessPhone", phone_number="+44 20 7946 0000"),
                       PhoneNumber(label="MobilePhone", phone_number="+44 7700 900000"),
                       PhoneNumber(label="HomePhone", phone_number="+44 20 7946 0001")],
        physical_addresses=[
            PhysicalAddress(label="Business", street="1 Engine Row", city="London",
                            zipcode="EC1A 1BB", country="United Kingdom"),
            PhysicalAddress(label="Home", street="12 St James's Square", city="London",
                            zipcode="SW1Y 4JH", country="United Kingdom")],
        attachments=[FileAttachment(name="ContactPicture.jpg", content=PHOTO,
                                    content_type="image/png", is_contact_photo=True)],
    )  # fmt: skip
    ada.save()
    charles = Contact(account=account, folder=account.contacts, display_name="Charles Babbage",
                      given_name="Charles", surname="Babbage",
                      email_addresses=[EmailAddress(label="EmailAddress1",
                                                    email="charles@example.org")])  # fmt: skip
    charles.save()
    team = DistributionList(account=account, folder=account.contacts, display_name="Engine team",
                            members=[Member(mailbox=Mailbox(email_address=c.email_addresses[0].email,
                                                            name=c.display_name,
                                                            mailbox_type="Contact",
                                                            item_id=ItemId(c.id, c.changekey)))
                                     for c in (ada, charles)]
                            + [Member(mailbox=Mailbox(email_address="lab@example.org",
                                                      mailbox_type="OneOff"))])  # fmt: skip
    team.save()
    created.update(weekly=weekly, holidays=holidays, review=review, ada=ada, charles=charles,
                   team=team)  # fmt: skip
    return created
