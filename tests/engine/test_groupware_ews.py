"""Exchange as a groupware side: an EWS-simulator mailbox (tests/ews_simulator, a simulator, not
Exchange) to a real Radicale on loopback and back, through the same sync as DAV to DAV.

Every item compared by UID in canonical form (content.py) between what the Exchange side
presents and what Radicale stores, the meaning checked on Radicale's copy, a delta (new, changed,
deleted with and without opt-in), re-runs adding nothing, and no invitation "sent": the
simulator records every meeting message a request without SendToNone would have made Exchange
send, and a copy that dropped SendToNone is shown to be caught.
"""

from __future__ import annotations

import base64
from datetime import UTC, date, timedelta

import icalendar
import pytest
import recurring_ical_events
import vobject
from ews_simulator import impersonating
from exchangelib import CalendarItem, EWSDate, EWSDateTime
from exchangelib.items import SEND_TO_ALL_AND_SAVE_COPY
from exchangelib.protocol import close_connections
from exchangelib.recurrence import NumberedPattern, Recurrence, RelativeMonthlyPattern
from harness import ews_groupware_corpus as ews_corpus
from harness import groupware_corpus as corpus
from harness.groupware_corpus import snapshot
from harness.radicale import RadicaleServer
from harness.xandikos import XandikosServer

from mailmigrate.connections import Endpoint
from mailmigrate.errors import ConnectionConfigError
from mailmigrate.groupware import ews
from mailmigrate.groupware.account import (
    copy_account_groupware,
    endpoints,
    groupware_preflight,
    pass_summary,
    preflight_summary,
)
from mailmigrate.groupware.content import canonical, uid_of
from mailmigrate.groupware.dav import DavAccount
from mailmigrate.groupware.ews import EwsGroupwareEndpoint
from mailmigrate.groupware.sync import copy_groupware, preflight
from mailmigrate.plan import load_plan

ADMIN, ADMIN_PASSWORD, ALICE = "admin@example.com", "admin-Secret-1", "alice@example.com"
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


@pytest.fixture(scope="module")
def radicale():
    server = RadicaleServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def exchange():
    """A simulator with one mailbox reached by impersonation (the mail side's admin login)."""
    with impersonating(ADMIN, ADMIN_PASSWORD, ALICE) as (store, _, connection):
        yield store, EwsGroupwareEndpoint.from_connection(connection, ALICE, None)
    close_connections()


def _flat(form, path=()) -> set:
    """A canonical form as (component path, line) pairs."""
    out = set()
    for name, lines, children in form:
        out |= {(path + (name,), line) for line in lines}
        out |= _flat(children, path + (name,))
    return out


def assert_same(source, destination, result) -> None:
    """Every source collection's items are in its destination collection, equal in canonical
    form, and nothing else is there."""
    assert not result.all_problems, [str(p) for p in result.all_problems]
    src, dst = snapshot(source), snapshot(destination)
    for outcome in result.collections:
        (kind, _), items = src[outcome.source]
        (dest_kind, _), dest_items = dst[outcome.destination]
        assert dest_kind == kind
        assert set(dest_items) == set(items), outcome.source
        for uid, form in items.items():
            assert dest_items[uid] == form, f"{outcome.source}: {uid} differs"


def texts(endpoint) -> dict[str, str]:
    """UID -> stored text of every item of a DAV account."""
    account = DavAccount(endpoint)
    out = {}
    for collection in account.collections():
        for text, _ in account.fetch(collection, list(account.listing(collection).etags)).values():
            out[uid_of(text)] = text
    account.close()
    return out


