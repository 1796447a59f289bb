"""The sync state never hides mail the destination lacks (issue 13): it belongs to one source and
one destination mailbox, and a folder whose identity (UIDVALIDITY) changed is compared again.

Every IMAP scenario runs the `mailmigrate` command against real Dovecot servers (legacy layout to
modern) and ends with both sides identical: bytes, flags and dates of every message; the Exchange
one runs the engine against the EWS simulator.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections import Counter
from datetime import UTC, datetime

from ews_simulator import EwsSimulator, SimulatorStore
from exchangelib.protocol import close_connections
from harness.cli_migration import CliMigration, assert_migrated, seed_source
from harness.corpus import make_message, seed_folder, snapshot
from harness.engine_helpers import make_plan, rich_corpus, seed_account

from mailmigrate.connections import Endpoint, endpoint_from_dict
from mailmigrate.plan import Account
from mailmigrate.sync import copy_account

ALL = 19  # messages of the three seeded folders


def _copied(entry: dict) -> int:
    return entry["totals"]["copied"]


def _uidvalidity(server, account, folder: str = "INBOX") -> int:
    client = server.client(*account)
    try:
        return int(client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])
    finally:
        client.logout()


def _wipe_mailbox(server, account) -> None:
    """Delete the account's whole mail store, as an admin deleting and re-creating the account
    does; its folders come back empty, with UIDVALIDITYs of a later second."""
    old = _uidvalidity(server, account)
    local, _, domain = account[0].partition("@")
    shutil.rmtree(server.root / "mail" / domain / local)
    time.sleep(max(0.0, old + 1 - time.time()))  # Dovecot's first UIDVALIDITY is the time
    assert _uidvalidity(server, account) != old


def _copied_once(legacy_imap, modern_imap, new_account, tmp_path, seed: int):
    """A seeded source account copied once by the CLI into a new destination account:
    ``(cli, source account, destination account)``."""
    alice = seed_source(legacy_imap, new_account, seed)
    mm1 = new_account(modern_imap)
    cli = CliMigration(tmp_path, legacy_imap, modern_imap)
    cli.accounts((*alice, *mm1))
    assert cli.copy()[0].returncode == 0
    return cli, alice, mm1


def test_a_new_destination_account_for_the_same_source_user_gets_every_message(
    legacy_imap, modern_imap, new_account, tmp_path
):
    """The issue's case: the CSV is corrected to send the source user to a new, empty account."""
    alice = seed_source(legacy_imap, new_account, 131)
    mm1, mm2 = new_account(modern_imap), new_account(modern_imap)
    cli = CliMigration(tmp_path, legacy_imap, modern_imap)
    cli.accounts((*alice, *mm1))
    done, entry = cli.copy()
    assert done.returncode == 0 and _copied(entry) == ALL, done.stderr

    cli.accounts((*alice, *mm2))
    done, entry = cli.copy()
    assert done.returncode == 0, done.stderr
    assert _copied(entry) == ALL and entry["totals"]["missing"] == 0
    assert_migrated(legacy_imap, alice, modern_imap, mm2)
    report, _ = cli.run("report")
    assert report.returncode == 0, report.stderr


def test_a_destination_mailbox_deleted_and_recreated_empty_is_filled_again(
    legacy_imap, modern_imap, new_account, tmp_path
):
    cli, alice, mm1 = _copied_once(legacy_imap, modern_imap, new_account, tmp_path, 132)

    _wipe_mailbox(modern_imap, mm1)
    done, entry = cli.copy("delta")
    assert done.returncode == 0, done.stderr
    assert _copied(entry) == ALL
    assert "is not the one the state knows" in done.stderr
    assert_migrated(legacy_imap, alice, modern_imap, mm1)


