"""The IMAP engine against two real, differently shaped Dovecot servers.

Every "exact" assertion compares each message's bytes, flags and INTERNALDATE as multisets.
"""

from __future__ import annotations

import shutil

from harness.corpus import make_message, seed_folder, snapshot
from harness.engine_helpers import (
    assert_same_folders,
    endpoints,
    make_plan,
    rich_corpus,
    seed_account,
)

from mailmigrate.plan import Account
from mailmigrate.sync import copy_account, preflight

LEGACY_TO_MODERN = {
    "INBOX": "INBOX",
    "INBOX.Sent": "Sent",
    "INBOX.Trash": "Trash",
    "INBOX.Projects": "Projects",
    "INBOX.Projects.2024": "Projects/2024",
    "INBOX.Entwürfe alt": "Entwürfe alt",
    "INBOX.Empty": "Empty",
}


def _legacy_account(legacy_imap, new_account, big=0):
    user, password = new_account(legacy_imap)
    client = legacy_imap.client(user, password)
    seed_account(
        client,
        {
            "INBOX": rich_corpus(1, big=big),
            "INBOX.Sent": rich_corpus(2)[:10],
            "INBOX.Trash": rich_corpus(3)[:3],
            "INBOX.Projects": rich_corpus(4)[:5],
            "INBOX.Projects.2024": rich_corpus(5)[:7],
            "INBOX.Entwürfe alt": rich_corpus(6)[:2],
            "INBOX.Empty": [],
        },
    )
    client.subscribe_folder("INBOX.Projects.2024")
    return user, password, client


def test_initial_copy_legacy_to_modern_is_exact_and_a_rerun_adds_nothing(
    legacy_imap, modern_imap, new_account, tmp_path
):
    user, password, src = _legacy_account(legacy_imap, new_account, big=20 * 1024 * 1024)
    dst_user, dst_password = new_account(modern_imap)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account], batch_messages=7)
    source, destination = endpoints(legacy_imap, modern_imap)

    first = copy_account(plan, account, source, destination, "initial")
    assert first.ok, first.summary_lines()
    total = sum(len(m) for m in (rich_corpus(1), rich_corpus(2)[:10], rich_corpus(3)[:3],
                                 rich_corpus(4)[:5], rich_corpus(5)[:7], rich_corpus(6)[:2])) + 1  # fmt: skip
    assert first.totals()["copied"] == total
    dst = modern_imap.client(dst_user, dst_password)
    assert_same_folders(src, dst, LEGACY_TO_MODERN)
    # Special-use mapping: the legacy plain "Sent" landed in the modern \Sent folder.
    assert [f for f in first.folders if f.source == "Sent"][0].destination == "Sent"
    assert "Projects/2024" in {name for _, _, name in dst.list_sub_folders()}

    second = copy_account(plan, account, source, destination, "initial")
    assert second.ok and second.totals()["copied"] == 0
    assert_same_folders(src, dst, LEGACY_TO_MODERN)


def test_modern_to_legacy_with_admin_login_and_deterministic_rename(
    legacy_imap, modern_imap, new_account, tmp_path
):
    user, password = new_account(modern_imap)
    src = modern_imap.client(user, password)
    seed_account(
        src, {"INBOX": rich_corpus(7), "Sent": rich_corpus(8)[:4], "v1.2": rich_corpus(9)[:3]}
    )
    dst_user, dst_password = new_account(legacy_imap)
    # No passwords in the plan: both sides log in with the connection's master user.
    account = Account(user, dst_user)
    plan = make_plan(tmp_path, [account])
    source, destination = endpoints(modern_imap, legacy_imap)

    result = copy_account(plan, account, source, destination, "initial")
    assert result.ok, result.summary_lines()
    renamed = [f for f in result.folders if f.renamed]
    assert [(f.source, f.destination) for f in renamed] == [("v1.2", "v1_2")]
    dst = legacy_imap.client(dst_user, dst_password)
    assert_same_folders(src, dst, {"INBOX": "INBOX", "Sent": "INBOX.Sent", "v1.2": "INBOX.v1_2"})
    again = copy_account(plan, account, source, destination, "delta")
    assert again.ok and again.totals()["copied"] == 0


