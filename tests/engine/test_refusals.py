"""What the destination refuses is reported with the server's reason, never retried forever, and
everything else is copied: over quota across several folders, a message above the size limit,
and credentials refused (failing at once, without a storm of logins)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from harness.corpus import make_message, snapshot
from harness.engine_helpers import endpoints, make_plan, seed_account
from harness.figures import record
from harness.proxy import CuttingProxy

from mailmigrate.errors import AuthenticationFailed
from mailmigrate.plan import Account
from mailmigrate.sync import copy_account, preflight

WHEN = datetime(2024, 2, 1, 12, 0, 0, tzinfo=UTC)
LEGACY_TO_MODERN = {"INBOX": "INBOX", "INBOX.Sent": "Sent", "INBOX.Lists": "Lists"}


def _messages(seed: int, count: int, size: int):
    return [(make_message(seed * 1000 + i, size=size), ("\\Seen",), WHEN + timedelta(hours=i))
            for i in range(count)]  # fmt: skip


def _within(src, dst, pairs: dict[str, str]) -> int:
    """Every destination folder holds only source messages, none twice; how many it holds."""
    held = 0
    for source_name, destination_name in pairs.items():
        expected, actual = snapshot(src, source_name), snapshot(dst, destination_name)
        assert not actual - expected, f"{destination_name} holds what {source_name} does not"
        held += sum(actual.values())
    return held


def test_over_quota_reports_each_folders_refusals_and_a_rerun_completes(
    legacy_imap, modern_imap, new_account, tmp_path
):
    user, password = new_account(legacy_imap)
    src = legacy_imap.client(user, password)
    corpus = {
        "INBOX": _messages(1, 12, 40_000),
        "INBOX.Sent": _messages(2, 10, 40_000),
        "INBOX.Lists": _messages(3, 8, 40_000),
        "INBOX.Empty": [],
    }
    seed_account(src, corpus)
    dst_user, dst_password = new_account(modern_imap, quota_bytes=600_000)
    account = Account(user, dst_user, password, dst_password)
    # One lane: the folders fill the quota in a known order, so every folder after the first
    # meets refusals.
    plan = make_plan(tmp_path, [account], batch_messages=4, parallel_folders=1)
    source, destination = endpoints(legacy_imap, modern_imap)

    check = preflight(plan, account, source, destination)
    assert any("quota" in problem for problem in check.problems), check.problems
    lines: list[str] = []
    first = copy_account(plan, account, source, destination, "initial", progress=lines.append)
    assert not first.ok and not any("retrying" in line for line in lines)
    totals = first.totals()
    assert totals["copied"] > 0 and totals["copied"] + totals["failed"] == 30
    refused = Counter(failure.folder for failure in first.failures)
    assert set(refused) >= {"Sent", "Lists"}, refused
    for failure in first.failures:
        assert "quota" in failure.reason.lower(), failure.reason  # the server's own words
    by_folder = {folder.source: folder for folder in first.folders}
    for name, count in refused.items():
        assert by_folder[name].failed == count and not by_folder[name].ok
    summary = first.to_dict()
    assert {row["source"] for row in summary["folders"] if row["failed"]} == set(refused)
    report = "\n".join(first.summary_lines())
    assert all(f"message {name} uid" in report for name in refused)
    dst = modern_imap.client(dst_user, dst_password)
    assert "Empty" in {name for _, _, name in dst.list_folders()}  # folders are all there
    assert _within(src, dst, LEGACY_TO_MODERN) == totals["copied"]

    modern_imap.set_quota(dst_user, None)
    second = copy_account(plan, account, source, destination, "initial")
    assert second.ok, second.summary_lines()
    assert second.totals()["copied"] == totals["failed"]
    for source_name, destination_name in LEGACY_TO_MODERN.items():
        assert snapshot(dst, destination_name) == snapshot(src, source_name)
    record("refusals", over_quota_messages=totals["failed"], folders_with_refusals=len(refused))


def test_a_message_above_the_size_limit_is_reported_once_per_pass_not_retried(
    legacy_imap, private_imap, new_account, tmp_path
):
    limited = private_imap("modern", max_mail_size=30_000)
    user, password = new_account(legacy_imap)
    src = legacy_imap.client(user, password)
    big = make_message(9_001, size=80_000)
    seed_account(src, {
        "INBOX": _messages(4, 6, 3_000) + [(big, (), WHEN)] + _messages(5, 4, 3_000),
        "INBOX.Sent": [(make_message(9_002, size=60_000), ("\\Seen",), WHEN)],
    })  # fmt: skip
    dst_user, dst_password = new_account(limited)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account], batch_messages=5)
    source, destination = endpoints(legacy_imap, limited)
    dst = limited.client(dst_user, dst_password)

    for attempt in (1, 2):
        lines: list[str] = []
        result = copy_account(plan, account, source, destination, "initial",
                              progress=lines.append)  # fmt: skip
        assert not any("retrying" in line for line in lines), lines  # a refusal, not a fault
        assert sorted(f.size for f in result.failures) == [60_000, 80_000]
        assert {f.folder for f in result.failures} == {"INBOX", "Sent"}
        for failure in result.failures:
            assert "size" in failure.reason.lower(), failure.reason
        assert result.totals()["copied"] == (10 if attempt == 1 else 0)
        assert _within(src, dst, {"INBOX": "INBOX", "INBOX.Sent": "Sent"}) == 10
    record("refusals", above_size_limit=2, passes_not_retrying=2)


def test_refused_credentials_fail_at_once_with_one_login_per_side(
    legacy_imap, modern_imap, new_account, tmp_path
):
    user, password = new_account(legacy_imap)
    dst_user, _ = new_account(modern_imap)
    wrong = "Wrong-Destination-Pw-4471"
    account = Account(user, dst_user, password, wrong)
    plan = make_plan(tmp_path, [account])
    source, destination = endpoints(legacy_imap, modern_imap)
    proxy = CuttingProxy(modern_imap.host, modern_imap.port, record=True)
    try:
        lines: list[str] = []
        try:
            copy_account(plan, account, source, replace(destination, port=proxy.port), "initial",
                         progress=lines.append)  # fmt: skip
        except AuthenticationFailed as exc:
            text = str(exc)
        else:
            raise AssertionError("a refused login must fail the pass")
        sent = bytes(proxy.to_server)
    finally:
        proxy.close()
    assert sent.upper().count(b" LOGIN ") == 1 and not lines  # no reconnects, no retries
    assert f"destination {dst_user}" in text and "refused" in text and wrong not in text
    check = preflight(plan, account, source, destination)
    assert not check.ok and any("refused" in p and dst_user in p for p in check.problems)
    assert all(wrong not in p for p in check.problems)
    record("refusals", refused_logins=2)