def test_a_source_restored_from_a_backup_doubles_nothing(
    legacy_imap, modern_imap, new_account, tmp_path
):
    """The source store is restored: same messages (bytes, flags, dates), new UIDVALIDITYs."""
    cli, alice, mm1 = _copied_once(legacy_imap, modern_imap, new_account, tmp_path, 133)

    client = legacy_imap.client(*alice)
    backup = {folder: snapshot(client, folder) for folder in ("INBOX", "INBOX.Projects")}
    contents = {}
    for folder in backup:  # the bytes behind the snapshot's hashes
        client.select_folder(folder, readonly=True)
        fetched = client.fetch(client.search("ALL"), ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])
        contents[folder] = [(d[b"BODY[]"], tuple(f.decode() for f in d[b"FLAGS"] if f != b"\\Recent"),
                             d[b"INTERNALDATE"]) for d in fetched.values()]  # fmt: skip
    client.logout()
    _wipe_mailbox(legacy_imap, alice)
    client = legacy_imap.client(*alice)
    client.create_folder("INBOX.Projects")
    for folder, messages in contents.items():
        seed_folder(client, folder, messages)  # INBOX.Lists stays lost: no backup of it
        assert snapshot(client, folder) == backup[folder]
    client.logout()

    done, entry = cli.copy("delta")
    assert done.returncode == 0, done.stderr
    assert _copied(entry) == 0 and entry["totals"]["skipped"] == 16
    src, dst = legacy_imap.client(*alice), modern_imap.client(*mm1)
    for source_folder, destination_folder in (("INBOX", "INBOX"), ("INBOX.Projects", "Projects")):
        assert snapshot(dst, destination_folder) == backup[source_folder]
    src.logout()
    dst.logout()


def test_a_state_directory_copied_from_another_machine_is_not_trusted(
    legacy_imap, modern_imap, dovecot_factory, new_account, tmp_path
):
    """The same plan (same name, same CSV) runs on a second machine whose destination is another
    server holding an empty account of the same name; its state directory is a copy of the
    first machine's."""
    alice = seed_source(legacy_imap, new_account, 134)
    mm1 = new_account(modern_imap)
    first = CliMigration(tmp_path / "one", legacy_imap, modern_imap)
    first.accounts((*alice, *mm1))
    assert first.copy()[0].returncode == 0

    other = dovecot_factory("modern")
    other.add_account(*mm1)
    second = CliMigration(tmp_path / "two", legacy_imap, other)
    shutil.copytree(first.state_dir, second.state_dir)
    second.accounts((*alice, *mm1))
    done, entry = second.copy()
    assert done.returncode == 0, done.stderr
    assert _copied(entry) == ALL
    assert_migrated(legacy_imap, alice, other, mm1)


def test_the_state_of_another_plan_copied_or_renamed_into_place_is_not_trusted(
    legacy_imap, modern_imap, new_account, tmp_path
):
    """Plan one migrated alice to mm1. Plan two (alice to a new account) starts with a copy of
    plan one's state directory; then with plan one's file renamed to exactly the name plan two's
    file has: its recorded owner (plan and both mailboxes) does not match, so it is emptied,
    said so, and the copy starts over."""
    alice = seed_source(legacy_imap, new_account, 135)
    mm1, mm2, mm3 = (new_account(modern_imap) for _ in range(3))
    state_dir = tmp_path / "state"
    one = CliMigration(tmp_path / "one", legacy_imap, modern_imap, name="one", state_dir=state_dir)
    one.accounts((*alice, *mm1))
    assert one.copy()[0].returncode == 0
    (written,) = (state_dir / "one").glob("*.sqlite")

    two = CliMigration(tmp_path / "two", legacy_imap, modern_imap, name="two", state_dir=state_dir)
    shutil.copytree(state_dir / "one", state_dir / "two")
    two.accounts((*alice, *mm2))
    done, entry = two.copy()
    assert done.returncode == 0, done.stderr
    assert _copied(entry) == ALL
    assert_migrated(legacy_imap, alice, modern_imap, mm2)

    from mailmigrate.state import AccountState, mailbox_identity

    source = endpoint_from_dict("s", legacy_imap.connection("s"))
    destination = endpoint_from_dict("d", modern_imap.connection("d"))
    with AccountState(state_dir, "two", mailbox_identity(source, alice[0]),
                      mailbox_identity(destination, mm3[0])) as state:  # fmt: skip
        target = state.path
    target.unlink()
    shutil.copy(written, target)
    two.accounts((*alice, *mm3))
    done, entry = two.copy()
    assert done.returncode == 0, done.stderr
    assert "was written for plan one" in done.stderr and "not trusted" in done.stderr
    assert _copied(entry) == ALL
    assert_migrated(legacy_imap, alice, modern_imap, mm3)


