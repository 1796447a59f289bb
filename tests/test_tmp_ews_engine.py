"""TEMPORARY ad-hoc: engine Dovecot -> EWS simulator -> Dovecot (deleted after the run)."""
from __future__ import annotations
import pytest
from engine_helpers import endpoints, make_plan, rich_corpus, seed_account
from ews_simulator import EwsSimulator, SimulatorStore
from exchangelib.protocol import close_connections
from mailmigrate.connections import Endpoint
from mailmigrate.identity import identity_of
from mailmigrate.plan import Account
from mailmigrate.sync import copy_account, preflight


def test_dovecot_to_ews_and_back(legacy_imap, modern_imap, new_account, tmp_path):
    user, password = new_account(modern_imap)
    src = modern_imap.client(user, password)
    corpus = {"INBOX": rich_corpus(1), "Sent": rich_corpus(2)[:10], "Trash": rich_corpus(3)[:3], "Projects/2024": rich_corpus(5)[:7], "Empty": []}
    seed_account(src, corpus)
    store = SimulatorStore()
    store.add_user("admin@example.com", "adminpw", impersonation=True)
    store.add_mailbox("alice@example.com")
    with EwsSimulator(store) as sim:
        ews = Endpoint("dst", "ews", sim.url, login="admin@example.com", password="adminpw", extra={"auth": "basic"})
        source, _ = endpoints(modern_imap, modern_imap)
        account = Account(user, "alice@example.com", password, None)
        plan = make_plan(tmp_path, [account], batch_messages=7)
        pre = preflight(plan, account, source, ews) if True else None
        print(pre)
        first = copy_account(plan, account, source, ews, "initial")
        print("\n".join(first.summary_lines()))
        assert first.ok, first.summary_lines()
        for f in first.folders:
            print(f.source, "->", f.destination, f.copied, f.failed)
        inbox = store.messages("alice@example.com", "inbox")
        assert len(inbox) == len(corpus["INBOX"])
        print("drafts", sum(m.is_draft for m in inbox))
        second = copy_account(plan, account, source, ews, "delta")
        print("\n".join(second.summary_lines()))
        assert second.ok and second.totals()["copied"] == 0
        # new source mail + flag change
        src.select_folder("INBOX")
        src.append("INBOX", b"Subject: new\r\nMessage-ID: <new-1@x>\r\n\r\nnew\r\n", flags=(b"\\Seen",))
        third = copy_account(plan, account, source, ews, "delta")
        print("\n".join(third.summary_lines()))
        assert third.ok and third.totals()["copied"] == 1
        # back: EWS -> a fresh modern account
        back_user, back_password = new_account(modern_imap)
        back = Account("alice@example.com", back_user, None, back_password)
        back_plan = make_plan(tmp_path / "back", [back], batch_messages=5)
        _, dst = endpoints(modern_imap, modern_imap)
        r = copy_account(back_plan, back, ews, dst, "initial")
        print("\n".join(r.summary_lines()))
        assert r.ok
        r2 = copy_account(back_plan, back, ews, dst, "delta")
        print("\n".join(r2.summary_lines()))
        assert r2.ok and r2.totals()["copied"] == 0
        dstc = modern_imap.client(back_user, back_password)
        dstc.select_folder("INBOX")
        ids = dstc.search()
        msgs = dstc.fetch(ids, ["BODY.PEEK[]", "FLAGS"])
        srcc = src
        srcc.select_folder("INBOX")
        sm = srcc.fetch(srcc.search(), ["BODY.PEEK[]", "FLAGS"])
        assert sorted(identity_of(v[b"BODY[]"]) for v in msgs.values()) == sorted(identity_of(v[b"BODY[]"]) for v in sm.values())
    close_connections()