def assert_meaning_kept(destination, uids: dict[str, str]) -> None:
    """Radicale's copy read by icalendar/recurring-ical-events and vobject: the meeting's
    instances across the DST change without the cancelled one, attendees with replies, the
    reminder; the all-day dates; the contact's phones, addresses, birthday; the tasks' states."""
    stored = texts(destination)
    meeting = icalendar.Calendar.from_ical(stored["weekly-meeting@corpus"])
    starts = sorted(e["DTSTART"].dt.astimezone(UTC) for e in
                    recurring_ical_events.of(meeting).between(date(2026, 10, 1), date(2026, 12, 1)))  # fmt: skip
    assert [s.strftime("%m-%d %H:%M") for s in starts] == [
        "10-05 08:00", "10-12 08:00", "10-27 13:00", "11-02 09:00", "11-09 09:00", "11-16 09:00",
        "11-23 09:00"]  # fmt: skip
    event = meeting.walk("VEVENT")[0]
    attendees = event["ATTENDEE"]
    assert len(attendees) == 50
    assert [a.params["PARTSTAT"] for a in attendees[:4]] == ["ACCEPTED", "DECLINED", "TENTATIVE",
                                                             "NEEDS-ACTION"]  # fmt: skip
    assert attendees[1].params["CN"] == "Guest 1, Team"
    assert event["CLASS"] == "CONFIDENTIAL" and event["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert [str(c) for c in event["CATEGORIES"].cats] == ["Planning", "Team"]
    assert event.walk("VALARM")[0]["TRIGGER"].dt.total_seconds() == -15 * 60
    holidays = icalendar.Calendar.from_ical(stored["all-day@corpus"]).walk("VEVENT")[0]
    assert (holidays["DTSTART"].dt, holidays["DTEND"].dt) == (
        date(2026, 12, 24),
        date(2026, 12, 27),
    )
    ada = vobject.readOne(stored[uids["ada"]])
    assert len(ada.contents["tel"]) == 3 and len(ada.contents["adr"]) == 2
    assert len(ada.contents["email"]) == 2 and ada.bday.value == "1815-12-10"
    assert ada.photo.value == ews_corpus.PHOTO
    statuses = {str(icalendar.Calendar.from_ical(stored[uids[s]]).walk("VTODO")[0]["STATUS"])
                for s in ("Move office", "Pack boxes", "Book a van")}  # fmt: skip
    assert statuses == {"IN-PROCESS", "COMPLETED", "NEEDS-ACTION"}
    assert base64.b64decode(event["ATTACH"].to_ical()) == ews_corpus.AGENDA
    assert event["ATTACH"].params["X-FILENAME"] == "agenda.txt"
    moved = meeting.walk("VEVENT")[1]
    assert moved["SUMMARY"] == "Weekly planning (moved)" and len(moved["ATTENDEE"]) == 50
    team = vobject.readOne(stored[uids["team"]])
    assert sorted(m.value for m in team.contents["x-addressbookserver-member"]) == sorted(
        [f"urn:uuid:{uids['ada']}", f"urn:uuid:{uids['charles']}", "mailto:lab@example.org"]
    )
    done = icalendar.Calendar.from_ical(stored[uids["Pack boxes"]]).walk("VTODO")[0]
    assert "COMPLETED" in done and done["PERCENT-COMPLETE"] == 100


def test_exchange_to_radicale_exact_with_deltas_and_no_mail(
    exchange, radicale, tmp_path, monkeypatch
):
    store, source = exchange
    account = source.open()
    items = ews_corpus.populate(store, account.account)
    uids = {name: ews.item_uid(item) for name, item in items.items()}
    destination = radicale.add_user()

    plan = preflight(source, destination)
    counts = {c.name: n for c, n in plan.source}
    assert counts == {"Calendar": 2, "Work": 1, "Tasks": 3, "Contacts": 3}
    assert "default calendar 'Calendar' -> new 'Calendar'" in plan.lines()

    first = copy_groupware(source, destination, plan="gw", state_dir=tmp_path)
    assert first.total("added") == 9
    assert_same(source, destination, first)
    assert_meaning_kept(destination, uids)

    again = copy_groupware(source, destination, plan="gw", state_dir=tmp_path)
    assert (again.total("added"), again.total("updated"), again.total("unchanged")) == (0, 0, 0)
    fresh = copy_groupware(source, destination, plan="gw", state_dir=tmp_path / "lost")
    assert (fresh.total("added"), fresh.total("updated"), fresh.total("unchanged")) == (0, 0, 9)

    # delta on the Exchange side: a new event, the meeting changed, a contact deleted
    late = ews_corpus.meeting(account.account, account.account.calendar, "Late meeting")
    late.uid, late.recurrence = "late@corpus", None
    late.save()
    weekly = items["weekly"]
    weekly.refresh()
    weekly.subject = "Weekly planning v2"
    weekly.save(update_fields=["subject"])
    # SyncFolderItems from the state of the last pass: only the two changed items are listed
    listed = []
    real_listing = ews.EwsGroupwareAccount.listing

    def spy(self, collection, token=None):
        found = real_listing(self, collection, token)
        listed.append((collection.name, token is not None, found.complete, len(found.etags)))
        return found

    monkeypatch.setattr(ews.EwsGroupwareAccount, "listing", spy)
    changed = copy_groupware(source, destination, plan="gw", state_dir=tmp_path, phase="delta")
    assert ("Calendar", True, False, 2) in listed and ("Contacts", True, False, 0) in listed
    assert (changed.total("added"), changed.total("updated"), changed.total("unchanged")) == (
        1,
        1,
        0,
    )
    assert "Weekly planning v2" in texts(destination)["weekly-meeting@corpus"]
    items["charles"].delete()
    store.expire_sync_states(ALICE, "calendar")  # a state Exchange no longer accepts: all again
    kept = copy_groupware(source, destination, plan="gw", state_dir=tmp_path, phase="delta")
    assert (kept.total("added"), kept.total("updated"), kept.total("kept_deleted")) == (0, 0, 1)
    assert uids["charles"] in texts(destination)

    deleted = copy_groupware(source, destination, plan="gw", state_dir=tmp_path, phase="delta",
                             propagate_deletions=True)  # fmt: skip
    assert deleted.total("deleted") == 1 and deleted.total("added") == 0
    assert_same(source, destination, deleted)
    assert uids["charles"] not in texts(destination)
    assert store.invitations == []  # the corpus and the delta were written with SendToNone
    account.close()


def test_radicale_to_exchange_sends_no_invitation(exchange, radicale, tmp_path, monkeypatch):
    """The corpus onto Exchange: the meeting series with its moved and cancelled instance, its
    attachment and 50 attendees, a second 50-attendee meeting, the contact with its photo, the
    group as a distribution list, created and changed with SendToNone (the simulator records nothing); what Exchange cannot
    hold is reported per item, not written with less. With SendToNone dropped, the simulator
    does record the invitations."""
    store, destination = exchange
    source = radicale.add_user()
    dav = DavAccount(source)
    hrefs = corpus.populate(dav)
    kickoff = corpus.WORK.replace("work-review", "kickoff").replace(
        "CLASS:PRIVATE", "\r\n".join(["ORGANIZER;CN=Owner:mailto:owner@example.org",
                                      *corpus._attendees(50)]))  # fmt: skip
    dav.put("calendar", f"{hrefs['Calendar']}kickoff.ics", kickoff, None)

    first = copy_groupware(source, destination, plan="gw", state_dir=tmp_path)
    problems = {p.uid: p.reason for p in first.all_problems}
    # the group needs its members on Exchange first: when listed before them, the next pass
    group_first = "engines-group@corpus" in problems
    assert set(problems) - {"engines-group@corpus"} == {"floating@corpus", "move-office@corpus",
                                                        "pack-boxes@corpus", "book-van@corpus"}  # fmt: skip
    assert "Exchange cannot hold DTSTART as written" in problems["floating@corpus"]
    assert "Exchange cannot hold DUE as written" in problems["move-office@corpus"]
    assert "RELATED-TO" in problems["pack-boxes@corpus"]
    assert not group_first or "is not a contact" in problems["engines-group@corpus"]
    # meeting, all-day, kickoff, review, Ada, Charles, the group
    assert first.total("added") == 7 - group_first
    second = copy_groupware(source, destination, plan="gw", state_dir=tmp_path, phase="delta")
    assert second.total("added") == group_first and store.invitations == []
    group = snapshot(destination)["Contacts"][1]["engines-group@corpus"]
    assert group == canonical(corpus.CONTACTS["engines-group@corpus"])
    # as Exchange presents them again: equal but for the rewrites README names (Exchange's
    # organizer, sequence, reminder text; no TYPE on emails)
    on_exchange = snapshot(destination)
    meeting = on_exchange["Calendar"][1]["weekly-meeting@corpus"]
    rewrites = {
        (("VCALENDAR", "VEVENT"), ("ORGANIZER", ("CN=Alice",), f"mailto:{ALICE}")),
        (("VCALENDAR", "VEVENT"), ("ORGANIZER", ("CN=Owner",), "mailto:owner@example.org")),
        (("VCALENDAR", "VEVENT"), ("SEQUENCE", (), "1")),
        (("VCALENDAR", "VEVENT", "VALARM"), ("DESCRIPTION", (), "Planning")),
        (("VCALENDAR", "VEVENT", "VALARM"), ("DESCRIPTION", (), "Reminder")),
    }
    assert _flat(meeting) ^ _flat(canonical(corpus.weekly_meeting())) == rewrites
    ada = _flat(on_exchange["Contacts"][1]["ada@corpus"])
    assert ada ^ _flat(canonical(corpus.CONTACTS["ada@corpus"])) == {
        (("VCARD",), ("EMAIL", (f"TYPE={kind}",), f"ada@{where}.example"))
        for kind, where in (("home,internet", "home"), ("internet", "home"),
                            ("internet,work", "work"), ("internet", "work"))
    }  # fmt: skip
    assert {f.name for f in destination.open().account.msg_folder_root.children} >= {"Work"}

    # the series changed at the source: written again (delete + create), nothing sent
    changed_text = corpus.weekly_meeting("Weekly planning v2")
    calendar = next(c for c in dav.collections() if c.href == hrefs["Calendar"])
    etag = dav.listing(calendar).etags[f"{hrefs['Calendar']}weekly-meeting@corpus.ics"]
    dav.put("calendar", f"{hrefs['Calendar']}weekly-meeting@corpus.ics", changed_text, etag)
    changed = copy_groupware(source, destination, plan="gw", state_dir=tmp_path, phase="delta")
    assert changed.total("updated") == 1 and store.invitations == []
    again = snapshot(destination)["Calendar"][1]["weekly-meeting@corpus"]
    assert _flat(again) ^ _flat(canonical(changed_text)) == rewrites
    # the series becomes a single event: no instance of it is left behind on Exchange
    single = corpus.WORK.replace("work-review", "weekly-meeting")
    etag = dav.listing(calendar).etags[f"{hrefs['Calendar']}weekly-meeting@corpus.ics"]
    dav.put("calendar", f"{hrefs['Calendar']}weekly-meeting@corpus.ics", single, etag)
    copy_groupware(source, destination, plan="gw", state_dir=tmp_path, phase="delta")
    assert snapshot(destination)["Calendar"][1]["weekly-meeting@corpus"] == canonical(single)

    # the same copy with SendToNone dropped would email 50 people: the simulator sees it
    monkeypatch.setattr(ews, "INVITATIONS", SEND_TO_ALL_AND_SAVE_COPY)
    etag = dav.listing(calendar).etags[f"{hrefs['Calendar']}kickoff.ics"]
    dav.put("calendar", f"{hrefs['Calendar']}kickoff.ics", kickoff.replace("Review", "Kickoff"),
            etag)  # fmt: skip
    copy_groupware(source, destination, plan="gw", state_dir=tmp_path, phase="delta")
    assert [(i.operation, len(i.recipients)) for i in store.invitations] == [("UpdateItem", 50)]
    dav.close()


def test_groupware_connections_dav_or_ews():
    class Account:
        source_user, source_password = ALICE, None
        destination_user, destination_password = "alice", "pw"

    ews_conn = Endpoint("old_exchange", "ews", "https://mail.old.example/EWS/Exchange.asmx",
                        login=ADMIN, password=ADMIN_PASSWORD, extra={"impersonation": True})  # fmt: skip
    dav_conn = Endpoint("new_dav", "dav", "dav.new.example")
    source, destination = endpoints(Account, ews_conn, dav_conn)
    assert isinstance(source, EwsGroupwareEndpoint) and source.user == ALICE
    assert source.identity()["kind"] == "ews" and ADMIN_PASSWORD not in repr(source)
    with pytest.raises(ConnectionConfigError, match="needs conn type dav or ews, not imap"):
        endpoints(Account, Endpoint("old_imap", "imap", "imap.old.example"), dav_conn)


def test_refused_login_names_account_not_password(exchange):
    store, endpoint = exchange
    wrong = Endpoint("exchange", "ews", endpoint.connection.host, login=ADMIN,
                     password="wrong-Secret", extra={"auth": "basic"})  # fmt: skip
    with pytest.raises(ews.EwsGroupwareError) as refused:
        EwsGroupwareEndpoint.from_connection(wrong, ALICE, None).open().collections()
    assert refused.value.status == 401 and "wrong-Secret" not in str(refused.value)
    assert ALICE in str(refused.value)
    assert not any(isinstance(i, CalendarItem) for i in store.invitations)


def test_relative_recurrences_both_ways_and_unreadable_items_reported(exchange, radicale, tmp_path):
    """ "Second Tuesday monthly" leaves Exchange as BYDAY=2TU; "last Friday monthly" with a
    cancelled instance arrives as a relative pattern with that instance cancelled; a series on
    "the first weekday" (no iCalendar day) is reported by name, the rest is copied."""
    store, exchange_side = exchange
    account = exchange_side.open().account

    def monthly(uid: str, subject: str, first: date, weekday: int, week: int) -> None:
        """Six monthly instances on the ``week``-th ``weekday`` (exchangelib's numbers)."""
        start = EWSDateTime(first.year, first.month, first.day, 9, 0, tzinfo=ews_corpus.BERLIN)
        CalendarItem(
            account=account, folder=account.calendar, uid=uid, subject=subject, start=start,
            end=start + timedelta(hours=1), reminder_is_set=False,
            recurrence=Recurrence(
                pattern=RelativeMonthlyPattern(interval=1, weekday=weekday, week_number=week),
                boundary=NumberedPattern(start=EWSDate(first.year, first.month, first.day),
                                         number=6)),
        ).save()  # fmt: skip

    monthly("jour-fixe@ews", "Jour fixe", date(2026, 10, 13), weekday=2, week=2)
    monthly("first-weekday@ews", "Payroll", date(2026, 10, 1), weekday=9, week=1)
    destination = radicale.add_user()
    result = copy_groupware(exchange_side, destination, plan="gw", state_dir=tmp_path,
                            kinds=["calendars"])  # fmt: skip
    assert [(p.uid, "'Payroll'" in p.reason) for p in result.all_problems] == [
        ("first-weekday@ews.ics", True)]  # fmt: skip
    copied = icalendar.Calendar.from_ical(texts(destination)["jour-fixe@ews"])
    rule = copied.walk("VEVENT")[0]["RRULE"]
    assert (rule["FREQ"], rule["BYDAY"], rule["COUNT"]) == (["MONTHLY"], ["2TU"], [6])

    source = radicale.add_user()
    dav = DavAccount(source)
    calendar = corpus.populate(dav)["Calendar"]
    last_friday = (
        corpus.WORK.replace("work-review", "retro")
        .replace(
            "CLASS:PRIVATE", "RRULE:FREQ=MONTHLY;BYDAY=-1FR;COUNT=4\r\nEXDATE:20261127T130000Z"
        )
        .replace("20261110T1", "20261030T1")
    )
    dav.put("calendar", f"{calendar}retro.ics", last_friday, None)
    back = copy_groupware(source, exchange_side, plan="gw2", state_dir=tmp_path,
                          kinds=["calendars"])  # fmt: skip
    assert "retro@corpus" not in {p.uid for p in back.all_problems}
    (retro,) = [i for i in account.calendar.all() if i.uid == "retro@corpus"]
    assert isinstance(retro.recurrence.pattern, RelativeMonthlyPattern)
    assert [o.start.day for o in retro.deleted_occurrences] == [27]
    assert store.invitations == []
    dav.close()


def test_a_plan_moves_exchange_groupware_by_impersonation(exchange, radicale, tmp_path):
    """A plan whose groupware source is an ews connection (the admin impersonates; the CSV has
    no source password) and destination a dav one: the test step's summary and one pass,
    through the same functions the DAG calls."""
    store, exchange_side = exchange
    ews_corpus.populate(store, exchange_side.open().account)
    destination = radicale.add_user(f"alice.{tmp_path.name[-8:]}@new.example", "New-Secret-5")
    (tmp_path / "plan.yaml").write_text(
        "name: gw_ews\nsource: {connection: old_mail}\ndestination: {connection: new_mail}\n"
        "accounts: accounts.csv\nkinds: [mail, calendars, contacts]\n"
        "groupware:\n  source: {connection: old_exchange}\n  destination: {connection: new_dav}\n"
    )  # fmt: skip
    (tmp_path / "accounts.csv").write_text(
        "source_user,destination_user,destination_password\n"
        f"{ALICE},{destination.user},{destination.password}\n"
    )
    plan = load_plan(tmp_path / "plan.yaml")
    dav = Endpoint("new_dav", "dav", "127.0.0.1", radicale.port, extra={"security": "none"})
    tested = preflight_summary(groupware_preflight(plan, plan.accounts[0], exchange_side.connection,
                                                   dav))  # fmt: skip
    assert tested["source"]["calendars"] == 2 and tested["source"]["events"] == 3
    assert tested["source"]["contacts"] == 3 and tested["source"]["tasks"] == 3  # listed
    assert not any("Tasks" in line for line in tested["mapping"])  # but not moved
    result = copy_account_groupware(plan, plan.accounts[0], exchange_side.connection, dav,
                                    "initial", state_dir=tmp_path / "state")  # fmt: skip
    summary = pass_summary(result)
    assert summary["done"]["added"] == 6 and summary["problem_count"] == 0
    assert summary["destination"]["events"] == 3 and summary["destination"]["contacts"] == 3
    assert summary["destination"]["tasks"] == 0
    assert store.invitations == []


def test_refused_impersonation_is_not_retried(exchange):
    store, endpoint = exchange
    store.add_user("helpdesk@example.com", "Helpdesk-Secret-3")  # no impersonation right
    helpdesk = Endpoint("exchange", "ews", endpoint.connection.host, login="helpdesk@example.com",
                        password="Helpdesk-Secret-3", extra={"auth": "basic"})  # fmt: skip
    with pytest.raises(ews.EwsGroupwareError) as refused:
        EwsGroupwareEndpoint.from_connection(helpdesk, ALICE, None).open().collections()
    assert refused.value.status == 401 and not refused.value.retryable
    assert "impersonation refused" in str(refused.value)


def test_exchange_to_xandikos_exact_and_no_mail(exchange, tmp_path):
    """The same corpus onto Xandikos, a server with implicit scheduling (its probe and
    SCHEDULE-AGENT=CLIENT apply as from DAV): equal item by item, the default calendar onto its
    own default, nothing sent by either side."""
    store, source = exchange
    ews_corpus.populate(store, source.open().account)
    server = XandikosServer()
    server.start()
    try:
        destination = server.add_user()
        result = copy_groupware(source, destination, plan="gw", state_dir=tmp_path)
        assert result.total("added") == 9
        assert_same(source, destination, result)
        assert {c.destination for c in result.collections if c.source == "Calendar"} == {"calendar"}
        again = copy_groupware(source, destination, plan="gw", state_dir=tmp_path / "lost")
        assert (again.total("added"), again.total("updated")) == (0, 0)
    finally:
        server.stop()
    assert store.invitations == []
