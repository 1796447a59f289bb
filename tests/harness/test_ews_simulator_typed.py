"""The EWS simulator's typed items (tests/ews_simulator/typed.py) against exchangelib, unchanged:
calendar items, contacts and tasks round-trip field by field, indexed fields merge on update by
key, a completed task gets a completion date, and every meeting message a request without
SendToNone would make Exchange send is recorded (none is sent: the simulator has no mail)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from ews_simulator import EwsSimulator, SimulatorStore
from exchangelib import (
    BASIC,
    IMPERSONATION,
    Account,
    CalendarItem,
    Configuration,
    Contact,
    Credentials,
    EWSDate,
    EWSDateTime,
    EWSTimeZone,
    FailFast,
    Task,
)
from exchangelib.indexed_properties import EmailAddress, PhoneNumber
from exchangelib.items import SEND_ONLY_TO_ALL, SEND_TO_ALL_AND_SAVE_COPY, SEND_TO_NONE
from exchangelib.properties import Attendee, Mailbox
from exchangelib.protocol import close_connections
from exchangelib.recurrence import NumberedPattern, Recurrence, WeeklyPattern

ADMIN, ADMIN_PASSWORD, ALICE = "admin@example.com", "admin-Secret-1", "alice@example.com"
BERLIN = EWSTimeZone("Europe/Berlin")


@pytest.fixture
def sim() -> Iterator[tuple[SimulatorStore, Account]]:
    store = SimulatorStore()
    store.add_user(ADMIN, ADMIN_PASSWORD, impersonation=True)
    store.add_mailbox(ALICE)
    with EwsSimulator(store, auth=("basic",)) as simulator:
        config = Configuration(service_endpoint=simulator.url, auth_type=BASIC,
                               credentials=Credentials(ADMIN, ADMIN_PASSWORD),
                               retry_policy=FailFast())  # fmt: skip
        yield store, Account(ALICE, config=config, access_type=IMPERSONATION,
                             default_timezone=EWSTimeZone("UTC"))  # fmt: skip
    close_connections()


def meeting(account: Account, subject: str) -> CalendarItem:
    return CalendarItem(
        account=account, folder=account.calendar, subject=subject,
        start=EWSDateTime(2026, 10, 5, 10, 0, tzinfo=BERLIN),
        end=EWSDateTime(2026, 10, 5, 11, 0, tzinfo=BERLIN),
        recurrence=Recurrence(pattern=WeeklyPattern(interval=1, weekdays=[1]),
                              boundary=NumberedPattern(start=EWSDate(2026, 10, 5), number=8)),
        required_attendees=[Attendee(mailbox=Mailbox(email_address="bob@example.org"),
                                     response_type="Accept")],
        categories=["Team"], sensitivity="Private", reminder_is_set=True,
        reminder_minutes_before_start=15,
    )  # fmt: skip


def test_calendar_items_round_trip_and_invitations_are_recorded(sim) -> None:
    store, account = sim
    quiet = meeting(account, "Planning")
    quiet.save(send_meeting_invitations=SEND_TO_NONE)
    quiet.subject = "Planning v2"
    quiet.save(update_fields=["subject"], send_meeting_invitations=SEND_TO_NONE)
    (read,) = account.fetch([quiet])
    assert read.subject == "Planning v2" and read.uid and read.is_recurring
    assert read._start_timezone.key == "Europe/Berlin" and read.start.astimezone(BERLIN).hour == 10
    assert read.recurrence.pattern == quiet.recurrence.pattern and read.categories == ["Team"]
    assert read.recurrence.boundary.number == 8
    assert read.required_attendees[0].response_type == "Accept"
    assert (read.sensitivity, read.reminder_minutes_before_start) == ("Private", 15)
    assert read.organizer.email_address == ALICE and read.type == "RecurringMaster"
    read.delete(send_meeting_cancellations=SEND_TO_NONE)
    assert store.invitations == []

    loud = meeting(account, "Loud")
    loud.save(send_meeting_invitations=SEND_TO_ALL_AND_SAVE_COPY)
    loud.subject = "Louder"
    loud.save(update_fields=["subject"], send_meeting_invitations=SEND_ONLY_TO_ALL)
    loud.delete(send_meeting_cancellations=SEND_ONLY_TO_ALL)
    assert [(i.operation, i.mode, i.recipients) for i in store.invitations] == [
        ("CreateItem", SEND_TO_ALL_AND_SAVE_COPY, ["bob@example.org"]),
        ("UpdateItem", SEND_ONLY_TO_ALL, ["bob@example.org"]),
        ("DeleteItem", SEND_ONLY_TO_ALL, ["bob@example.org"]),
    ]


def test_contacts_merge_indexed_fields_and_tasks_complete(sim) -> None:
    store, account = sim
    contact = Contact(account=account, folder=account.contacts, display_name="Ada",
                      birthday=EWSDate(1815, 12, 10),
                      email_addresses=[EmailAddress(label="EmailAddress1", email="a@work"),
                                       EmailAddress(label="EmailAddress2", email="a@home")],
                      phone_numbers=[PhoneNumber(label="MobilePhone", phone_number="+1")])  # fmt: skip
    contact.save()
    contact.email_addresses = [EmailAddress(label="EmailAddress1", email="a@new")]
    contact.phone_numbers = [PhoneNumber(label="MobilePhone", phone_number="+1"),
                             PhoneNumber(label="HomePhone", phone_number="+2")]  # fmt: skip
    contact.save(update_fields=["email_addresses", "phone_numbers"])
    (read,) = account.fetch([contact])
    assert [(e.label, e.email) for e in read.email_addresses] == [("EmailAddress1", "a@new")]
    assert sorted(p.label for p in read.phone_numbers) == ["HomePhone", "MobilePhone"]
    assert read.birthday == EWSDate(1815, 12, 10)

    task = Task(account=account, folder=account.tasks, subject="Pack", status="InProgress",
                due_date=EWSDate(2026, 11, 30), percent_complete=Decimal(50))  # fmt: skip
    task.save()
    assert next(account.fetch([task])).complete_date is None
    task.status, task.percent_complete = "Completed", Decimal(100)
    task.save(update_fields=["status", "percent_complete"])
    (done,) = account.fetch([task])
    assert done.is_complete and done.complete_date is not None
    assert done.due_date == EWSDate(2026, 11, 30)
    assert [i.subject for i in account.tasks.all()] == ["Pack"]