def test_delta_copies_new_mail_and_source_flag_changes_but_keeps_destination_changes(
    legacy_imap, modern_imap, new_account, tmp_path
):
    user, password = new_account(legacy_imap)
    src = legacy_imap.client(user, password)
    seed_account(src, {"INBOX": rich_corpus(10), "INBOX.Sent": rich_corpus(11)[:5]})
    dst_user, dst_password = new_account(modern_imap)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account])
    source, destination = endpoints(legacy_imap, modern_imap)
    assert copy_account(plan, account, source, destination, "initial").ok

    # On the source: new mail, a new folder, flags changed both ways.
    seed_folder(
        src,
        "INBOX",
        [
            (make_message(5000 + i), ("\\Seen",) if i % 2 else (), rich_corpus(0)[0][2])
            for i in range(5)
        ],
    )
    seed_folder(src, "INBOX.New folder", rich_corpus(12)[:3])
    src.select_folder("INBOX")
    uids = src.search("ALL")
    src.add_flags(uids[0], ["\\Seen", "Important"])
    src.remove_flags(uids[7], ["\\Seen"])  # a \Seen message in the corpus
    # On the destination the user flags a message and reads another: a delta must keep that.
    dst = modern_imap.client(dst_user, dst_password)
    dst.select_folder("INBOX")
    dst_uids = dst.search("ALL")
    dst.add_flags(dst_uids[2], ["\\Flagged"])
    dst.add_flags(dst_uids[3], ["\\Seen"])
    user_changes = {
        uid: data[b"FLAGS"] for uid, data in dst.fetch(dst_uids[2:4], ["FLAGS"]).items()
    }

    delta = copy_account(plan, account, source, destination, "delta")
    assert delta.ok, delta.summary_lines()
    assert delta.totals()["copied"] == 8
    assert delta.totals()["flags_updated"] == 2
    assert not any(f.full_compare for f in delta.folders if f.source == "INBOX")
    dst.select_folder("INBOX")
    assert {
        uid: d[b"FLAGS"] for uid, d in dst.fetch(dst_uids[2:4], ["FLAGS"]).items()
    } == user_changes
    # Apart from the user's own two changes, the destination equals the source.
    dst.remove_flags(dst_uids[2], ["\\Flagged"])
    dst.remove_flags(dst_uids[3], ["\\Seen"])
    assert_same_folders(
        src, dst, {"INBOX": "INBOX", "INBOX.Sent": "Sent", "INBOX.New folder": "New folder"}
    )

    unchanged = copy_account(plan, account, source, destination, "delta")
    assert (
        unchanged.ok
        and unchanged.totals()["copied"] == 0
        and unchanged.totals()["flags_updated"] == 0
    )


def test_lost_state_and_uidvalidity_change_add_nothing(
    legacy_imap, modern_imap, new_account, tmp_path
):
    user, password = new_account(legacy_imap)
    src = legacy_imap.client(user, password)
    corpus = rich_corpus(13)
    seed_account(src, {"INBOX": corpus, "INBOX.Archive": corpus[:9]})
    dst_user, dst_password = new_account(modern_imap)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account])
    source, destination = endpoints(legacy_imap, modern_imap)
    assert copy_account(plan, account, source, destination, "initial").ok

    shutil.rmtree(tmp_path / "state")
    lost = copy_account(plan, account, source, destination, "delta")
    assert lost.ok and lost.totals()["copied"] == 0 and lost.totals()["skipped"] == len(corpus) + 9

    # The source folder is recreated: new UIDVALIDITY, same messages.
    before = src.folder_status("INBOX.Archive", ["UIDVALIDITY"])[b"UIDVALIDITY"]
    src.delete_folder("INBOX.Archive")
    import time

    time.sleep(1.1)  # Dovecot derives UIDVALIDITY from the clock
    seed_folder(src, "INBOX.Archive", corpus[:9])
    assert src.folder_status("INBOX.Archive", ["UIDVALIDITY"])[b"UIDVALIDITY"] != before
    again = copy_account(plan, account, source, destination, "delta")
    assert again.ok and again.totals()["copied"] == 0
    archive = [f for f in again.folders if f.source == "Archive"][0]
    assert archive.full_compare
    dst = modern_imap.client(dst_user, dst_password)
    assert_same_folders(src, dst, {"INBOX": "INBOX", "INBOX.Archive": "Archive"})


