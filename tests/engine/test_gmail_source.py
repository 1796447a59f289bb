"""Gmail and Google Workspace as a source (issue 22): one copy per real folder, not one per view.

Two paths, both against real Dovecot servers: the folder-based one against Dovecot shaped like
Gmail (``gmail`` layout, All Mail seeded with a copy of every message), the label-based one
through :class:`harness.gmail_sim.GmailSimulator`, a Gmail simulator (a proxy adding X-GM-EXT-1
and answering X-GM-LABELS / X-GM-MSGID). Every "exact" assertion compares bytes, flags and
INTERNALDATE of every message as multisets.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from harness.corpus import make_message, seed_folder, snapshot
from harness.engine_helpers import endpoints, make_plan
from harness.gmail_sim import (
    ALL_MAIL,
    SENT,
    STARRED,
    GmailMessage,
    GmailSimulator,
    gmail_id,
    seed_gmail,
)

from mailmigrate import labels
from mailmigrate.folders import map_folders
from mailmigrate.mailbox.base import Folder
from mailmigrate.owner_report import build_owner_report
from mailmigrate.owner_report_render import render_text
from mailmigrate.plan import Account, FolderRules
from mailmigrate.report import account_report
from mailmigrate.sync import copy_account, open_pair, plan_folders, preflight

BASE = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def issue_scenario() -> list[GmailMessage]:
    """190 distinct messages: 100 in INBOX (10 of them also labelled Work), 20 more labelled
    Work only, 20 sent, 50 archived (All Mail only); 10 of the INBOX ones starred and important."""
    messages = []

    def add(n: int, labels: tuple[str, ...], **kw) -> None:
        seed = len(messages)
        when = BASE + timedelta(hours=seed)
        flags = ("\\Seen",) if seed % 3 else ()
        raw = make_message(22_000 + seed, size=900 + seed * 7)
        messages.append(GmailMessage(raw, when, labels, flags, **kw))

    for i in range(100):
        add(1, ("INBOX", "Work") if i >= 90 else ("INBOX",), starred=i < 10, important=i < 10)
    for _ in range(20):
        add(1, ("Work",))
    for _ in range(20):
        add(1, (SENT,))
    for _ in range(50):
        add(1, ())
    return messages


def expected(messages, keep) -> Counter:
    """The snapshot a folder holding exactly the ``keep`` messages has."""
    return Counter(
        (hashlib.sha256(m.raw).hexdigest(), frozenset(m.flags), m.when.astimezone(UTC))
        for m in messages
        if keep(m)
    )


def destination_counts(client) -> dict[str, int]:
    counts = {}
    for flags, _, name in client.list_folders():
        if b"\\Noselect" not in flags:
            counts[name] = client.folder_status(name, [b"MESSAGES"])[b"MESSAGES"]
    return {name: n for name, n in counts.items() if n}


@pytest.fixture(scope="module")
def gmail_imap(dovecot_factory):
    """Dovecot with Gmail's folders and special uses (``[Gmail]/All Mail`` \\All...)."""
    return dovecot_factory("gmail")


@pytest.fixture(params=["folders", "labels"])
def gmail_account(request, gmail_imap, modern_imap, new_account, tmp_path):
    """A Gmail-shaped source account with the issue's scenario, seen directly (folder path) or
    through the Gmail simulator (label path); a fresh destination account."""
    user, password = new_account(gmail_imap)
    src = gmail_imap.client(user, password)
    messages = issue_scenario()
    seed_gmail(src, messages)
    dst_user, dst_password = new_account(modern_imap)
    account = Account(user, dst_user, password, dst_password)
    source, destination = endpoints(gmail_imap, modern_imap)
    simulator = None
    if request.param == "labels":
        simulator = GmailSimulator(gmail_imap, user)
        source = replace(source, port=simulator.port)
    dst = modern_imap.client(dst_user, dst_password)
    yield request.param, account, source, destination, src, dst, messages, simulator
    if simulator:
        simulator.close()
    src.logout()
    dst.logout()


def star(src, message: GmailMessage) -> None:
    """Star an archived message as Gmail does: \\Flagged in All Mail, a copy in Starred."""
    src.select_folder(ALL_MAIL)
    found = src.fetch(src.search("ALL"), ["BODY.PEEK[]"])
    src.add_flags([uid for uid, d in found.items() if d[b"BODY[]"] == message.raw], ["\\Flagged"])
    message.flags = (*message.flags, "\\Flagged")
    seed_folder(src, STARRED, [(message.raw, message.flags, message.when)])


