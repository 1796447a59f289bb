"""Pipelined appends (mailbox/imap_append.py): several APPEND batches under way on the
destination at once, each answered, refused and recorded on its own.

The destination sits behind a shaping proxy (a few ms each way) so that answers come back
while later batches are being sent; a spy on the appender asserts that batches really were
under way together.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from harness.corpus import make_message, snapshot
from harness.engine_helpers import assert_same_folders, endpoints, make_plan, seed_account
from harness.hostile import Cut, RewritingProxy
from harness.proxy import CuttingProxy
from harness.shaper import ShapingProxy

from mailmigrate.errors import MailboxError
from mailmigrate.mailbox import imap_append
from mailmigrate.plan import Account
from mailmigrate.state import AccountState, mailbox_identity
from mailmigrate.sync import copy_account

WHEN = datetime(2024, 3, 1, 9, 0, 0, tzinfo=UTC)


def _messages(seed: int, count: int, size: int = 3_000):
    return [(make_message(seed * 1000 + i, size=size), ("\\Seen",), WHEN + timedelta(hours=i))
            for i in range(count)]  # fmt: skip


@pytest.fixture
def under_way(monkeypatch):
    """The most batches one appender had sent and not yet received, over the test."""
    most = [0]
    close = imap_append.PipelinedAppender.close

    def spy(self):
        close(self)
        most[0] = max(most[0], self.in_flight)

    monkeypatch.setattr(imap_append.PipelinedAppender, "close", spy)
    return most


def _migration(src_server, dst_server, new_account, tmp_path, folders: dict, **copy):
    """A source account seeded with ``folders`` and a new destination account, with their plan:
    ``(account, plan, source endpoint, destination endpoint, source client, destination
    client)``."""
    user, password = new_account(src_server)
    src = src_server.client(user, password)
    seed_account(src, folders)
    dst_user, dst_password = new_account(dst_server)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account], **copy)
    source, destination = endpoints(src_server, dst_server)
    return account, plan, source, destination, src, dst_server.client(dst_user, dst_password)


def _recorded(tmp_path, plan, account, source, destination, folder=("INBOX",)):
    with AccountState(tmp_path / "state", plan.name,
                      mailbox_identity(source, account.source_user),
                      mailbox_identity(destination, account.destination_user)) as state:  # fmt: skip
        return state.entries(folder)


def test_a_refused_batch_in_the_middle_of_a_pipeline_is_handled_alone(
    legacy_imap, private_imap, new_account, tmp_path, under_way
):
    limited = private_imap("modern", max_mail_size=30_000)
    big = make_message(9_101, size=80_000)
    # Batches of 5: the second holds the one message the destination refuses (too big).
    account, plan, source, destination, src, dst = _migration(
        legacy_imap,
        limited,
        new_account,
        tmp_path,
        {"INBOX": _messages(1, 7) + [(big, (), WHEN)] + _messages(2, 7)},
        batch_messages=5,
    )
    with ShapingProxy(limited.host, limited.port, delay=0.005) as near:
        destination = replace(destination, port=near.port)
        for attempt in (1, 2):
            lines: list[str] = []
            result = copy_account(plan, account, source, destination, "initial",
                                  progress=lines.append)  # fmt: skip
            assert not any("retrying" in line for line in lines), lines  # a refusal, no fault
            assert [f.size for f in result.failures] == [80_000]
            assert "size" in result.failures[0].reason.lower()
            assert result.totals()["copied"] == (14 if attempt == 1 else 0)
            # The batches before and after the refused one were answered and recorded; the
            # refused one's other messages went one by one; nothing is on the server twice.
            entries = _recorded(tmp_path, plan, account, source, destination)
            assert len(entries) == 14 and all(e.dest_ref for e in entries.values())
            held, expected = snapshot(dst, "INBOX"), snapshot(src, "INBOX")
            assert sum(held.values()) == 14 and not held - expected
            assert len({e.dest_ref for e in entries.values()}) == 14
    assert under_way[0] >= 2  # the second batch was sent before the first was answered


def test_a_cut_in_the_middle_of_a_pipeline_resumes_without_doubles(
    legacy_imap, modern_imap, new_account, tmp_path, under_way
):
    account, plan, source, destination, src, dst = _migration(
        legacy_imap,
        modern_imap,
        new_account,
        tmp_path,
        {"INBOX": _messages(3, 60, 6_000), "INBOX.Sent": _messages(4, 25, 6_000)},
        batch_messages=6,
        parallel_folders=1,
    )
    cutter = CuttingProxy(modern_imap.host, modern_imap.port)
    try:
        with ShapingProxy(cutter.host, cutter.port, delay=0.003) as near:
            destination = replace(destination, port=near.port)
            # The third batch is stored, its answer withheld and every connection cut: the
            # batches sent behind it may have landed too, none of them recorded.
            cutter.arm_on_reply(b"[APPENDUID", 3)
            with pytest.raises(MailboxError):
                copy_account(plan, account, source, destination, "initial", retry_delays=())
            assert cutter.cuts == 1 and under_way[0] >= 2
            # Recorded: whole batches whose answers were read, each on the server; stored as
            # well: at least the batch whose answer never came.
            recorded = _recorded(tmp_path, plan, account, source, destination)
            landed = sum(snapshot(dst, "INBOX").values())
            assert len(recorded) % 6 == 0 and len(recorded) + 6 <= landed
            dst.select_folder("INBOX", readonly=True)
            assert {e.dest_ref for e in recorded.values()} <= set(dst.search("ALL"))
            result = copy_account(plan, account, source, destination, "initial")
            assert result.ok, result.summary_lines()
            assert result.totals()["skipped"] >= landed - len(recorded)
            assert_same_folders(src, dst, {"INBOX": "INBOX", "INBOX.Sent": "Sent"})
            again = copy_account(plan, account, source, destination, "delta")
            assert again.ok and again.totals()["copied"] == 0
            assert_same_folders(src, dst, {"INBOX": "INBOX", "INBOX.Sent": "Sent"})
    finally:
        cutter.close()


def test_fetches_sent_ahead_survive_a_cut_source_exactly(
    legacy_imap, modern_imap, new_account, tmp_path, monkeypatch
):
    """The source's next FETCH goes out before the previous answer is read; a connection cut
    with one sent ahead costs only a reconnect, and the copy is exact."""
    from mailmigrate.mailbox import imap_wire

    ahead = [0]
    fetch = imap_wire.uid_fetch_ahead

    def spy(imap, uids, uid_set, items, sent=None, following=None, *hooks):
        ahead[0] += following is not None
        return fetch(imap, uids, uid_set, items, sent, following, *hooks)

    monkeypatch.setattr(imap_wire, "uid_fetch_ahead", spy)
    account, plan, source, destination, src, dst = _migration(
        legacy_imap,
        modern_imap,
        new_account,
        tmp_path,
        {"INBOX": _messages(5, 80, 8_000), "INBOX.Sent": _messages(6, 30, 8_000)},
        batch_messages=5,
    )
    cutter = CuttingProxy(legacy_imap.host, legacy_imap.port)
    try:
        cutter.arm(300_000)
        lines: list[str] = []
        result = copy_account(plan, account, replace(source, port=cutter.port), destination,
                              "initial", retry_delays=(0.1, 0.1), progress=lines.append)  # fmt: skip
        assert cutter.cuts == 1 and any("retrying" in line for line in lines)
        assert result.ok, result.summary_lines()
    finally:
        cutter.close()
    assert ahead[0] >= 10
    assert_same_folders(src, dst, {"INBOX": "INBOX", "INBOX.Sent": "Sent"})


def test_messages_stream_to_the_destination_and_a_source_cut_mid_batch_keeps_them(
    legacy_imap, modern_imap, new_account, tmp_path
):
    """Each message goes into the destination's APPEND as soon as it is read: when the source
    is cut in the middle of a batch, the command is ended with the whole messages sent so far,
    which land and are recorded; the resumed copy adds the rest, nothing twice."""
    mail = _messages(7, 120, 6_000)
    raw, flags, when = mail[49]  # the 10th of the second batch of 40 (each about 245 KB)
    mail[49] = (raw.replace(b"\r\n\r\n", b"\r\nX-Cut: here\r\n\r\n", 1), flags, when)
    account, plan, source, destination, src, dst = _migration(
        legacy_imap,
        modern_imap,
        new_account,
        tmp_path,
        {"INBOX": mail},
        batch_messages=40,
        parallel_folders=1,
    )
    cuts = []

    def cut_once(response: bytes) -> bytes | Cut:
        if b"X-Cut: here" not in response or cuts:
            return response
        cuts.append(response)
        return Cut(response[: len(response) // 2])  # the stream ends: no reset loses bytes

    with RewritingProxy(legacy_imap.host, legacy_imap.port, cut_once) as dying:
        source = replace(source, port=dying.port)
        with pytest.raises(MailboxError):
            copy_account(plan, account, source, destination, "initial", retry_delays=())
        assert cuts
        recorded = _recorded(tmp_path, plan, account, source, destination)
        assert 40 < len(recorded) < 80  # the first batch and part of the second
        assert sum(snapshot(dst, "INBOX").values()) == len(recorded)  # whole messages only
        result = copy_account(plan, account, source, destination, "initial")
        assert result.ok and result.totals()["copied"] == 120 - len(recorded)
        assert_same_folders(src, dst, {"INBOX": "INBOX"})


@pytest.fixture
def passed_on(monkeypatch):
    """The messages whose bytes went to the destination as they arrived (their UIDs)."""
    started: list = []
    begin = imap_append.PipelinedAppender.begin

    def spy(self, info):
        started.append(info.ref)
        begin(self, info)

    monkeypatch.setattr(imap_append.PipelinedAppender, "begin", spy)
    return started


def test_big_messages_go_on_to_the_destination_as_their_bytes_arrive(
    legacy_imap, modern_imap, new_account, tmp_path, passed_on
):
    """A big message's bytes are appended while its FETCH response is still arriving (the
    destination does not wait for the whole message); the copy is exact all the same."""
    big = [(make_message(7_100 + i, size=300_000), ("\\Seen", "2024"), WHEN + timedelta(days=i))
           for i in range(6)]  # fmt: skip
    account, plan, source, destination, src, dst = _migration(
        legacy_imap,
        modern_imap,
        new_account,
        tmp_path,
        {"INBOX": _messages(8, 20) + big[:3], "INBOX.Sent": big[3:] + _messages(9, 5)},
        batch_messages=4,
    )
    with ShapingProxy(legacy_imap.host, legacy_imap.port, delay=0.003, mbit_down=200) as near:
        result = copy_account(plan, account, replace(source, port=near.port), destination,
                              "initial")  # fmt: skip
    assert result.ok and result.totals()["copied"] == 31, result.summary_lines()
    assert len(passed_on) == 6 and len(set(passed_on)) == 6  # the big ones, each once
    assert_same_folders(src, dst, {"INBOX": "INBOX", "INBOX.Sent": "Sent"})


def test_a_source_cut_inside_a_message_passed_on_lands_none_of_its_batch(
    legacy_imap, modern_imap, new_account, tmp_path, passed_on
):
    """The source dies while a message's bytes are going on to the destination: the APPEND it
    is part of is never ended (its session is dropped), so no half message and none of that
    batch lands; the resumed copy adds what is missing, nothing twice."""
    mail = _messages(10, 8, 200_000)
    raw, flags, when = mail[4]  # the 5th, after the 4th in the third batch (1, 2, 2, 1, ...)
    mail[4] = (raw.replace(b"\r\n\r\n", b"\r\nX-Cut: here\r\n\r\n", 1), flags, when)
    account, plan, source, destination, src, dst = _migration(
        legacy_imap, modern_imap, new_account, tmp_path, {"INBOX": mail}, parallel_folders=1
    )

    def cut(response: bytes) -> bytes | Cut:
        return Cut(response[: len(response) // 2]) if b"X-Cut: here" in response else response

    with (
        RewritingProxy(legacy_imap.host, legacy_imap.port, cut) as dying,
        pytest.raises(MailboxError, match="inside a literal"),
    ):
        copy_account(plan, account, replace(source, port=dying.port), destination, "initial",
                     retry_delays=())  # fmt: skip
    assert passed_on[-1] == 5 and len(set(passed_on)) == len(passed_on)
    recorded = _recorded(tmp_path, plan, account, source, destination)
    held, sent = snapshot(dst, "INBOX"), snapshot(src, "INBOX")
    assert not held - sent  # whole messages only, each as on the source
    assert len(recorded) <= sum(held.values()) <= 3  # none of the third batch (4th, 5th)
    result = copy_account(plan, account, source, destination, "initial")
    assert result.ok, result.summary_lines()
    assert result.totals()["copied"] == 8 - sum(held.values())
    assert_same_folders(src, dst, {"INBOX": "INBOX"})
