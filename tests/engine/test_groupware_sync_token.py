"""A sync token the server no longer accepts (expired, or the server's cache was reset) costs
one full listing, never a missed change: the delta after it still copies what is new and, when
the plan opts in, deletes what the source deleted. Real Radicale on loopback."""

from __future__ import annotations

import sqlite3

import pytest
from harness import groupware_corpus as corpus
from harness.groupware_corpus import snapshot
from harness.radicale import RadicaleServer
from harness.xandikos import XandikosServer

from mailmigrate.groupware.dav import DavAccount
from mailmigrate.groupware.sync import copy_groupware

# Well-formed and unknown to the server: Radicale answers 403, Xandikos 412 (RFC 6578's
# valid-sync-token precondition).
STALE = {"radicale": "http://radicale.org/ns/sync/" + "0" * 64, "xandikos": "0" * 40}


@pytest.fixture(scope="module", params=["radicale", "xandikos"])
def server(request):
    started = RadicaleServer() if request.param == "radicale" else XandikosServer()
    started.start()
    try:
        yield request.param, started
    finally:
        started.stop()


def test_a_stale_sync_token_falls_back_to_a_full_listing_and_misses_nothing(server, tmp_path):
    name, dav = server
    source, destination = dav.add_user(), dav.add_user()
    account = DavAccount(source)
    hrefs = corpus.populate(account)
    first = copy_groupware(source, destination, plan="tok", state_dir=tmp_path)
    assert first.total("added") == 10

    states = list((tmp_path / "tok").glob("*.groupware.*.sqlite"))
    assert len(states) == 1
    with sqlite3.connect(states[0]) as db:
        assert db.execute(
            "SELECT count(*) FROM dav_collections WHERE token IS NOT NULL"
        ).fetchone()[0]
        db.execute("UPDATE dav_collections SET token = ?", (STALE[name],))

    account.put("calendar", f"{hrefs['Calendar']}late.ics",
                corpus.WORK.replace("work-review", "late"), None)  # fmt: skip
    account.delete(f"{hrefs['Contacts']}charles@corpus.vcf", None)
    account.close()

    delta = copy_groupware(source, destination, plan="tok", state_dir=tmp_path, phase="delta",
                           propagate_deletions=True)  # fmt: skip
    assert not delta.all_problems, [str(p) for p in delta.all_problems]
    assert (delta.total("added"), delta.total("deleted")) == (1, 1)
    copied = snapshot(destination)
    for outcome in delta.collections:
        assert copied[outcome.destination][1] == snapshot(source)[outcome.source][1]
    with sqlite3.connect(states[0]) as db:  # fresh tokens again, the stale one is gone
        tokens = {row[0] for row in db.execute("SELECT token FROM dav_collections")}
    assert STALE[name] not in tokens and None not in tokens