def assert_exact(src, dst, messages) -> None:
    """Every real folder copied exactly, the archived messages once in Archive, no views."""
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")
    assert snapshot(dst, "Work") == snapshot(src, "Work")
    assert snapshot(dst, "Sent") == snapshot(src, SENT)
    assert snapshot(dst, "Archive") == expected(messages, lambda m: not m.labels)


def test_gmail_source_copies_each_real_folder_once_and_archived_mail_once(gmail_account, tmp_path):
    path, account, source, destination, src, dst, messages, simulator = gmail_account
    plan = make_plan(tmp_path, [account], propagate_deletions=True)

    checked = preflight(plan, account, source, destination)
    assert checked.ok, checked.summary_lines()
    assert checked.labels["by_labels"] is (path == "labels")
    assert checked.labels["archive"] == {
        "source": ALL_MAIL, "destination": "Archive", "all": 190, "held": 140, "archived": 50
    }  # fmt: skip
    views = {v["folder"]: v["messages"] for v in checked.labels["views"]}
    assert views == {"[Gmail]/Starred": 10, "[Gmail]/Important": 10, "[Gmail]/Chats": 0}
    text = "\n".join(checked.summary_lines())
    kind = "Gmail, X-GM-EXT-1" if path == "labels" else "an \\All folder, as on Gmail"
    assert f"label-based source ({kind})" in text and "50 archived -> Archive" in text
    assert not any("propagate_deletions" in w for w in checked.warnings)
    default = preflight(make_plan(tmp_path / "default", [account]), account, source, destination)
    assert any("propagate_deletions is off" in w for w in default.warnings)
    rows = {row["source"]: row for row in checked.folders}
    assert rows[ALL_MAIL]["messages"] == 50 and rows[ALL_MAIL]["destination"] == "Archive"
    assert not {"[Gmail]/Starred", "[Gmail]/Important", "[Gmail]", "[Gmail]/Chats"} & set(rows)

    first = copy_account(plan, account, source, destination, "initial")
    assert first.ok, first.summary_lines()
    assert first.totals()["copied"] == 200
    assert destination_counts(dst) == {"INBOX": 100, "Work": 30, "Sent": 20, "Archive": 50}
    assert not any(name.startswith("[Gmail]") for _, _, name in dst.list_folders())
    assert_exact(src, dst, messages)
    compared = account_report(plan, account, source, destination)
    assert compared.ok, compared.summary_lines()  # skipped messages of All Mail are not missing
    row = next(f for f in compared.folders if f.source == ALL_MAIL)
    assert (row.destination, row.source_messages, row.missing, row.extra) == ("Archive", 50, 0, 0)
    owner = render_text(build_owner_report(plan.name, account, first))
    assert "Your 50 archived messages (in All Mail, under no label) are in Archive" in owner
    assert "Starred messages keep their star, shown as a flag" in owner
    if simulator:
        assert simulator.label_fetches >= 1

    again = copy_account(plan, account, source, destination, "delta")
    assert again.ok and again.totals()["copied"] == 0, again.summary_lines()

    # Deltas: a new inbox message, one archived on arrival, one archived with a label, an inbox
    # message archived since, an archived message starred since and one labelled since.
    def new(seed, labels, **kw):
        raw = make_message(23_000 + seed, size=1500)
        return GmailMessage(raw, BASE + timedelta(days=30, hours=seed), labels, ("\\Seen",), **kw)

    arrivals = [new(1, ("INBOX",)), new(2, ()), new(3, ("Work",))]
    seed_gmail(src, arrivals)
    archived_now = messages[50]  # INBOX only, not starred
    src.select_folder("INBOX")
    uid = [
        u
        for u, d in src.fetch(src.search("ALL"), ["BODY.PEEK[]"]).items()
        if d[b"BODY[]"] == archived_now.raw
    ]
    src.delete_messages(uid)
    src.expunge()
    archived_now.labels = ()
    star(src, messages[-1])  # archived
    labelled_now = messages[-2]  # archived, labelled Work since
    seed_folder(src, "Work", [(labelled_now.raw, labelled_now.flags, labelled_now.when)])
    labelled_now.labels = ("Work",)
    messages += arrivals

    delta = copy_account(plan, account, source, destination, "delta")
    assert delta.ok, delta.summary_lines()
    assert destination_counts(dst) == {"INBOX": 100, "Work": 32, "Sent": 20, "Archive": 51}
    assert_exact(src, dst, messages)
    final = copy_account(plan, account, source, destination, "delta")
    assert final.ok and final.totals()["copied"] == 0, final.summary_lines()

    # Only a flag changes in All Mail (an archived message starred): no folder count moves, the
    # archive pass must still see it.
    star(src, messages[150])  # archived, untouched so far
    flagged = copy_account(plan, account, source, destination, "delta")
    assert flagged.ok and flagged.totals()["flags_updated"] == 1, flagged.summary_lines()
    assert_exact(src, dst, messages)


