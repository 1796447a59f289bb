"""Groupware copy between real Radicale and Xandikos servers on loopback, both ways: every item
by UID equal after normalisation (include/mailmigrate/groupware/content.py), collection names
and colours, re-runs that write nothing, and a delta with a new, a changed and a deleted item."""

from __future__ import annotations

import base64
from datetime import UTC, date

import icalendar
import pytest
import recurring_ical_events
import vobject
from harness import groupware_corpus as corpus
from harness.groupware_corpus import snapshot
from harness.radicale import RadicaleServer
from harness.xandikos import XandikosServer

from mailmigrate.connections import Endpoint
from mailmigrate.errors import DavError
from mailmigrate.groupware.content import unfolded_lines
from mailmigrate.groupware.dav import DavAccount, DavEndpoint
from mailmigrate.groupware.sync import copy_groupware, preflight

LIMIT = 1_000_000  # Radicale's largest request body here: a bigger item is refused
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


@pytest.fixture(scope="module")
def servers():
    started = {"radicale": RadicaleServer(max_content_length=LIMIT), "xandikos": XandikosServer()}
    try:
        for server in started.values():
            server.start()
        yield started
    finally:
        for server in started.values():
            server.stop()


def assert_copied(source: DavEndpoint, destination: DavEndpoint, result) -> None:
    """Every source collection's items are in its destination collection, equal, and nothing
    else is there; names map as the result says, colours are kept."""
    src, dst = snapshot(source), snapshot(destination)
    assert not result.all_problems, [str(p) for p in result.all_problems]
    for outcome in result.collections:
        (kind, colour), items = src[outcome.source]
        (dest_kind, dest_colour), dest_items = dst[outcome.destination]
        assert dest_kind == kind
        if outcome.created:
            assert dest_colour == colour
        assert set(dest_items) == set(items), outcome.source
        for uid, form in items.items():
            if dest_items[uid] != form:
                only = sorted(set(_flat(form)) ^ set(_flat(dest_items[uid])))
                raise AssertionError(f"{outcome.source}: {uid} differs: {only[:6]}")


def _flat(form, path=()) -> list:
    """A canonical form as (component path, line) pairs, for readable differences."""
    out = []
    for name, lines, children in form:
        out += [(path + (name,), line) for line in lines]
        out += _flat(children, path + (name,))
    return out


def item_text(endpoint: DavEndpoint, uid: str) -> str:
    """The stored text of the item ``uid`` of an account, wherever it lives."""
    account = DavAccount(endpoint)
    try:
        for collection in account.collections():
            items = account.fetch(collection, list(account.listing(collection).etags))
            for text, _ in items.values():
                if f"UID:{uid}" in "".join(text.split("\n ")):
                    return text
    finally:
        account.close()
    raise AssertionError(f"{uid} not found")


def assert_meaning_kept(destination: DavEndpoint) -> None:
    """Beyond equal text: the destination's own reading of the copy (icalendar and
    recurring-ical-events, vobject) gives the meeting's instances across the DST change, with
    the cancelled one gone and the moved one moved, and the contact's photo bytes."""
    meeting = icalendar.Calendar.from_ical(item_text(destination, "weekly-meeting@corpus"))
    starts = [e["DTSTART"].dt.astimezone(UTC)
              for e in recurring_ical_events.of(meeting).between(date(2026, 10, 1), date(2026, 12, 1))]  # fmt: skip
    utc = [s.strftime("%m-%d %H:%M") for s in sorted(starts)]
    assert utc == ["10-05 08:00", "10-12 08:00", "10-27 13:00", "11-02 09:00", "11-09 09:00",
                   "11-16 09:00", "11-23 09:00"]  # fmt: skip
    card = vobject.readOne(item_text(destination, "ada@corpus"))
    assert card.photo.value == base64.b64decode(corpus.PHOTO)
    assert len(card.contents["tel"]) == 3 and len(card.contents["adr"]) == 2
    assert card.bday.value == "1815-12-10"


@pytest.mark.parametrize("direction", ["radicale->xandikos", "xandikos->radicale"])
def test_copy_initial_rerun_and_delta(servers, direction, tmp_path):
    source_name, destination_name = direction.split("->")
    source = servers[source_name].add_user()
    destination = servers[destination_name].add_user()
    account = DavAccount(source)
    hrefs = corpus.populate(account)

    plan = preflight(source, destination)
    mapped = {m.source.name: m for m in plan.mapping}
    assert {"Calendar", "Work", "Tasks", "Contacts"} <= set(mapped)
    if source_name == "xandikos":  # its own empty default "calendar" takes the name
        assert mapped["Calendar"].renamed and mapped["Calendar"].name == "Calendar (2)"
        assert "(renamed: 'Calendar' is taken)" in "\n".join(plan.lines())
    counts = {c.name: n for c, n in plan.source}
    assert counts["Calendar"] == 3 and counts["Tasks"] == 3 and counts["Contacts"] == 3

    first = copy_groupware(source, destination, plan="gw", state_dir=tmp_path)
    assert_copied(source, destination, first)
    assert_meaning_kept(destination)
    assert first.total("added") == 10

    again = copy_groupware(source, destination, plan="gw", state_dir=tmp_path)
    assert again.total("added") == again.total("updated") == 0
    fresh = copy_groupware(source, destination, plan="gw", state_dir=tmp_path / "lost")
    assert fresh.total("added") == fresh.total("updated") == 0, fresh.collections  # by UID
    assert fresh.total("unchanged") == 10

    # delta: one new event, one changed meeting, one deleted contact
    calendar = hrefs["Calendar"]
    account.put("calendar", f"{calendar}late.ics", corpus.WORK.replace("work-review", "late"), None)
    meeting = f"{calendar}weekly-meeting@corpus.ics"
    etag = account.listing(next(c for c in account.collections() if c.href == calendar)).etags[
        meeting
    ]
    account.put("calendar", meeting, corpus.weekly_meeting("Weekly planning v2"), etag)
    account.delete(f"{hrefs['Contacts']}charles@corpus.vcf", None)

    kept = copy_groupware(source, destination, plan="gw", state_dir=tmp_path, phase="delta")
    assert (kept.total("added"), kept.total("updated"), kept.total("kept_deleted")) == (1, 1, 1)
    assert "charles@corpus" in snapshot(destination)[mapped["Contacts"].name][1]

    deleted = copy_groupware(source, destination, plan="gw", state_dir=tmp_path, phase="delta",
                             propagate_deletions=True)  # fmt: skip
    assert deleted.total("deleted") == 1
    assert_copied(source, destination, deleted)
    account.close()