def test_destination_folders_renamed_or_replaced_by_the_owner_are_refilled_not_written_into(
    legacy_imap, modern_imap, new_account, tmp_path
):
    """Between passes the owner renames Projects and deletes Lists, then creates a Lists of their
    own with two messages. A flag changes on the source. The delta recreates and refills
    Projects, fills the owner's Lists with the source's messages and never touches the owner's
    messages (today's state would set the flag on whatever message now has the old UID)."""
    cli, alice, mm1 = _copied_once(legacy_imap, modern_imap, new_account, tmp_path, 136)

    dst = modern_imap.client(*mm1)
    renamed = snapshot(dst, "Projects")
    dst.rename_folder("Projects", "Projects old")
    dst.delete_folder("Lists")
    dst.create_folder("Lists")
    when = datetime(2024, 3, 1, 9, tzinfo=UTC)
    own = [(make_message(136_900 + i, size=1200), ("\\Seen",), when) for i in range(2)]
    seed_folder(dst, "Lists", own)
    owners = snapshot(dst, "Lists")
    dst.logout()
    src = legacy_imap.client(*alice)
    src.select_folder("INBOX.Lists")
    src.add_flags(src.search("ALL")[:1], ["\\Flagged"])
    src.logout()

    done, entry = cli.copy("delta")
    assert done.returncode == 0, done.stderr
    assert _copied(entry) == 4 + 3
    src, dst = legacy_imap.client(*alice), modern_imap.client(*mm1)
    assert snapshot(dst, "Projects") == snapshot(src, "INBOX.Projects")
    assert snapshot(dst, "Projects old") == renamed
    assert snapshot(dst, "Lists") == snapshot(src, "INBOX.Lists") + owners
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")
    src.logout()
    dst.logout()


def test_an_exchange_folder_deleted_by_its_owner_is_recreated_and_refilled(
    modern_imap, new_account, tmp_path
):
    """The same on Exchange (the EWS simulator), where the marker is the folder's id."""
    store = SimulatorStore()
    store.add_user("admin@example.com", "admin-Secret-13", impersonation=True)
    store.add_mailbox("alice@example.com")
    user, password = new_account(modern_imap)
    corpus = [m for m in rich_corpus(139) if "\\Deleted" not in m[1]]
    client = modern_imap.client(user, password)
    seed_account(client, {"INBOX": corpus[:6], "Projects": corpus[6:10]})
    client.logout()
    account = Account(user, "alice@example.com", password, None)
    plan = make_plan(tmp_path, [account])
    imap = endpoint_from_dict("src", modern_imap.connection("src"))
    with EwsSimulator(store) as simulator:
        ews = Endpoint("exchange", "ews", simulator.url, login="admin@example.com",
                       password="admin-Secret-13", extra={"auth": "basic"})  # fmt: skip
        try:
            assert copy_account(plan, account, imap, ews, "initial").ok
            mailbox = store.mailbox("alice@example.com")
            projects = store.resolve_folder("alice@example.com", ("Projects",))
            for item in mailbox.items_in(projects.id):  # the owner deletes the folder
                del mailbox.items[item.id]
            del mailbox.folders[projects.id]

            again = copy_account(plan, account, imap, ews, "delta")
        finally:
            close_connections()
    assert again.ok, again.summary_lines()
    assert again.totals()["copied"] == 4
    refilled = store.messages("alice@example.com", ("Projects",))
    digest = lambda raw: hashlib.sha256(raw).hexdigest()  # noqa: E731
    assert Counter(digest(i.mime) for i in refilled) == Counter(
        digest(r) for r, _, _ in corpus[6:10]
    )
