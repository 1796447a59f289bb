"""Odd but legal flags, and replies from a source or destination that lies or breaks.

- Keywords of digits (``2024``, ``0123`` with its zero), mixed case and long keywords (50 characters, Dovecot's limit) copy exactly.
- A source whose FLAGS reply carries a literal cannot inject a command into the destination
  session: only RFC 3501 atoms are written; the rest is reported for that message.
- A destination folder without ``\\*`` in PERMANENTFLAGS: keywords it cannot store are reported
  per message, the messages and their other flags copied.
- A malformed FETCH reply, a body shorter than the size the server lists, a server closing in the
  middle of a literal: that message is reported (account, folder, uid, the cause), the rest is
  copied, the account fails at the end, and a re-run copies only those, nothing twice.

The hostile servers are real Dovecot behind :class:`harness.hostile.RewritingProxy`.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from harness.corpus import make_message, snapshot
from harness.engine_helpers import endpoints, make_plan, seed_account
from harness.hostile import Cut, RewritingProxy

from mailmigrate.owner_report import build_owner_report
from mailmigrate.owner_report_render import render_text
from mailmigrate.plan import Account
from mailmigrate.sync import copy_account

WHEN = datetime(2024, 6, 1, 8, 0, 0, tzinfo=UTC)
ODD_KEYWORDS = [("2024",), ("0123", "\\Seen"), ("MixedCase", "$Forwarded"), ("k" * 50,),
                ("2024", "0123", "007", "\\Flagged")]  # fmt: skip


def _mail(seed: int, flag_sets, **kwargs):
    return [(make_message(seed + i, **kwargs), flags, WHEN + timedelta(minutes=i))
            for i, flags in enumerate(flag_sets)]  # fmt: skip


def _pair(src_server, dst_server, new_account, tmp_path, **copy):
    user, password = new_account(src_server)
    dst_user, dst_password = new_account(dst_server)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account], **copy)
    return (
        account,
        plan,
        src_server.client(user, password),
        dst_server.client(dst_user, dst_password),
    )


def test_keywords_of_digits_mixed_case_and_long_copy_exactly(
    modern_imap, legacy_imap, new_account, tmp_path
):
    account, plan, src, dst = _pair(modern_imap, legacy_imap, new_account, tmp_path)
    seed_account(src, {"INBOX": _mail(81_000, ODD_KEYWORDS), "Odd": _mail(81_100, ODD_KEYWORDS)})
    source, destination = endpoints(modern_imap, legacy_imap)
    result = copy_account(plan, account, source, destination, "initial")
    assert result.ok and not result.notices, result.summary_lines()
    for source_name, destination_name in (("INBOX", "INBOX"), ("Odd", "INBOX.Odd")):
        held = snapshot(dst, destination_name)
        assert held == snapshot(src, source_name)
        assert {"2024", "0123", "007", "k" * 50} <= {f for _, flags, _ in held for f in flags}
    src.select_folder("INBOX")
    src.add_flags(src.search("ALL")[:2], ["2025", "0999"])  # a delta with numeric keywords
    delta = copy_account(plan, account, source, destination, "delta")
    assert delta.ok and delta.totals()["flags_updated"] == 2, delta.summary_lines()
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")


def test_a_literal_in_a_source_flag_never_reaches_the_destination_session(
    modern_imap, new_account, tmp_path
):
    account, plan, src, dst = _pair(modern_imap, modern_imap, new_account, tmp_path)
    seed_account(src, {"INBOX": _mail(82_000, [("\\Seen", "Poison"), ("\\Seen",), ()])})
    dst.create_folder("Victim")
    injection = b'x) {0+}\r\n\r\nA1 DELETE "Victim"\r\nA2 CREATE "Injected"\r\nA3 NOOP ('

    def hostile(response: bytes) -> bytes:
        if b" FETCH (" not in response:
            return response
        return response.replace(b"Poison", b"{%d}\r\n" % len(injection) + injection)

    source, destination = endpoints(modern_imap, modern_imap)
    with RewritingProxy(modern_imap.host, modern_imap.port, hostile) as proxy:
        result = copy_account(plan, account, replace(source, port=proxy.port), destination,
                              "initial")  # fmt: skip
        assert proxy.rewrites
    names = {name for _, _, name in dst.list_folders()}
    assert "Victim" in names and "Injected" not in names
    assert result.ok and result.totals()["copied"] == 3, result.summary_lines()
    (notice,) = result.notices
    assert notice.folder == "INBOX" and "not an IMAP flag" in notice.reason
    assert "DELETE" in notice.reason  # the report shows what the source sent
    copied = snapshot(dst, "INBOX")
    assert sorted(sorted(flags) for _, flags, _ in copied) == [[], ["\\Seen"], ["\\Seen"]]
    assert any("copied, not identical: flags not stored" in line for line in result.summary_lines())


def test_keywords_a_destination_cannot_store_are_reported_per_message(
    legacy_imap, modern_imap, new_account, tmp_path
):
    account, plan, src, dst = _pair(legacy_imap, modern_imap, new_account, tmp_path)
    flag_sets = [("\\Seen", "Work"), ("\\Flagged",), ("$Forwarded", "2024"), ()]
    seed_account(src, {"INBOX": _mail(83_000, flag_sets)})

    def no_new_keywords(response: bytes) -> bytes:  # PERMANENTFLAGS without \*
        return response.replace(b" \\*)]", b")]") if b"[PERMANENTFLAGS" in response else response

    source, destination = endpoints(legacy_imap, modern_imap)
    with RewritingProxy(modern_imap.host, modern_imap.port, no_new_keywords) as proxy:
        result = copy_account(plan, account, source, replace(destination, port=proxy.port),
                              "initial")  # fmt: skip
    assert result.ok and result.totals()["copied"] == 4, result.summary_lines()
    reasons = sorted(notice.reason for notice in result.notices)
    assert len(reasons) == 2 and "Work (the folder stores no such flag" in reasons[1], reasons
    assert "$Forwarded" in reasons[0] and "2024" in reasons[0]
    copied = snapshot(dst, "INBOX")
    assert sorted(sorted(flags) for _, flags, _ in copied) == [[], [], ["\\Flagged"], ["\\Seen"]]


def test_keywords_a_destination_cannot_store_in_a_delta_are_reported_per_message(
    legacy_imap, modern_imap, new_account, tmp_path
):
    """A flag change carried by a delta: the keywords the destination does not store are
    reported for that message (before: left out without a word), the other flags carried."""
    account, plan, src, dst = _pair(legacy_imap, modern_imap, new_account, tmp_path)
    seed_account(src, {"INBOX": _mail(84_000, [(), ("\\Seen",)])})
    source, destination = endpoints(legacy_imap, modern_imap)
    assert copy_account(plan, account, source, destination, "initial").ok
    src.select_folder("INBOX")
    first, second = sorted(src.search("ALL"))
    src.add_flags([first], ["Work", "\\Flagged"])
    src.add_flags([second], ["$Forwarded"])

    def no_new_keywords(response: bytes) -> bytes:  # PERMANENTFLAGS without \*
        return response.replace(b" \\*)]", b")]") if b"[PERMANENTFLAGS" in response else response

    with RewritingProxy(modern_imap.host, modern_imap.port, no_new_keywords) as proxy:
        result = copy_account(plan, account, source, replace(destination, port=proxy.port),
                              "delta")  # fmt: skip
    assert result.ok and result.totals()["flags_updated"] == 2, result.summary_lines()
    notices = sorted((n.ref, n.reason, n.kind) for n in result.notices)
    assert notices == [
        (str(first), "flags not stored: Work (the folder stores no such flag: PERMANENTFLAGS)",
         "copied, not identical"),
        (str(second), "flags not stored: $Forwarded (the folder stores no such flag: "
         "PERMANENTFLAGS)", "copied, not identical"),
    ]  # fmt: skip
    assert all(n.size > 0 for n in result.notices)
    copied = snapshot(dst, "INBOX")
    assert sorted(sorted(flags) for _, flags, _ in copied) == [["\\Flagged"], ["\\Seen"]]


POISON = {b"X-Poison: malformed": "malformed", b"X-Poison: short": "short",
          b"X-Poison: cut": "cut"}  # fmt: skip


def _break(response: bytes) -> bytes | Cut:
    """The three broken replies, for the messages carrying their marker."""
    kind = next((kind for marker, kind in POISON.items() if marker in response), None)
    if kind == "malformed":
        return re.sub(rb'INTERNALDATE "', b'INTERNALDATE "3', response, count=1)
    if kind == "short":  # the literal loses its last 10 bytes, RFC822.SIZE stays
        head, _, rest = response.partition(b"}\r\n")
        start = head.rindex(b"{")
        size = int(head[start + 1 :])
        body = rest[:size]
        return head[:start] + b"{%d}\r\n" % (size - 10) + body[:-10] + rest[size:]
    if kind == "cut":
        return Cut(response[: len(response) // 2])
    return response


def _poisoned(seed: int) -> list:
    mail = _mail(seed, [("\\Seen",)] * 9)
    for i, marker in enumerate(POISON):
        raw, flags, when = mail[2 + 3 * i]
        mail[2 + 3 * i] = (raw.replace(b"\r\n\r\n", b"\r\n" + marker + b"\r\n\r\n", 1), flags, when)
    return mail


def test_broken_replies_cost_one_message_each_and_a_rerun_copies_only_those(
    legacy_imap, modern_imap, new_account, tmp_path
):
    account, plan, src, dst = _pair(legacy_imap, modern_imap, new_account, tmp_path,
                                    batch_messages=4)  # fmt: skip
    seed_account(src, {"INBOX": _poisoned(84_000), "INBOX.Fine": _mail(84_100, [()] * 3)})
    source, destination = endpoints(legacy_imap, modern_imap)
    with RewritingProxy(legacy_imap.host, legacy_imap.port, _break) as proxy:
        broken = replace(source, port=proxy.port)
        quick = (0.01,) * 3  # the cut message is given up after three losses (two retries)
        first = copy_account(plan, account, broken, destination, "initial", retry_delays=quick)
        again = copy_account(plan, account, broken, destination, "initial", retry_delays=quick)
    assert not first.ok
    failures = sorted(first.failures, key=lambda f: int(f.ref))
    assert [(f.folder, f.kind) for f in failures] == [("INBOX", "unreadable")] * 3
    assert "malformed reply" in failures[0].reason
    assert "lists as" in failures[1].reason  # "sent N bytes of a message it lists as M bytes"
    assert "connection was lost inside this message 3 times" in failures[2].reason
    assert all(f.size > 0 and "source " + account.source_user in f.reason for f in failures)
    lines = "\n".join(first.summary_lines())
    assert all(f"message INBOX uid {f.ref}" in lines for f in failures)
    owner = render_text(build_owner_report("t", account, first))
    assert "3 messages the old server could not deliver" in owner and "refused" not in owner
    # (a retried folder's result counts what its last attempt copied: count on the server)
    assert sum(snapshot(dst, "INBOX").values()) == 6 and sum(snapshot(dst, "Fine").values()) == 3
    assert again.totals()["copied"] == 0
    assert not again.ok and len(again.failures) == 3  # still those three, nothing twice

    healed = copy_account(plan, account, source, destination, "initial")
    assert healed.ok and healed.totals()["copied"] == 3, healed.summary_lines()
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")
    assert snapshot(dst, "Fine") == snapshot(src, "INBOX.Fine")


def test_a_big_message_whose_reply_breaks_after_its_bytes_went_on_costs_only_itself(
    legacy_imap, modern_imap, new_account, tmp_path
):
    """A big message's bytes go on to the destination as they arrive; when its reply turns
    out malformed after them, the APPEND they went into is given up unended (none of it
    lands), the folder is compared again, and only that message is reported."""
    account, plan, src, dst = _pair(legacy_imap, modern_imap, new_account, tmp_path,
                                    batch_messages=3)  # fmt: skip
    mail = _mail(85_000, [("\\Seen",)] * 6, size=150_000)
    raw, flags, when = mail[4]
    mail[4] = (raw.replace(b"\r\n\r\n", b"\r\nX-Poison: tail\r\n\r\n", 1), flags, when)
    seed_account(src, {"INBOX": mail})
    source, destination = endpoints(legacy_imap, modern_imap)

    def break_tail(response: bytes) -> bytes:
        if b"X-Poison: tail" in response and response.endswith(b")\r\n"):
            return response[:-3] + b"))\r\n"  # unbalanced, after the literal
        return response

    lines: list[str] = []
    with RewritingProxy(legacy_imap.host, legacy_imap.port, break_tail) as proxy:
        first = copy_account(plan, account, replace(source, port=proxy.port), destination,
                             "initial", retry_delays=(0.01,) * 3, progress=lines.append)  # fmt: skip
        assert proxy.rewrites >= 1
    assert any("broke off after its first bytes went to the destination" in x for x in lines)
    assert not first.ok
    assert [(f.folder, f.kind) for f in first.failures] == [("INBOX", "unreadable")]
    assert "malformed reply" in first.failures[0].reason
    held, sent = snapshot(dst, "INBOX"), snapshot(src, "INBOX")
    assert sum(held.values()) == 5 and not held - sent  # the others, each once, exact
    healed = copy_account(plan, account, source, destination, "initial")
    assert healed.ok and healed.totals()["copied"] == 1, healed.summary_lines()
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")


def test_a_destination_that_reads_an_appends_literal_as_commands_costs_a_retry(
    legacy_imap, modern_imap, new_account, tmp_path
):
    """Cyrus, failing an APPEND with "System I/O error", reads the rest of its literal as
    commands and answers each line ("From: BAD Null command"). Those answers belong to no
    command: the session is given up and the folder retried (not failed as a malformed reply),
    and what the destination did store is found again, nothing twice."""
    account, plan, src, dst = _pair(legacy_imap, modern_imap, new_account, tmp_path,
                                    batch_messages=4)  # fmt: skip
    seed_account(src, {"INBOX": _mail(86_000, [("\\Seen",)] * 10),
                       "INBOX.Other": _mail(86_100, [()] * 3)})  # fmt: skip
    source, destination = endpoints(legacy_imap, modern_imap)
    told = []

    def fail_once(response: bytes) -> bytes:
        answered = re.match(rb"(\S+) OK \[APPENDUID", response)
        if answered is None or told:
            return response
        told.append(response)  # stored all the same: the retry must find those messages
        return answered.group(1) + b" NO System I/O error\r\nFrom: BAD Null command\r\n"

    lines: list[str] = []
    with RewritingProxy(modern_imap.host, modern_imap.port, fail_once) as proxy:
        result = copy_account(plan, account, source, replace(destination, port=proxy.port),
                              "initial", retry_delays=(0.01,) * 3, progress=lines.append)  # fmt: skip
    assert told and any("out of step with the server" in line for line in lines), lines
    assert result.ok, result.summary_lines()
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")
    assert snapshot(dst, "Other") == snapshot(src, "INBOX.Other")
