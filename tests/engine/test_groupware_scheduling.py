"""No migration ever emails anyone: a Xandikos that mails invitations (iMIP to a mail catcher on
loopback) receives the corpus from Radicale. A plain PUT of the 50-attendee meeting makes it
mail all 50 (the control: the catcher sees what a server sends); the copy makes it mail no one
(the only messages are its probe's, to the reserved .invalid domain), reports the meeting it
would not copy, and copies everything else."""

from __future__ import annotations

import pytest
from harness import groupware_corpus as corpus
from harness.mail_catcher import MailCatcher
from harness.radicale import RadicaleServer
from harness.xandikos import XandikosMailingServer

from mailmigrate.groupware.dav import DavAccount
from mailmigrate.groupware.scheduling import PROBE_ATTENDEE, SENDS, probe
from mailmigrate.groupware.sync import copy_groupware


@pytest.fixture(scope="module")
def catcher():
    server = MailCatcher()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def servers(catcher):
    radicale, xandikos = RadicaleServer(), XandikosMailingServer(catcher.port)
    try:
        radicale.start()
        xandikos.start()
        yield radicale, xandikos
    finally:
        radicale.stop()
        xandikos.stop()


def settle(catcher: MailCatcher) -> list[str]:
    """The recipients so far. Xandikos hands iMIP to SMTP within the PUT, and the catcher
    records a message before it answers the DATA: no waiting needed."""
    return catcher.recipients()


def test_copy_mails_no_one(servers, catcher, tmp_path):
    radicale, xandikos = servers
    destination = xandikos.add_user("owner")
    account = DavAccount(destination)
    account.discover()
    assert account.schedules and account.addresses == [xandikos.address]
    calendar = next(c for c in account.collections() if c.default)

    # control: a plain PUT of the meeting mails every attendee
    account.put("calendar", f"{calendar.href}control.ics", corpus.weekly_meeting(), None)
    assert len(set(settle(catcher))) == 50
    account.delete(f"{calendar.href}control.ics", None)
    assert probe(account, calendar) == SENDS
    catcher.clear()

    source = radicale.add_user()
    corpus.populate(DavAccount(source))
    result = copy_groupware(source, destination, plan="gw", state_dir=tmp_path)
    assert set(settle(catcher)) <= {PROBE_ATTENDEE.removeprefix("mailto:")}
    problems = result.all_problems
    assert [p.uid for p in problems] == ["weekly-meeting@corpus"]
    assert "would email its attendees" in problems[0].reason
    assert result.total("added") == 9  # every item but the meeting
    account.close()
