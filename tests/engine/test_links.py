"""The engine over shaped links (harness/shaper.py: a few milliseconds each way, no timing
asserted) and with COMPRESS=DEFLATE (RFC 4978) against Dovecot's ``imap_zlib``.

Every "exact" assertion compares each message's bytes, flags and INTERNALDATE as multisets.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from harness.corpus import make_message, seed_folder
from harness.engine_helpers import (
    assert_same_folders,
    endpoints,
    make_plan,
    rich_corpus,
    seed_account,
)
from harness.proxy import CuttingProxy
from harness.shaper import ShapingProxy

from mailmigrate.connections import endpoint_from_dict
from mailmigrate.mailbox import imap_append
from mailmigrate.mailbox.base import Message, MessageInfo
from mailmigrate.mailbox.imap import ImapMailbox
from mailmigrate.pipeline import growing_batches
from mailmigrate.plan import Account
from mailmigrate.sync import copy_account

FOLDERS = {"INBOX": "INBOX", "INBOX.Sent": "Sent", "INBOX.Projects": "Projects",
           "INBOX.Lists": "Lists"}  # fmt: skip


@pytest.fixture(scope="module")
def zlib_servers(dovecot_factory):
    """A legacy source and a modern destination, both offering COMPRESS=DEFLATE."""
    return dovecot_factory("legacy", compression=True), dovecot_factory("modern", compression=True)


def _text_corpus(seed: int, count: int):
    """Text messages (they compress well), with the rich corpus's odd ones among them."""
    plain = [(make_message(seed * 1000 + i, size=4000 + i * 300), ("\\Seen",), when)
             for i, (_, _, when) in enumerate(rich_corpus(seed)[:count])]  # fmt: skip
    return plain + rich_corpus(seed + 50)[-6:]


def _account(source_server, destination_server, new_account):
    user, password = new_account(source_server)
    client = source_server.client(user, password)
    seed_account(client, {"INBOX": _text_corpus(1, 30), "INBOX.Sent": _text_corpus(2, 12),
                          "INBOX.Projects": _text_corpus(3, 8), "INBOX.Lists": []})  # fmt: skip
    dst_user, dst_password = new_account(destination_server)
    return Account(user, dst_user, password, dst_password), client


def _shaped(source, destination, delay: float = 0.002, **extra):
    """Endpoints through a shaping proxy each, and the proxies."""
    near_source = ShapingProxy(source.host, source.port, delay=delay)
    near_destination = ShapingProxy(destination.host, destination.port, delay=delay)
    src, dst = endpoints(source, destination, **extra)
    return (
        replace(src, port=near_source.port),
        replace(dst, port=near_destination.port),
        near_source,
        near_destination,
    )


def test_compressed_copy_over_a_shaped_link_is_exact_and_smaller_on_the_wire(
    zlib_servers, new_account, tmp_path
):
    source_server, destination_server = zlib_servers
    account, src_client = _account(source_server, destination_server, new_account)
    plan = make_plan(tmp_path, [account], batch_messages=9)
    source, destination, near_source, near_destination = _shaped(*zlib_servers)
    with near_source, near_destination:
        first = copy_account(plan, account, source, destination, "initial")
        assert first.ok, first.summary_lines()
        # Compressed both ways: fewer bytes crossed each link than the messages hold.
        copied = first.totals()["copied_bytes"]
        assert near_source.traffic.bytes_down < copied * 0.7
        assert near_destination.traffic.bytes_up < copied * 0.7
        dst_client = destination_server.client(account.destination_user,
                                               account.destination_password)  # fmt: skip
        assert_same_folders(src_client, dst_client, FOLDERS)

        # A delta over the compressed sessions: new mail, changed flags, nothing lost.
        new = _text_corpus(7, 3)
        seed_folder(src_client, "INBOX.Sent", new)
        src_client.select_folder("INBOX")
        uids = src_client.search("ALL")[:4]
        src_client.add_flags(uids, ["\\Flagged", "Work"])
        delta = copy_account(plan, account, source, destination, "delta")
        assert delta.ok, delta.summary_lines()
        assert delta.totals()["copied"] == len(new)
        assert_same_folders(src_client, dst_client, FOLDERS)


def test_compress_false_on_a_connection_keeps_the_session_uncompressed(
    zlib_servers, new_account, tmp_path
):
    source_server, destination_server = zlib_servers
    account, src_client = _account(source_server, destination_server, new_account)
    plan = make_plan(tmp_path, [account])
    source, destination, near_source, near_destination = _shaped(*zlib_servers, compress=False)
    with near_source, near_destination:
        result = copy_account(plan, account, source, destination, "initial")
        assert result.ok, result.summary_lines()
        copied = result.totals()["copied_bytes"]
        # Every message's bytes crossed as they are, and the proxy read every command's answer.
        assert near_source.traffic.bytes_down > copied
        assert near_destination.traffic.bytes_up > copied
        assert near_destination.traffic.commands >= 4
    dst_client = destination_server.client(account.destination_user, account.destination_password)
    assert_same_folders(src_client, dst_client, FOLDERS)