def test_plan_can_copy_every_gmail_folder_as_it_is(gmail_imap, modern_imap, new_account, tmp_path):
    """``folders: {labels: as_folders}``: the views are copied too (what happened before)."""
    user, password = new_account(gmail_imap)
    src = gmail_imap.client(user, password)
    seed_gmail(src, issue_scenario())
    dst_user, dst_password = new_account(modern_imap)
    account = Account(user, dst_user, password, dst_password)
    plan = replace(make_plan(tmp_path, [account]), folders=FolderRules(labels="as_folders"))
    result = copy_account(plan, account, *endpoints(gmail_imap, modern_imap), "initial")
    assert result.ok, result.summary_lines()
    assert result.totals()["copied"] == 360
    dst = modern_imap.client(dst_user, dst_password)
    assert destination_counts(dst)["[Gmail]/All Mail"] == 190
    assert snapshot(dst, "[Gmail]/All Mail") == snapshot(src, ALL_MAIL)
    src.logout()
    dst.logout()


def test_labels_tell_apart_messages_identity_cannot(gmail_imap, modern_imap, new_account, tmp_path):
    """Two messages with the same Message-ID and size but other bytes, one in INBOX and one
    archived: X-GM-LABELS put the archived one in Archive (identity alone could pick either).
    A message archived with a nested, non-ASCII label stays out of Archive."""
    user, password = new_account(gmail_imap)
    src = gmail_imap.client(user, password)
    inbox = make_message(24_000, size=2000)
    body_at = inbox.index(b"\r\n\r\n") + 10
    archived = inbox[:body_at] + bytes([inbox[body_at] ^ 0x01]) + inbox[body_at + 1 :]
    assert archived != inbox and len(archived) == len(inbox)
    labelled = make_message(24_001, size=3000)  # archived, but with a nested non-ASCII label
    messages = [
        GmailMessage(archived, BASE, ()),
        GmailMessage(inbox, BASE, ("INBOX",)),
        GmailMessage(labelled, BASE, ("Kunden/Müller & Co",), ("\\Seen",)),
    ]
    seed_gmail(src, messages)
    dst_user, dst_password = new_account(modern_imap)
    account = Account(user, dst_user, password, dst_password)
    source, destination = endpoints(gmail_imap, modern_imap)
    simulator = GmailSimulator(gmail_imap, user)
    try:
        source = replace(source, port=simulator.port)
        plan = make_plan(tmp_path, [account])
        result = copy_account(plan, account, source, destination, "initial")
        src_box, dst_box = open_pair(account, source, destination)
        with src_box, dst_box:
            selection = labels.select_archived(src_box, plan_folders(plan, src_box, dst_box))
        assert selection.by_labels and list(selection.gmail_ids.values()) == [gmail_id(archived)]
    finally:
        simulator.close()
    assert result.ok, result.summary_lines()
    dst = modern_imap.client(dst_user, dst_password)
    assert snapshot(dst, "Archive") == expected(messages, lambda m: not m.labels)
    assert snapshot(dst, "INBOX") == expected(messages, lambda m: "INBOX" in m.labels)
    assert snapshot(dst, "Kunden/Müller & Co") == expected(messages, lambda m: m.raw == labelled)
    src.logout()
    dst.logout()


