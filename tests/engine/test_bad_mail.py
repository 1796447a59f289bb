"""Malformed messages and hostile folder names, as servers we do not control hold them.

Messages with bare LF or CR, NUL bytes, broken MIME, 8-bit and huge headers, no body, odd or
missing Message-IDs copy byte-identical (as the source serves them), in both directions between
the two Dovecot layouts and through an interrupted pass. Folder names with ``%``, ``*``, quotes,
separators, control characters, ``..``, ``~`` and great length are copied, renamed
deterministically, or reported with the server's reason while the rest of the account copies.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from ews_simulator import EwsSimulator, SimulatorStore
from exchangelib.protocol import close_connections
from harness.corpus import make_message, snapshot
from harness.engine_helpers import endpoints, make_plan, seed_account
from harness.figures import record
from harness.proxy import CuttingProxy

from mailmigrate.connections import Endpoint, endpoint_from_dict
from mailmigrate.errors import MailboxError
from mailmigrate.plan import Account
from mailmigrate.sync import copy_account

WHEN = datetime(2023, 11, 5, 7, 30, 0, tzinfo=UTC)
CRLF = b"\r\n"


def malformed_messages() -> dict[str, bytes]:
    """Messages a real mail store collects over the years, by what is wrong with them."""
    body = b"Hello,\r\nthis is the body.\r\n"
    return {
        "bare LF": b"From: a@example.com\nSubject: bare LF\nMessage-ID: <lf@x>\n\nline 1\nline 2\n",
        "bare LF, no Message-ID": b"From: a@example.com\nSubject: no id\n\nbody\n",
        "bare CR": b"From: a@example.com\rSubject: bare CR\rMessage-ID: <cr@x>\r\rbody\r",
        "NUL bytes": b"Subject: nul\r\nMessage-ID: <nul@x>\r\n\r\nbefore\x00after\x00\r\n",
        "broken MIME": (
            b"Subject: broken\r\nMessage-ID: <mime@x>\r\nContent-Type: multipart/mixed; "
            b'boundary="never-closed"\r\n\r\n--never-closed\r\nContent-Type: text/plain\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n%%%not base64%%%\r\n--wrong-boundary\r\n"
        ),
        "8-bit headers": (
            "Subject: Grüße, Ärger & Çà va 🎉\r\nFrom: Jürgen Müller <j@example.com>\r\n"
            "Message-ID: <8bit@x>\r\n\r\n".encode()
            + b"Latin-1 \xe4\xf6\xfc\r\n"
        ),
        "Latin-1 header bytes": b"Subject: Gr\xfc\xdfe\r\nMessage-ID: <latin@x>\r\n\r\n" + body,
        "huge header line": b"Subject: huge\r\nX-Huge: " + b"h" * 200_000 + CRLF + CRLF + body,
        "thousands of headers": b"".join(
            b"Received: from relay%d.example.com by mx.example.com; Mon, 1 Jan 2024\r\n" % i
            for i in range(3_000)
        )
        + b"Subject: many\r\n\r\n"
        + body,  # fmt: skip
        "no body separator": b"Subject: only headers\r\nMessage-ID: <nobody@x>\r\n",
        "no header at all": b"just some text without any header\r\n",
        "empty Message-ID": b"Message-ID:\r\nSubject: empty id\r\n\r\n" + body,
        "two Message-IDs": b"Message-ID: <one@x>\r\nMessage-ID: <two@x>\r\n\r\n" + body,
        "folded Message-ID": b"Message-ID:\r\n <folded@x>\r\nSubject: f\r\n\r\n" + body,
        "long Message-ID": b"Message-ID: <" + b"m" * 2_000 + b"@x>\r\n\r\n" + body,
        "1 MB line": b"Subject: long line\r\nMessage-ID: <line@x>\r\n\r\n"
        + b"x" * 1_000_000
        + CRLF,
        "continuation first": b" leading continuation\r\nSubject: odd\r\n\r\n" + body,
        # Same Message-ID and size, different bytes: a message delivered twice, a minute apart.
        "twin 1": b"Received: by mx; 10:00:01\r\nMessage-ID: <twin@x>\r\n\r\n" + body,
        "twin 2": b"Received: by mx; 10:00:02\r\nMessage-ID: <twin@x>\r\n\r\n" + body,
    }


def _corpus() -> list[tuple[bytes, tuple[str, ...], datetime]]:
    out = []
    for i, raw in enumerate(malformed_messages().values()):
        out.append((raw, ("\\Seen",) if i % 2 else (), WHEN + timedelta(minutes=i)))
    out.append((make_message(77_001, size=3_000), ("\\Flagged",), WHEN))
    return out


def test_malformed_messages_copy_byte_identical_both_ways_and_after_a_cut(
    legacy_imap, modern_imap, new_account, tmp_path
):
    user, password = new_account(legacy_imap)
    src = legacy_imap.client(user, password)
    corpus = _corpus()
    seed_account(src, {"INBOX": corpus})
    served = snapshot(src, "INBOX")
    assert sum(served.values()) == len(corpus)  # the source took every one of them

    # Legacy -> modern, cut twice on the way (a withheld APPEND reply, then bytes inside a
    # literal), then modern -> legacy: each side ends identical to what the source serves.
    dst_user, dst_password = new_account(modern_imap)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path / "there", [account], batch_messages=3, parallel_folders=1)
    source, destination = endpoints(legacy_imap, modern_imap)
    proxy = CuttingProxy(modern_imap.host, modern_imap.port)
    try:
        cut_destination = replace(destination, port=proxy.port)
        for arm in (lambda: proxy.arm_on_reply(b"[APPENDUID", 4), lambda: proxy.arm(300_000)):
            arm()
            with pytest.raises(MailboxError):
                copy_account(plan, account, source, cut_destination, "initial", retry_delays=())
            proxy.disarm()
    finally:
        proxy.close()
    there = copy_account(plan, account, source, destination, "initial")
    assert there.ok, there.summary_lines()
    dst = modern_imap.client(dst_user, dst_password)
    assert snapshot(dst, "INBOX") == served

    back_user, back_password = new_account(legacy_imap)
    back = Account(dst_user, back_user, dst_password, back_password)
    back_plan = make_plan(tmp_path / "back", [back])
    result = copy_account(back_plan, back, destination, source, "initial")
    assert result.ok, result.summary_lines()
    assert snapshot(legacy_imap.client(back_user, back_password), "INBOX") == served
    again = copy_account(plan, account, source, destination, "initial")
    assert again.totals()["copied"] == 0 and snapshot(dst, "INBOX") == served
    record(
        "bad input", malformed_messages_tried=len(corpus), malformed_copied_identical=len(corpus)
    )


IMAP_NAMES = ["%", "*", "a%b*c", 'q"uote', "back\\slash", " lead", "trail ", "&amp;", "Ümlaut",
              "dot.in.name", "x" * 200, "Deep/" * 8 + "Bottom"]  # fmt: skip


def test_hostile_imap_folder_names_copy_or_rename_deterministically(
    modern_imap, legacy_imap, new_account, tmp_path
):
    user, password = new_account(modern_imap)
    src = modern_imap.client(user, password)
    for name in IMAP_NAMES:  # first: "%" and "*" are LIST wildcards to folder_exists()
        src.create_folder(name)
    seed_account(src, {name: [(make_message(78_000 + i), (), WHEN)]
                       for i, name in enumerate(IMAP_NAMES)})  # fmt: skip
    dst_user, dst_password = new_account(legacy_imap)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account])
    source, destination = endpoints(modern_imap, legacy_imap)
    first = copy_account(plan, account, source, destination, "initial")
    assert first.ok, first.summary_lines()
    by_source = {folder.source: folder for folder in first.folders}
    dst = legacy_imap.client(dst_user, dst_password)
    for name in IMAP_NAMES:
        folder = by_source[name]
        if "." in name:  # the legacy separator: renamed, and the report says why
            assert folder.renamed and folder.destination != name
        else:
            assert folder.destination == name and not folder.renamed
        destination_name = "INBOX." + folder.destination.replace("/", ".")
        assert snapshot(dst, destination_name) == snapshot(src, name), name
    second = copy_account(plan, account, source, destination, "initial")  # same names again
    assert [(f.source, f.destination) for f in second.folders] == [
        (f.source, f.destination) for f in first.folders
    ]
    assert second.totals()["copied"] == 0
    record("bad input", hostile_folder_names_tried=len(IMAP_NAMES))


EXCHANGE_NAMES = {
    "..": "refused",
    "~tilde": "refused",
    "L" * 300: "refused",
    "tab\tname": "renamed",  # (EWS is XML: no other control character can be in a name)
    "slash/inside": "renamed",
    "%": "copied",
    "*": "copied",
    "ok": "copied",
}


@pytest.fixture
def exchange():
    store = SimulatorStore()
    store.add_user("admin@example.com", "admin-Secret-71", impersonation=True)
    store.add_mailbox("alice@example.com")
    with EwsSimulator(store) as simulator:
        yield store, Endpoint("exchange", "ews", simulator.url, login="admin@example.com",
                              password="admin-Secret-71", extra={"auth": "basic"})  # fmt: skip
    close_connections()


def test_names_an_imap_server_cannot_hold_are_renamed_or_reported_and_the_rest_copies(
    exchange, modern_imap, new_account, tmp_path
):
    store, ews = exchange
    for i, name in enumerate(EXCHANGE_NAMES):
        store.add_folder("alice@example.com", name)
        store.add_message("alice@example.com", (name,), make_message(79_000 + i), received=WHEN)
    store.add_message("alice@example.com", ("Inbox",), make_message(79_100), received=WHEN)
    dst_user, dst_password = new_account(modern_imap)
    account = Account("alice@example.com", dst_user, None, dst_password)
    plan = make_plan(tmp_path, [account])
    destination = endpoint_from_dict("dst", modern_imap.connection("dst"))

    result = copy_account(plan, account, ews, destination, "initial")
    by_source = {folder.source: folder for folder in result.folders}
    dst = modern_imap.client(dst_user, dst_password)
    outcomes = Counter()
    for name, expected in EXCHANGE_NAMES.items():
        folder = by_source[name]
        outcomes[expected] += 1
        if expected == "refused":
            assert folder.error and "server said" in folder.error, folder
            assert folder.copied == 0
            continue
        assert folder.error is None, folder
        assert bool(folder.renamed) == (expected == "renamed"), folder
        held = snapshot(dst, folder.destination)
        assert sum(held.values()) == 1, folder
    inbox = snapshot(dst, "INBOX")
    assert sum(inbox.values()) == 1
    assert not result.ok and sum(1 for f in result.folders if f.error) == 3
    lines = "\n".join(result.summary_lines())
    assert "Invalid mailbox name" in lines and "too long" in lines  # the server's own words
    record("bad input", hostile_folder_names_tried=len(EXCHANGE_NAMES),
           folders_refused_and_reported=outcomes["refused"],
           folders_renamed=outcomes["renamed"])  # fmt: skip


def test_folders_the_source_lists_but_cannot_open_are_reported(
    legacy_imap, modern_imap, new_account, tmp_path
):
    """Maildir folders made outside Dovecot (control characters, a leading ~, empty levels):
    the source lists them and then refuses to open them."""
    user, password = new_account(legacy_imap)
    src = legacy_imap.client(user, password)
    seed_account(src, {"INBOX": [(make_message(79_500), (), WHEN)],
                       "INBOX.Fine": [(make_message(79_501), ("\\Seen",), WHEN)]})  # fmt: skip
    local, domain = user.split("@")
    maildir = legacy_imap.root / "mail" / domain / local / "Maildir"
    for name in (".ctl\x01char", ".~tilde", ".empty..level", ".tab\tname"):
        for part in ("cur", "new", "tmp"):
            (maildir / name / part).mkdir(parents=True)
    subprocess.run(["chown", "-R", "dovecot:dovecot", str(maildir)], check=True)
    dst_user, dst_password = new_account(modern_imap)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account])
    source, destination = endpoints(legacy_imap, modern_imap)
    result = copy_account(plan, account, source, destination, "initial")
    failed = {folder.source: folder.error for folder in result.folders if folder.error}
    assert failed and all("server said" in error for error in failed.values()), failed
    assert any("ctl" in name for name in failed) and any("tilde" in name for name in failed)
    dst = modern_imap.client(dst_user, dst_password)
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")
    assert snapshot(dst, "Fine") == snapshot(src, "INBOX.Fine")
    record("bad input", unopenable_source_folders_reported=len(failed))