def test_deletions_propagate_only_when_the_plan_asks(
    legacy_imap, modern_imap, new_account, tmp_path
):
    for propagate in (False, True):
        user, password = new_account(legacy_imap)
        src = legacy_imap.client(user, password)
        seed_account(src, {"INBOX": rich_corpus(14)[:10]})
        dst_user, dst_password = new_account(modern_imap)
        account = Account(user, dst_user, password, dst_password)
        plan = make_plan(tmp_path / str(propagate), [account], propagate_deletions=propagate)
        source, destination = endpoints(legacy_imap, modern_imap)
        assert copy_account(plan, account, source, destination, "initial").ok
        src.select_folder("INBOX")
        gone = src.search("ALL")[:3]
        src.delete_messages(gone)
        src.uid_expunge(gone)  # only these: the corpus has a \Deleted message of its own
        delta = copy_account(plan, account, source, destination, "delta")
        assert delta.ok
        dst = modern_imap.client(dst_user, dst_password)
        remaining = sum(snapshot(dst, "INBOX").values())
        assert remaining == (7 if propagate else 10)
        assert delta.totals()["deleted"] == (3 if propagate else 0)


def test_refused_messages_are_reported_and_a_rerun_completes_without_duplicates(
    legacy_imap, modern_imap, new_account, tmp_path
):
    user, password = new_account(legacy_imap)
    src = legacy_imap.client(user, password)
    messages = [
        (make_message(7000 + i, size=40_000), ("\\Seen",), rich_corpus(0)[0][2]) for i in range(30)
    ]
    seed_account(src, {"INBOX": messages})
    dst_user, dst_password = new_account(modern_imap, quota_bytes=500_000)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account], batch_messages=5)
    source, destination = endpoints(legacy_imap, modern_imap)

    check = preflight(plan, account, source, destination)
    assert not check.ok and "quota" in " ".join(check.problems)

    first = copy_account(plan, account, source, destination, "initial")
    assert not first.ok
    assert (
        0 < first.totals()["failed"] < 30
        and first.totals()["copied"] + first.totals()["failed"] == 30
    )
    assert all("quota" in f.reason.lower() for f in first.failures)
    assert all(f.folder == "INBOX" for f in first.failures)

    modern_imap.set_quota(dst_user, None)
    second = copy_account(plan, account, source, destination, "initial")
    assert second.ok, second.summary_lines()
    assert second.totals()["copied"] == first.totals()["failed"]
    assert_same_folders(src, modern_imap.client(dst_user, dst_password), {"INBOX": "INBOX"})


def test_preflight_reports_folders_sizes_quota_and_mapping(
    legacy_imap, modern_imap, new_account, tmp_path
):
    user, password, _ = _legacy_account(legacy_imap, new_account)
    dst_user, dst_password = new_account(modern_imap, quota_bytes=50 * 1024 * 1024)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account])
    source, destination = endpoints(legacy_imap, modern_imap)
    result = preflight(plan, account, source, destination)
    assert result.ok, result.problems
    assert result.source["separator"] == "." and result.source["namespace_prefix"] == "INBOX."
    assert (
        result.destination["separator"] == "/"
        and result.destination["quota_limit"] == 50 * 1024 * 1024
    )
    assert "MULTIAPPEND" in result.destination["capabilities"]
    rows = {row["source"]: row for row in result.folders}
    assert rows["INBOX"]["messages"] == len(rich_corpus(1))
    assert rows["Projects/2024"]["destination"] == "Projects/2024"
    assert rows["Sent"]["special_use"] == "\\Sent"
    assert rows["Empty"]["messages"] == 0
    # Real quota figures in the log, and "no quota" when the server reports none.
    lines = result.summary_lines()
    assert any(line.startswith("source: ") and line.endswith(", no quota") for line in lines), lines
    assert any(line.endswith("quota 0 B of 50.0 MB used (0%)") for line in lines), lines
    assert not any("?" in line or "unlimited" in line for line in lines), lines

    wrong = Account(user, dst_user, "not-the-password", dst_password)
    failed = preflight(plan, wrong, source, destination)
    assert not failed.ok
    assert f"source {user}" in failed.problems[0] and "not-the-password" not in failed.problems[0]


def test_rate_limit_spreads_the_copy(legacy_imap, modern_imap, new_account, tmp_path):
    import time

    user, password = new_account(legacy_imap)
    src = legacy_imap.client(user, password)
    seed_account(src, {"INBOX": rich_corpus(15)[:24]})
    dst_user, dst_password = new_account(modern_imap)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account], messages_per_second=20.0, batch_messages=4)
    source, destination = endpoints(legacy_imap, modern_imap)
    started = time.monotonic()
    result = copy_account(plan, account, source, destination, "initial")
    assert result.ok and result.totals()["copied"] == 24
    # 24 messages at 20 per second cannot be done in much under 1.2 s (a functional bound,
    # not a speed measurement).
    assert time.monotonic() - started >= 1.0