def test_plan_key_folders_labels_is_validated_with_its_line(tmp_path):
    from test_plan import plan_file, problems

    from mailmigrate.plan import load_plan

    assert load_plan(plan_file(tmp_path)).folders.labels == "archive"
    as_is = plan_file(tmp_path, "folders:\n  labels: as_folders\n")
    assert load_plan(as_is).folders.labels == "as_folders"
    wrong = plan_file(tmp_path, "folders:\n  exclude: [Spam]\n  labels: as_folder\n")
    assert problems(wrong) == [
        'acme.yaml:7: folders.labels: "as_folder" is not one of archive, as_folders; '
        'did you mean "as_folders"?'
    ]


def _gmail_folders(*extra: Folder) -> list[Folder]:
    uses = {"All Mail": "\\All", "Starred": "\\Flagged", "Important": "\\Important",
            "Sent Mail": "\\Sent", "Drafts": "\\Drafts", "Spam": "\\Junk", "Trash": "\\Trash",
            "Chats": None}  # fmt: skip
    return [
        Folder(("INBOX",), "INBOX"),
        Folder(("[Gmail]",), "[Gmail]", selectable=False),
        *(Folder(("[Gmail]", name), f"[Gmail]/{name}", use) for name, use in uses.items()),
        *extra,
    ]


class _Source:
    """What :func:`labels.detect` asks of a source besides its folders."""

    def __init__(self, offered: bool) -> None:
        self.offered = offered

    def labels_offered(self) -> bool:
        return self.offered


def _label_plan(source_folders, destination_folders, offered=False, mode="archive"):
    layout = labels.detect(_Source(offered), source_folders, mode)
    plan = map_folders(source_folders, destination_folders, FolderRules(),
                       destination_separator="/", **labels.mapping_options(layout))  # fmt: skip
    plan.label_layout = layout
    return plan


def test_label_mapping_skips_views_and_empty_containers_and_finds_the_archive():
    destination = [Folder(("INBOX",), "INBOX"), Folder(("Sent",), "Sent", "\\Sent"),
                   Folder(("Archiv",), "Archiv", "\\Archive")]  # fmt: skip
    plan = _label_plan(_gmail_folders(Folder(("Work",), "Work")), destination)
    assert {m.source.path: m.destination for m in plan.mappings} == {
        ("INBOX",): ("INBOX",),
        ("Work",): ("Work",),
        ("[Gmail]", "All Mail"): ("Archiv",),  # the destination's \Archive, whatever its name
        ("[Gmail]", "Sent Mail"): ("Sent",),
        ("[Gmail]", "Drafts"): ("Drafts",),
        ("[Gmail]", "Spam"): ("Spam",),  # created with \Junk, without the [Gmail] level
        ("[Gmail]", "Trash"): ("Trash",),
    }
    assert plan.archive_source == ("[Gmail]", "All Mail")
    spam = next(m for m in plan.mappings if m.source.path == ("[Gmail]", "Spam"))
    assert spam.create_special_use == "\\Junk" and "Gmail's system folder" in spam.renamed
    assert sorted(f.path[-1] for f in plan.views) == ["Chats", "Important", "Starred"]
    assert plan.to_dict()["archive_source"] == ["[Gmail]", "All Mail"]


def test_a_label_named_archive_is_a_label_and_the_archive_is_created():
    plan = _label_plan(
        _gmail_folders(Folder(("Archive",), "Archive")), [Folder(("INBOX",), "INBOX")]
    )
    archive = next(m for m in plan.mappings if m.source.path == ("[Gmail]", "All Mail"))
    assert archive.destination == ("Archive",) and archive.create_special_use == "\\Archive"
    label = next(m for m in plan.mappings if m.source.path == ("Archive",))
    assert label.destination == ("Archive (2)",) and "taken by" in label.renamed


def test_gmail_hiding_all_mail_from_imap_still_skips_the_views():
    folders = [f for f in _gmail_folders() if f.special_use != "\\All"]
    plan = _label_plan(folders, [Folder(("INBOX",), "INBOX")], offered=True)
    assert plan.label_layout.all_folder is None and plan.archive_source is None
    assert not any(m.source.path[-1] in ("Starred", "Important", "Chats") for m in plan.mappings)
    assert labels.detect(_Source(False), [Folder(("INBOX",), "INBOX")]) is None
    as_is = _label_plan(_gmail_folders(), [], mode="as_folders")
    assert as_is.views == [] and len([m for m in as_is.mappings if m.source.selectable]) == 9