def test_scheduling_servers_get_schedule_agent_client(servers, tmp_path):
    """Xandikos announces calendar-auto-schedule: the copy marks organizer and attendees
    SCHEDULE-AGENT=CLIENT so that it sends no invitation; the comparison ignores the mark."""
    source = servers["radicale"].add_user()
    destination = servers["xandikos"].add_user()
    corpus.populate(DavAccount(source))
    copy_groupware(source, destination, plan="gw", state_dir=tmp_path, kinds=["calendars"])
    account = DavAccount(destination)
    account.discover()
    assert account.schedules
    calendar = next(c for c in account.collections() if c.default)  # the source's default
    items = account.fetch(calendar, list(account.listing(calendar).etags))
    meeting = next(t for t, _ in items.values() if "weekly-meeting" in t)
    attendees = [line for line in unfolded_lines(meeting) if line.startswith("ATTENDEE")]
    assert len(attendees) == 2 * 50 and all("SCHEDULE-AGENT=CLIENT" in a for a in attendees)
    names = {c.name for c in account.collections()}
    assert "Contacts" not in names  # kinds=["calendars"] moved no address book


def test_item_problems_cost_only_the_item(servers, tmp_path):
    """An item the destination refuses (too large) and an item changed on both sides are reported
    with collection and UID; everything else is copied, the destination's change is kept."""
    source = servers["xandikos"].add_user()
    destination = servers["radicale"].add_user()
    account = DavAccount(source)
    hrefs = corpus.populate(account)
    work = hrefs["Work"]
    big = corpus.WORK.replace("work-review", "big").replace(
        "CLASS:PRIVATE", "ATTACH;ENCODING=BASE64;VALUE=BINARY:" + "A" * LIMIT
    )
    account.put("calendar", f"{work}big.ics", big, None)
    first = copy_groupware(source, destination, plan="gw", state_dir=tmp_path)
    assert [(p.collection, p.uid) for p in first.all_problems] == [("Work", "big@corpus")]
    assert "413" in first.all_problems[0].reason
    assert first.total("added") == 10

    # the review changes on both sides: the destination's version stays
    dest = DavAccount(destination)
    dest_work = next(c for c in dest.collections() if c.name == "Work")
    dest_href, dest_etag = next(iter(dest.listing(dest_work).etags.items()))
    changed_there = corpus.WORK.replace("SUMMARY:Review", "SUMMARY:Review (destination)")
    dest.put("calendar", dest_href, changed_there, dest_etag)
    source_href = f"{work}work-review@corpus.ics"
    etag = account.listing(next(c for c in account.collections() if c.href == work)).etags[
        source_href
    ]
    account.put(
        "calendar",
        source_href,
        corpus.WORK.replace("SUMMARY:Review", "SUMMARY:Review (source)"),
        etag,
    )
    delta = copy_groupware(source, destination, plan="gw", state_dir=tmp_path, phase="delta")
    assert {p.uid for p in delta.all_problems} == {"big@corpus", "work-review@corpus"}
    assert delta.total("kept_changed") == 1 and delta.total("updated") == 0
    assert "Review (destination)" in dest.fetch(dest_work, [dest_href])[dest_href][0]
    account.close()
    dest.close()


def test_refused_login_names_account_and_server_not_password(servers):
    good = servers["radicale"].add_user()
    wrong = DavEndpoint(url=good.url, user=good.user, password="not-" + good.password)
    with pytest.raises(DavError) as refused:
        preflight(wrong, servers["xandikos"].add_user())
    assert refused.value.status == 401
    assert str(refused.value) == f"{good.user} at {good.url}: login refused"


def test_dav_endpoint_from_a_connection():
    connection = Endpoint("acme_new_dav", "imap", "dav.new.example", 8443,
                          extra={"path": "remote.php/dav", "ca_file": "/etc/ca.pem"})  # fmt: skip
    endpoint = DavEndpoint.from_connection(connection, "alice", "secret")
    assert endpoint == DavEndpoint("https://dav.new.example:8443/remote.php/dav", "alice",
                                   "secret", ca_file="/etc/ca.pem")  # fmt: skip
    assert "secret" not in repr(endpoint)
    plain = Endpoint("old", "imap", "127.0.0.1", extra={"security": "none", "verify": False})
    assert DavEndpoint.from_connection(plain, "bob", "pw").url == "http://127.0.0.1/"
    with pytest.raises(ValueError, match="'bob' has no password"):
        DavEndpoint.from_connection(plain, "bob", None)
