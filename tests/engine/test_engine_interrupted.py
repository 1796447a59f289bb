"""Passes killed at many points (connections cut by a proxy) and run again end identical to the
source: nothing lost, nothing doubled."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from harness.corpus import make_message
from harness.engine_helpers import assert_same_folders, make_plan, rich_corpus, seed_account
from harness.proxy import CuttingProxy

from mailmigrate.connections import endpoint_from_dict
from mailmigrate.errors import MailboxError
from mailmigrate.plan import Account
from mailmigrate.sync import copy_account

FOLDERS = {"INBOX": "INBOX", "INBOX.Sent": "Sent", "INBOX.Lists": "Lists"}


@pytest.fixture
def proxied(legacy_imap, modern_imap):
    src_proxy = CuttingProxy(legacy_imap.host, legacy_imap.port)
    dst_proxy = CuttingProxy(modern_imap.host, modern_imap.port)
    source = endpoint_from_dict("src", legacy_imap.connection("src"))
    destination = endpoint_from_dict("dst", modern_imap.connection("dst"))
    yield (
        replace(source, port=src_proxy.port),
        replace(destination, port=dst_proxy.port),
        src_proxy,
        dst_proxy,
    )
    src_proxy.close()
    dst_proxy.close()


def _messages(seed: int, count: int):
    rng = random.Random(seed)
    when = rich_corpus(0)[0][2]
    return [
        (make_message(seed * 10_000 + i, size=rng.randint(1_000, 40_000)),
         rng.choice([(), ("\\Seen",), ("\\Seen", "\\Flagged"), ("Work",)]), when)
        for i in range(count)
    ]  # fmt: skip


def _cut_runs(plan, account, source, destination, proxies, points, phase):
    """Run the pass once per cut point, each time cutting one side's connections after that
    many bytes; no engine reconnects, so every cut ends the pass like a killed worker."""
    interrupted = 0
    for i, point in enumerate(points):
        proxy = proxies[i % 2]
        proxy.arm(point)
        try:
            copy_account(plan, account, source, destination, phase, retry_delays=())
        except MailboxError:
            interrupted += 1
        finally:
            proxy.disarm()
    return interrupted


def test_initial_and_delta_cut_at_many_points_end_identical(
    legacy_imap, modern_imap, new_account, tmp_path, proxied
):
    source, destination, src_proxy, dst_proxy = proxied
    user, password = new_account(legacy_imap)
    src = legacy_imap.client(user, password)
    seed_account(
        src, {"INBOX": _messages(1, 150), "INBOX.Sent": _messages(2, 40), "INBOX.Lists": []}
    )
    dst_user, dst_password = new_account(modern_imap)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account], batch_messages=20, parallel_folders=1)
    rng = random.Random(7)

    points = sorted(rng.randint(100, 3_000_000) for _ in range(16))
    interrupted = _cut_runs(
        plan, account, source, destination, (dst_proxy, src_proxy), points, "initial"
    )
    assert interrupted >= 8  # most cut points fall inside the pass
    final = copy_account(plan, account, source, destination, "initial")
    assert final.ok, final.summary_lines()
    dst = modern_imap.client(dst_user, dst_password)
    assert_same_folders(src, dst, FOLDERS)

    # New mail and flag changes on the source, then a delta cut at many points.
    seed_account(src, {"INBOX": _messages(3, 60), "INBOX.Lists": _messages(4, 20)})
    src.select_folder("INBOX")
    uids = src.search("ALL")
    src.add_flags(uids[:15], ["\\Answered"])
    src.remove_flags(uids[15:30], ["\\Seen"])
    points = sorted(rng.randint(100, 1_500_000) for _ in range(12))
    _cut_runs(plan, account, source, destination, (src_proxy, dst_proxy), points, "delta")
    final = copy_account(plan, account, source, destination, "delta")
    assert final.ok, final.summary_lines()
    assert_same_folders(src, dst, FOLDERS)


def test_appends_the_client_never_heard_of_are_found_not_doubled(
    legacy_imap, modern_imap, new_account, tmp_path, proxied
):
    """The destination stores a batch but the connection dies before its OK arrives, in the
    initial pass (found by the full compare) and in a delta (found through the append mark)."""
    source, destination, _, dst_proxy = proxied
    user, password = new_account(legacy_imap)
    src = legacy_imap.client(user, password)
    seed_account(src, {"INBOX": _messages(6, 60)})
    dst_user, dst_password = new_account(modern_imap)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account], batch_messages=10, parallel_folders=1)
    dst = modern_imap.client(dst_user, dst_password)
    for phase, occurrence in (("initial", 3), ("delta", 2)):
        if phase == "delta":
            seed_account(src, {"INBOX": _messages(7, 40)})
        dst_proxy.arm_on_reply(b"[APPENDUID", occurrence)
        with pytest.raises(MailboxError):
            copy_account(plan, account, source, destination, phase, retry_delays=())
        assert dst_proxy.cuts == (1 if phase == "initial" else 2)
        result = copy_account(plan, account, source, destination, phase)
        assert result.ok and result.totals()["skipped"] >= 10, result.summary_lines()
        assert_same_folders(src, dst, {"INBOX": "INBOX"})


def test_the_engine_reconnects_by_itself_and_resumes(
    legacy_imap, modern_imap, new_account, tmp_path, proxied
):
    source, destination, src_proxy, dst_proxy = proxied
    user, password = new_account(legacy_imap)
    src = legacy_imap.client(user, password)
    seed_account(src, {"INBOX": _messages(5, 120)})
    dst_user, dst_password = new_account(modern_imap)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account], batch_messages=10)
    dst_proxy.arm(400_000)
    lines: list[str] = []
    result = copy_account(plan, account, source, destination, "initial",
                          retry_delays=(0.1, 0.1, 0.1), progress=lines.append)  # fmt: skip
    assert dst_proxy.cuts == 1
    assert result.ok, result.summary_lines()
    assert any("retrying" in line for line in lines)
    assert_same_folders(src, modern_imap.client(dst_user, dst_password), {"INBOX": "INBOX"})
