"""The engine across protocols: Dovecot -> EWS simulator -> Dovecot.

No Exchange server can run here; ``tests/ews_simulator`` is a local EWS SOAP endpoint backed by a
real store, and exchangelib's own request code runs unchanged against it.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from ews_simulator import impersonating
from exchangelib.protocol import close_connections
from harness.corpus import make_message, seed_folder, snapshot
from harness.engine_helpers import make_plan, rich_corpus, seed_account

from mailmigrate.connections import endpoint_from_dict
from mailmigrate.plan import Account
from mailmigrate.sync import copy_account

ADMIN, ADMIN_PASSWORD = "admin@example.com", "admin-Secret-71"
ALICE = "alice@example.com"
FOLDERS = {"INBOX": ("Inbox",), "Sent": ("Sent Items",), "Projects/2024": ("Projects", "2024")}


def _corpus(seed: int):
    # Exchange has no "deleted but not expunged" state: leave \Deleted out of this corpus.
    return [m for m in rich_corpus(seed) if "\\Deleted" not in m[1]]


@pytest.fixture
def exchange():
    with impersonating(ADMIN, ADMIN_PASSWORD, ALICE) as started:
        yield started
    close_connections()


def _exchange_view(store, folder) -> Counter:
    return Counter(
        (hashlib.sha256(i.mime).hexdigest(), i.is_read) for i in store.messages(ALICE, folder)
    )


def _imap_view(client, folder) -> Counter:
    return Counter(
        (sha, "\\Seen" in flags)
        for (sha, flags, _), n in snapshot(client, folder).items()
        for _ in range(n)
    )


def test_imap_to_exchange_and_back(modern_imap, legacy_imap, new_account, tmp_path, exchange):
    store, simulator, ews = exchange
    user, password = new_account(modern_imap)
    src = modern_imap.client(user, password)
    seed_account(
        src, {"INBOX": _corpus(20), "Sent": _corpus(21)[:6], "Projects/2024": _corpus(22)[:4]}
    )
    imap = endpoint_from_dict("src", modern_imap.connection("src"))
    # The Exchange side has no password in the plan: the admin impersonates the mailbox.
    to_exchange = Account(user, ALICE, password, None)
    plan = make_plan(tmp_path / "in", [to_exchange])

    first = copy_account(plan, to_exchange, imap, ews, "initial")
    assert first.ok, first.summary_lines()
    for imap_folder, exchange_folder in FOLDERS.items():
        assert _exchange_view(store, exchange_folder) == _imap_view(src, imap_folder), imap_folder
    # Imported messages are not drafts, unless they were drafts (\Draft) on the source.
    drafts = [item.is_draft for item in store.messages(ALICE, ("Inbox",))]
    assert sum(drafts) == sum("\\Draft" in flags for _, flags, _ in _corpus(20)) == 4
    assert copy_account(plan, to_exchange, imap, ews, "initial").totals()["copied"] == 0

    # A delta: new mail and a read-state change on the source, under throttling.
    seed_folder(src, "INBOX", [(make_message(31_000 + i), (), _corpus(0)[0][2]) for i in range(4)])
    src.select_folder("INBOX")
    src.add_flags(src.search("UNSEEN")[:1], ["\\Seen"])
    simulator.busy(3, back_off_ms=50)
    delta = copy_account(plan, to_exchange, imap, ews, "delta")
    assert delta.ok and delta.totals()["copied"] == 4 and delta.totals()["flags_updated"] == 1
    assert _exchange_view(store, ("Inbox",)) == _imap_view(src, "INBOX")

    # And back from Exchange into a fresh IMAP account of the legacy layout.
    back_user, back_password = new_account(legacy_imap)
    from_exchange = Account(ALICE, back_user, None, back_password)
    back_plan = make_plan(tmp_path / "out", [from_exchange])
    back = copy_account(
        back_plan,
        from_exchange,
        ews,
        endpoint_from_dict("dst", legacy_imap.connection("dst")),
        "initial",
    )
    assert back.ok, back.summary_lines()
    dst = legacy_imap.client(back_user, back_password)
    for imap_folder, legacy_folder in {
        "INBOX": "INBOX",
        "Sent": "INBOX.Sent Items",
        "Projects/2024": "INBOX.Projects.2024",
    }.items():
        assert snapshot(dst, legacy_folder) == snapshot(src, imap_folder), imap_folder
    assert (
        copy_account(
            back_plan,
            from_exchange,
            ews,
            endpoint_from_dict("dst", legacy_imap.connection("dst")),
            "delta",
        ).totals()["copied"]
        == 0
    )


def test_exchange_to_exchange(tmp_path, exchange):
    store, _, ews = exchange
    store.add_mailbox("bob@example.com")
    sent = ("Sent Items",)
    for i in range(8):
        store.add_message(ALICE, ("Inbox",), make_message(41_000 + i), is_read=bool(i % 2))
    for i in range(3):
        store.add_message(ALICE, sent, make_message(42_000 + i), is_read=True)
    account = Account(ALICE, "bob@example.com")
    plan = make_plan(tmp_path, [account])
    first = copy_account(plan, account, ews, ews, "initial")
    assert first.ok and first.totals()["copied"] == 11, first.summary_lines()
    for folder in (("Inbox",), ("Sent Items",)):
        assert Counter(
            (hashlib.sha256(i.mime).hexdigest(), i.is_read)
            for i in store.messages("bob@example.com", folder)
        ) == _exchange_view(store, folder)
    assert copy_account(plan, account, ews, ews, "delta").totals()["copied"] == 0


def test_folders_differing_only_in_case_stay_apart_on_exchange(
    modern_imap, new_account, tmp_path, exchange
):
    """IMAP tells "Projects" from "projects"; Exchange does not. Each keeps its own folder (the
    second one renamed), instead of both being poured into one."""
    store, _, ews = exchange
    user, password = new_account(modern_imap)
    src = modern_imap.client(user, password)
    seed_account(src, {"INBOX": _corpus(40)[:3], "Projects": _corpus(41)[:5],
                       "projects": _corpus(42)[:4]})  # fmt: skip
    account = Account(user, ALICE, password, None)
    plan = make_plan(tmp_path, [account])
    imap = endpoint_from_dict("src", modern_imap.connection("src"))

    result = copy_account(plan, account, imap, ews, "initial")
    assert result.ok, result.summary_lines()
    assert _exchange_view(store, ("Projects",)) == _imap_view(src, "Projects")
    assert _exchange_view(store, ("projects (2)",)) == _imap_view(src, "projects")
    destinations = {f.source: f.destination for f in result.folders}
    assert destinations["Projects"] == "Projects" and destinations["projects"] == "projects (2)"
    assert "'projects' is taken by source folder 'Projects'" in " ".join(result.summary_lines())
    assert copy_account(plan, account, imap, ews, "delta").totals()["copied"] == 0
