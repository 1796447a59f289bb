"""Round trips the IMAP adapter no longer makes (issue 21): the commands a session sends, as a
recording proxy saw them. What is asserted is which commands cross the wire, never timings."""

from __future__ import annotations

from dataclasses import replace

import pytest
from harness.engine_helpers import rich_corpus, seed_account
from harness.proxy import CuttingProxy
from harness.shaper import ShapingProxy

from mailmigrate.connections import endpoint_from_dict
from mailmigrate.errors import MailboxError
from mailmigrate.mailbox.imap import ImapMailbox


def _commands(sent: bytes) -> list[bytes]:
    """The command names of the client's lines (tag, name, ...), literals' lines left out."""
    names = []
    for line in sent.split(b"\r\n"):
        words = line.split(b" ", 2)
        if len(words) >= 2 and words[0][:1].isalnum() and words[1].isalpha():
            names.append(words[1].upper())
    return names


def _mailbox(server, proxy, user, password) -> ImapMailbox:
    endpoint = endpoint_from_dict("dst", server.connection("dst"))
    return ImapMailbox(replace(endpoint, port=proxy.port), user, password, "destination")


def test_a_login_reads_the_greetings_capabilities_and_pipelines_enable_and_namespace(
    modern_imap, new_account
):
    user, password = new_account(modern_imap)
    proxy = CuttingProxy(modern_imap.host, modern_imap.port, record=True)
    mailbox = _mailbox(modern_imap, proxy, user, password)
    try:
        mailbox.connect()
        assert mailbox.has("CONDSTORE") and mailbox.separator
        commands = _commands(bytes(proxy.to_server))
    finally:
        mailbox.close()
        proxy.close()
    # Dovecot's greeting carries [CAPABILITY ...] and its LOGIN answer the new list: no
    # CAPABILITY command; ENABLE and NAMESPACE leave together after LOGIN.
    assert b"CAPABILITY" not in commands, commands
    assert commands[:3] == [b"LOGIN", b"ENABLE", b"NAMESPACE"], commands


def test_folders_are_created_without_a_list_before_each(modern_imap, new_account):
    user, password = new_account(modern_imap)
    proxy = CuttingProxy(modern_imap.host, modern_imap.port, record=True)
    mailbox = _mailbox(modern_imap, proxy, user, password)
    try:
        mailbox.connect()
        mailbox.list_folders()
        for path in (("Projects",), ("Projects", "2024"), ("Lists",)):
            mailbox.create_folder(path)
        listed = {folder.path for folder in mailbox.list_folders()}
        commands = _commands(bytes(proxy.to_server))
    finally:
        mailbox.close()
        proxy.close()
    assert {("Projects",), ("Projects", "2024"), ("Lists",)} <= listed
    assert commands.count(b"CREATE") == 3 and commands.count(b"LIST") == 2, commands


def test_a_listing_is_examine_and_fetch_in_one_round_trip(legacy_imap, new_account):
    user, password = new_account(legacy_imap)
    seed_account(legacy_imap.client(user, password), {"INBOX": rich_corpus(3)})
    endpoint = endpoint_from_dict("src", legacy_imap.connection("src"))
    with ShapingProxy(legacy_imap.host, legacy_imap.port, delay=0.002) as near:
        mailbox = ImapMailbox(replace(endpoint, port=near.port), user, password, "source")
        try:
            mailbox.connect()
            near.reset()
            listing = mailbox.listing(("INBOX",))
            sizes = mailbox.listing_without_identities(("INBOX",))
            traffic = near.reset()
            with pytest.raises(MailboxError, match="examine failed"):
                mailbox.listing(("No such folder",))
            again = mailbox.listing(("INBOX",))  # the session is still in step
        finally:
            mailbox.close()
    assert len(listing.messages) == len(rich_corpus(3)) == len(sizes.messages)
    assert [m.identity for m in again.messages] == [m.identity for m in listing.messages]
    # One flight each, plus the header FETCH of the messages without a Message-ID.
    assert traffic.commands == 5 and traffic.flights == 3, traffic


LONG = "x" * 400


def test_folders_are_created_and_subscribed_in_one_round_trip(modern_imap, new_account):
    user, password = new_account(modern_imap)
    endpoint = endpoint_from_dict("dst", modern_imap.connection("dst"))
    wanted = [
        (("Projects", "2024"), None, True, True),  # its parent is created first
        (("Sent",), "\\Sent", True, True),
        (("INBOX",), None, False, True),  # subscribed only
        ((LONG,), None, True, True),  # Dovecot refuses the name: too long
    ]
    with ShapingProxy(modern_imap.host, modern_imap.port, delay=0.002) as near:
        mailbox = ImapMailbox(replace(endpoint, port=near.port), user, password, "destination")
        try:
            mailbox.connect()
            mailbox.list_folders()
            near.reset()
            failed = mailbox.prepare_folders(wanted)
            traffic = near.reset()
            listed = {folder.path: folder for folder in mailbox.list_folders()}
        finally:
            mailbox.close()
    assert set(failed) == {(LONG,)}, failed
    step, error = failed[(LONG,)]
    assert step == "create" and f"creating folder {LONG}: server said: create failed" in str(error)
    for path in (("Projects",), ("Projects", "2024"), ("Sent",)):
        assert path in listed
    assert all(listed[p].subscribed for p in (("Projects", "2024"), ("Sent",), ("INBOX",)))
    assert listed[("Sent",)].special_use == "\\Sent"
    assert traffic.flights == 1 and traffic.commands >= 7, traffic  # Sent may exist already


def test_the_checks_list_several_folders_in_two_round_trips(legacy_imap, new_account):
    """The checks after a copy ask for every folder of a lane at once: EXAMINE and FETCH of
    each in one flight, the headers of messages without a Message-ID in a second; a folder
    the flights cannot answer is left out for its own listing."""
    user, password = new_account(legacy_imap)
    corpus = {"INBOX": rich_corpus(3), "INBOX.Sent": rich_corpus(2), "INBOX.Empty": []}
    client = legacy_imap.client(user, password)
    seed_account(client, corpus)
    validity = client.folder_status("INBOX", [b"UIDVALIDITY"])[b"UIDVALIDITY"]
    endpoint = endpoint_from_dict("src", legacy_imap.connection("src"))
    folders = [("INBOX",), ("Sent",), ("Empty",), ("Gone",)]  # the namespace's INBOX. left out
    with ShapingProxy(legacy_imap.host, legacy_imap.port, delay=0.002) as near:
        mailbox = ImapMailbox(replace(endpoint, port=near.port), user, password, "source")
        try:
            mailbox.connect()
            mailbox.list_folders()
            alone = {path: mailbox.listing_since(path, None) for path in folders[:3]}
            marked = mailbox.listing_since(("INBOX",), None)[3].ref  # since the 4th
            near.reset()
            together = mailbox.listings_since([(path, None) for path in folders])
            traffic = near.reset()
            since = mailbox.listings_since([(("INBOX",), f"{validity}:{marked}"),
                                            (("Sent",), None)])  # fmt: skip
            again = mailbox.listing_since(("INBOX",), None)  # the session is still in step
        finally:
            mailbox.close()
    assert together == alone  # "Gone" left out: asked alone, it says why
    assert alone[("Empty",)] == [] and len(alone[("INBOX",)]) == len(rich_corpus(3))
    # EXAMINE and FETCH of the four, then of the two with messages without a Message-ID
    assert traffic.flights == 2 and traffic.commands == 2 * 4 + 2 * 2, traffic
    assert since[("INBOX",)] == alone[("INBOX",)][3:]
    assert again == alone[("INBOX",)]
