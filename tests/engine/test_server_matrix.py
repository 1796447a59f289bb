"""Servers we did not write: the core scenario (harness.matrix) Dovecot -> Cyrus, Cyrus ->
Dovecot, and against a Dovecot that advertises only plain IMAP4rev1, with odd but legal data.

Cyrus IMAP 3.6 runs from its Debian package unpacked by ``make install`` (it conflicts with
dovecot-imapd); one server per module, with Debian's fresh-install configuration and
``munge8bit: no`` (see harness.cyrus).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest
from harness.corpus import snapshot
from harness.courier import CourierServer
from harness.courier import available as courier_available
from harness.cyrus import CyrusServer, available
from harness.engine_helpers import make_plan
from harness.hostile import RewritingProxy
from harness.matrix import Scenario

from mailmigrate.connections import endpoint_from_dict
from mailmigrate.owner_report import build_owner_report
from mailmigrate.owner_report_render import render_text
from mailmigrate.plan import Account
from mailmigrate.sync import preflight

# Cyrus refuses these names ("Invalid mailbox name"); Dovecot holds them.
CYRUS_REFUSES = frozenset({"100%", 'Say "hi"', "back\\slash"})
# Courier answers CREATE of a name with an emoji (a UTF-16 surrogate pair in modified UTF-7)
# with "Error in IMAP command".
COURIER_REFUSES = frozenset({"📁 Box"})
APPENDUID = re.compile(rb"\[APPENDUID [0-9:, ]+\] ")
PLAIN_IMAP4REV1 = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID IDLE SORT THREAD=REFERENCES UNSELECT"


@pytest.fixture(scope="module")
def cyrus():
    why = available()
    if why:
        pytest.fail(why)  # make install unpacks it: missing is a broken setup, not a skip
    server = CyrusServer(Path(tempfile.mkdtemp(prefix="mailmigrate-cyrus-")))
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


class PlainImap:
    """Dovecot (modern layout) advertising plain IMAP4rev1: no UIDPLUS, MULTIAPPEND,
    CONDSTORE/QRESYNC, SPECIAL-USE, LITERAL+, NAMESPACE, QUOTA, MOVE or ENABLE. Dovecot answers
    APPENDUID all the same: the engine reaches it through a proxy that strips it, as a server
    without UIDPLUS would."""

    def __init__(self, server) -> None:
        self.server = server
        self.proxy = RewritingProxy(server.host, server.port,
                                    lambda reply: APPENDUID.sub(b"", reply))  # fmt: skip

    def add_account(self, *args, **kwargs) -> None:
        self.server.add_account(*args, **kwargs)

    def client(self, user: str, password: str):
        return self.server.client(user, password)

    def connection(self, conn_id: str, **extra: object) -> dict:
        return {**self.server.connection(conn_id, **extra), "port": self.proxy.port}


@pytest.fixture(scope="module")
def courier():
    why = courier_available()
    if why:
        pytest.fail(why)
    server = CourierServer(Path(tempfile.mkdtemp(prefix="mailmigrate-courier-")))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def poor_imap(dovecot_factory):
    plain = PlainImap(dovecot_factory("modern", imap_capability=PLAIN_IMAP4REV1))
    yield plain
    plain.proxy.close()


@pytest.mark.parametrize("direction", ["dovecot->cyrus", "cyrus->dovecot"])
def test_core_scenario_between_dovecot_and_cyrus(direction, cyrus, modern_imap, new_account,
                                                 tmp_path):  # fmt: skip
    servers = {"dovecot": modern_imap, "cyrus": cyrus}
    source, destination = direction.split("->")
    refused = CYRUS_REFUSES if destination == "cyrus" else frozenset()
    scenario = Scenario(servers[source], servers[destination], new_account, tmp_path,
                        seed=91_000, refused=refused)  # fmt: skip
    scenario.run_core()
    # A fresh Cyrus account has no Sent: Dovecot's Sent is created there with \Sent, and
    # from Cyrus, "Gesendete Objekte" goes into Dovecot's Sent by its (German) name.
    assert scenario.sent_mapping() == ("Sent" if source == "dovecot" else "Gesendete Objekte")


@pytest.mark.parametrize("direction", ["dovecot->courier", "courier->dovecot"])
def test_core_scenario_between_dovecot_and_courier(direction, courier, modern_imap, new_account,
                                                   tmp_path):  # fmt: skip
    """Courier refuses keywords of digits (APPEND and STORE answer "Error in IMAP command"):
    as destination, the messages are copied without them and each is reported; as source it
    cannot hold them in the first place."""
    servers = {"dovecot": modern_imap, "courier": courier}
    source, destination = direction.split("->")
    numeric = frozenset({"2024", "0123", "2025", "0007"})
    scenario = Scenario(servers[source], servers[destination], new_account, tmp_path,
                        seed=94_000, refused=COURIER_REFUSES if destination == "courier" else frozenset(),
                        src_unstorable=numeric if source == "courier" else frozenset(),
                        dst_unstorable=numeric if destination == "courier" else frozenset())  # fmt: skip
    scenario.run_core()
    if destination == "courier":
        noticed = [n.reason for r in scenario.results for n in r.notices]
        # 2024 and 0123 in the initial copy; in the delta 0007 on a new message and 2025
        # added to two copied ones (a flag change, reported per message as a copy is)
        assert len(noticed) == 5 and all("Error in IMAP command" in n for n in noticed), noticed
        assert sum("keywords not stored: 2025 (" in n for n in noticed) == 2, noticed
    # Courier has no special-use: Dovecot's Sent goes to INBOX.Sent by name, and from Courier
    # "Gesendete Objekte" goes into Dovecot's \Sent folder.
    assert scenario.sent_mapping() == ("Gesendete Objekte" if source == "courier" else None)


@pytest.mark.parametrize("poor_side", ["source", "destination"])
def test_core_scenario_with_a_plain_imap4rev1_server(poor_side, poor_imap, modern_imap,
                                                     new_account, tmp_path):  # fmt: skip
    src, dst = (poor_imap, modern_imap) if poor_side == "source" else (modern_imap, poor_imap)
    scenario = Scenario(src, dst, new_account, tmp_path, seed=92_000)
    poor = scenario.src if poor_side == "source" else scenario.dst
    advertised = {c.decode().upper() for c in poor.capabilities()}
    assert not advertised & {"UIDPLUS", "MULTIAPPEND", "CONDSTORE", "QRESYNC", "SPECIAL-USE",
                             "LITERAL+", "NAMESPACE", "QUOTA", "MOVE", "ENABLE"}, advertised  # fmt: skip
    scenario.run_core()


@pytest.mark.parametrize("poor_side", ["source", "destination"])
def test_test_step_probes_special_use_creation_and_names_its_fallbacks(
    poor_side, cyrus, poor_imap, new_account, tmp_path
):
    src, dst = (poor_imap, cyrus) if poor_side == "source" else (cyrus, poor_imap)
    user, password = new_account(src)
    dst_user, dst_password = new_account(dst)
    if poor_side == "source":  # names a fresh Cyrus refuses: test must say so before the copy
        for name in ("100%", "Lists/50% off", 'Say "hi"', "日本語"):
            src.client(user, password).create_folder(name)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account])
    check = preflight(plan, account, endpoint_from_dict("src", src.connection("src")),
                      endpoint_from_dict("dst", dst.connection("dst")))  # fmt: skip
    assert check.ok, check.summary_lines()
    lines = "\n".join(check.summary_lines())
    expected = {
        "source": ["CONDSTORE", "SPECIAL-USE", "NAMESPACE"],
        "destination": ["UIDPLUS", "MULTIAPPEND", "LITERAL+", "QUOTA", "NAMESPACE"],
    }
    for capability in expected[poor_side]:  # fmt: skip
        assert f"warning: {poor_side}: no {capability}: " in lines, lines
    if poor_side == "source":  # Dovecot's Sent goes to a fresh Cyrus account: created with \Sent
        assert re.search(r"CREATE-SPECIAL-USE tried on a probe folder with \\\w+: it works", lines)
        names = [name for _, _, name in cyrus.client(dst_user, dst_password).list_folders()]
        assert names == ["INBOX"], names  # the probe folders are gone again
        refused = [line for line in check.summary_lines() if "refuses folder names" in line]
        assert len(refused) == 2, refused  # '%' and '"'; the CJK name is fine
        assert "'%'" in refused[0] + refused[1] and "100%, Lists/50% off" in lines
        assert "Invalid mailbox name" in refused[0]


def test_a_destination_that_rewrites_8bit_headers_is_reported_never_called_identical(
    modern_imap, new_account, tmp_path
):
    """Cyrus as installed (``munge8bit: yes``) stores 8-bit header bytes as ``X``."""
    munging = CyrusServer(Path(tempfile.mkdtemp(prefix="mailmigrate-cyrus-")), munge8bit=True)
    munging.start()
    try:
        scenario = Scenario(modern_imap, munging, new_account, tmp_path, seed=93_000,
                            refused=CYRUS_REFUSES)  # fmt: skip
        first = scenario.copy("initial")
        assert {f.source for f in first.folders if f.error} == CYRUS_REFUSES
        assert not first.failures, first.summary_lines()
        changed = {(n.folder, n.kind) for n in first.notices}
        assert changed == {("INBOX", "copied, not identical")}, first.summary_lines()
        assert len(first.notices) == 2  # the Latin-1 and the UTF-8 header (ODD_MESSAGES)
        assert all("changed its 8-bit header bytes" in n.reason for n in first.notices)
        report = build_owner_report("t", scenario.account, first)
        text = render_text(report)
        assert not report.ok and "2 messages copied but not identical" in text, text
        assert "are on the new server" not in text
        assert snapshot(scenario.dst, "INBOX") != snapshot(scenario.src, "INBOX")
        again = scenario.copy("initial")  # same size and Message-ID: matched, never doubled
        assert again.totals()["copied"] == 0, again.summary_lines()
    finally:
        munging.stop()