def test_a_cut_compressed_copy_resumes_exactly(zlib_servers, new_account, tmp_path, monkeypatch):
    """Cut both links in the middle of a compressed copy whose big messages' bytes go on to the
    destination as they arrive: the resumed copy is exact."""
    passed_on = []
    begin = imap_append.PipelinedAppender.begin
    monkeypatch.setattr(imap_append.PipelinedAppender, "begin",
                        lambda self, info: (passed_on.append(info.ref), begin(self, info)))  # fmt: skip
    source_server, destination_server = zlib_servers
    account, src_client = _account(source_server, destination_server, new_account)
    seed_folder(src_client, "INBOX.Lists", [(make_message(9000 + i, size=90_000), (), when)
                                            for i, (_, _, when) in enumerate(rich_corpus(9))])  # fmt: skip
    plan = make_plan(tmp_path, [account], batch_messages=5)
    source, destination, near_source, near_destination = _shaped(*zlib_servers)
    cuts = []
    done = threading.Event()

    def cut_midway() -> None:
        while near_destination.traffic.bytes_up < 150_000:
            if done.wait(0.002):
                return
        near_source.cut()
        near_destination.cut()
        cuts.append(near_destination.traffic.bytes_up)

    with near_source, near_destination:
        cutter = threading.Thread(target=cut_midway, daemon=True)
        cutter.start()
        result = copy_account(plan, account, source, destination, "initial",
                              retry_delays=(0.1, 0.2, 0.4))  # fmt: skip
        done.set()
        cutter.join(10)
        assert cuts, "the copy ended before the cut"
        assert result.ok, result.summary_lines()
    assert passed_on  # the big messages went on as they arrived, compressed
    dst_client = destination_server.client(account.destination_user, account.destination_password)
    assert_same_folders(src_client, dst_client, FOLDERS)


def test_an_unchanged_delta_reads_every_folder_in_one_round_trip_and_selects_none(
    legacy_imap, modern_imap, new_account, tmp_path
):
    account, src_client = _account(legacy_imap, modern_imap, new_account)
    plan = make_plan(tmp_path, [account], parallel_folders=1)
    near_source = CuttingProxy(legacy_imap.host, legacy_imap.port, record=True)
    near_destination = CuttingProxy(modern_imap.host, modern_imap.port, record=True)
    source, destination = endpoints(legacy_imap, modern_imap)
    source = replace(source, port=near_source.port)
    destination = replace(destination, port=near_destination.port)
    try:
        assert copy_account(plan, account, source, destination, "initial").ok
        near_source.to_server.clear()
        near_destination.to_server.clear()
        delta = copy_account(plan, account, source, destination, "delta")
        assert delta.ok and delta.totals()["copied"] == 0
    finally:
        near_source.close()
        near_destination.close()
    for sent in (bytes(near_source.to_server), bytes(near_destination.to_server)):
        commands = [line.split(b" ", 2)[1].upper() for line in sent.split(b"\r\n") if b" " in line]
        assert b"SELECT" not in commands and b"EXAMINE" not in commands, commands
        assert commands.count(b"STATUS") == len(FOLDERS), commands  # one per folder, at once


def test_a_folder_written_after_its_state_was_read_is_asked_again(modern_imap, new_account):
    user, password = new_account(modern_imap)
    endpoint = endpoint_from_dict("dst", modern_imap.connection("dst"))
    mailbox = ImapMailbox(endpoint, user, None, "destination")
    mailbox.connect()
    try:
        mailbox.read_states([("INBOX",)])
        before = mailbox.append_mark(("INBOX",))
        raw, flags, when = rich_corpus(4)[0]
        info = MessageInfo(ref=1, identity="x", size=len(raw), flags=frozenset(flags),
                           internaldate=when)  # fmt: skip
        mailbox.append(("INBOX",), [Message(info=info, content=raw)])
        after = mailbox.append_mark(("INBOX",))
    finally:
        mailbox.close()
    assert int(after.split(":")[1]) == int(before.split(":")[1]) + 1


def test_batches_grow_from_small_and_shrink_towards_the_end():
    infos = [MessageInfo(ref=i, identity="", size=50_000) for i in range(400)]
    sizes = [sum(i.size for i in batch) for batch in growing_batches(infos, 10_000, 16 << 20)]
    assert [i.ref for b in growing_batches(infos, 10_000, 16 << 20) for i in b] == list(range(400))
    assert sizes[0] <= 256 * 1024
    assert max(sizes) <= 4 * 1024 * 1024 and max(sizes) > 2 * sizes[0]
    assert sizes[-1] < max(sizes) / 4
    assert all(len(b) <= 7 for b in growing_batches(infos, 7, 16 << 20))
    single = [MessageInfo(ref=1, identity="", size=30 << 20)]  # larger than any batch: alone
    assert [len(b) for b in growing_batches(single, 10, 16 << 20)] == [1]
