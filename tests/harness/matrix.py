"""The engine's core scenario against any pair of test servers, with a corpus of odd but legal
data: what the server matrix (Dovecot, Cyrus, capability-poor Dovecot) runs in both directions.

Core scenario: initial copy, a re-run that adds nothing, a delta with new mail, flag changes and
a new folder, and after each pass an exact compare (bytes, flags, dates) of every folder.

Servers are addressed through what every harness server offers: ``connection(conn_id)``,
``client(user, password)`` and ``add_account`` (through the ``new_account`` fixture).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from imapclient.exceptions import IMAPClientError

from harness.corpus import make_message, seed_folder, snapshot
from harness.engine_helpers import make_plan
from mailmigrate.connections import endpoint_from_dict
from mailmigrate.plan import Account
from mailmigrate.results import AccountResult
from mailmigrate.sync import copy_account

WHEN = datetime(2023, 3, 9, 17, 45, 12, tzinfo=timezone(timedelta(hours=1)))
CRLF = b"\r\n"

ODD_MESSAGES = [
    (b"Subject: Gr\xfc\xdfe \xe4\xf6\xfc\r\nFrom: J\xfcrgen <j@example.com>\r\n"
     b"Message-ID: <latin1@odd>\r\n\r\nLatin-1 header bytes\r\n", ("2024",)),
    ("Subject: Grüße 🎉 日本\r\nMessage-ID: <utf8@odd>\r\n\r\nUTF-8 headers\r\n".encode(),
     ("0123", "\\Seen")),
    (b" leading continuation\r\nSubject: odd\r\n\r\nno Message-ID, header starts folded\r\n",
     ("MixedCase",)),
    (b"Subject: broken encoded word =?utf-8?q?unterminated\r\nMessage-ID: <enc@odd>\r\n"
     b"Date: not a date at all\r\nFrom: <<>>@@\r\n\r\nbody\r\n", ("$Forwarded", "k" * 40)),
    (b"Message-ID: <twin@odd>\r\nSubject: twin\r\n\r\nsame bytes twice\r\n", ("\\Flagged",)),
    (b"Message-ID: <twin@odd>\r\nSubject: twin\r\n\r\nsame bytes twice\r\n", ("\\Flagged",)),
]  # fmt: skip

# Paths below the personal namespace; each server names them natively (prefix, separator).
ODD_FOLDERS: list[tuple[str, ...]] = [
    ("Gesendete Objekte",),  # onto the destination's \Sent
    ("Empty",),
    ("A&B",),
    ('Say "hi"',),
    ("back\\slash",),
    ("100%",),
    ("star*",),
    ("日本語",),
    ("📁 Box",),
    ("L1", "L2", "L3", "L4", "L5", "L6", "Bottom"),
]


def native(client, path: tuple[str, ...]) -> str:
    """A path's name on the server of ``client`` (its personal namespace's prefix and
    separator; the separator from LIST where the server has no NAMESPACE)."""
    if path == ("INBOX",):
        return "INBOX"
    if client.has_capability("NAMESPACE"):
        prefix, separator = client.namespace().personal[0]
    else:
        prefix, separator = "", client.list_folders(directory="", pattern="")[0][1]
    separator = separator.decode() if isinstance(separator, bytes) else separator
    return prefix + separator.join(path)


def odd_corpus(seed: int) -> dict[tuple[str, ...], list]:
    """Per folder path: ``(raw, flags, date)``; INBOX holds the odd messages."""
    inbox = [
        (raw, flags, WHEN + timedelta(minutes=i)) for i, (raw, flags) in enumerate(ODD_MESSAGES)
    ]
    inbox += [(make_message(seed + i, size=1500 + 300 * i), (("\\Seen",), ("\\Answered",), ())[i % 3],
               (WHEN + timedelta(days=i)).astimezone(UTC)) for i in range(4)]  # fmt: skip
    # Two big ones: their bytes go on to the destination's APPEND as they arrive.
    inbox += [(make_message(seed + 50 + i, size=200_000 + 70_000 * i), ("\\Flagged",),
               WHEN + timedelta(days=5 + i)) for i in range(2)]  # fmt: skip
    folders: dict[tuple[str, ...], list] = {("INBOX",): inbox}
    for n, path in enumerate(ODD_FOLDERS):
        count = 0 if path == ("Empty",) else 1 + n % 2
        folders[path] = [(make_message(seed + 100 + 10 * n + i), ("\\Seen",), WHEN)
                         for i in range(count)]  # fmt: skip
    return folders


@dataclass
class Scenario:
    """One account copied from ``src_server`` to ``dst_server`` and checked after each pass."""

    src_server: object
    dst_server: object
    new_account: object
    tmp_path: object
    seed: int
    refused: frozenset[str] = frozenset()  # folders the destination cannot hold (their names)
    src_unstorable: frozenset[str] = frozenset()  # keywords the source server cannot hold
    dst_unstorable: frozenset[str] = frozenset()  # keywords the destination refuses
    results: list[AccountResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        user, password = self.new_account(self.src_server)
        dst_user, dst_password = self.new_account(self.dst_server)
        self.account = Account(user, dst_user, password, dst_password)
        self.plan = make_plan(self.tmp_path, [self.account], batch_messages=5)
        self.source = endpoint_from_dict("src", self.src_server.connection("src"))
        self.destination = endpoint_from_dict("dst", self.dst_server.connection("dst"))
        self.src = self.src_server.client(user, password)
        self.dst = self.dst_server.client(dst_user, dst_password)
        self.corpus = {
            path: [(raw, tuple(f for f in flags if f not in self.src_unstorable), when)
                   for raw, flags, when in messages]
            for path, messages in odd_corpus(self.seed).items()
        }  # fmt: skip
        for path, messages in list(self.corpus.items()):
            name = native(self.src, path)
            try:
                if not self.src.folder_exists(name):
                    self.src.create_folder(name)
            except IMAPClientError:  # a name this source server cannot hold (Cyrus: % " \\)
                del self.corpus[path]
                continue
            seed_folder(self.src, name, messages)

    def _storable(self, *flags: str) -> tuple[str, ...]:
        return tuple(f for f in flags if f not in self.src_unstorable)

    def copy(self, phase: str) -> AccountResult:
        result = copy_account(self.plan, self.account, self.source, self.destination, phase)
        self.results.append(result)
        return result

    def pairs(self, folders) -> dict[str, str]:
        """Source name -> destination name, native on each server, of the folder results."""
        return {
            native(self.src, tuple(f.source.split("/"))): native(self.dst, tuple(f.destination.split("/")))
            for f in folders
        }  # fmt: skip

    def assert_done(self, result: AccountResult) -> None:
        """Done but for the folders the destination refuses (each reported with the server's
        words); no message refused, none copied without its flags."""
        refused = {f.source: f.error for f in result.folders if f.error}
        assert set(refused) == self.refused, result.summary_lines()
        assert all("server said" in error for error in refused.values()), refused
        assert not result.failures, result.summary_lines()
        for notice in result.notices:  # only the keywords the destination refuses
            refused = re.findall(r"keywords not stored: ([^(]*) \(", notice.reason)
            assert refused and set(refused[0].split(", ")) <= self.dst_unstorable, notice
        assert result.ok == (not self.refused)

    def assert_exact(self, result: AccountResult) -> None:
        """Every folder of the pass holds exactly its source's messages (bytes, flags, dates)."""
        copied = [f for f in result.folders if not f.error]
        for source_name, destination_name in self.pairs(copied).items():
            expected = Counter()
            for (digest, flags, when), count in snapshot(self.src, source_name).items():
                expected[(digest, flags - self.dst_unstorable, when)] += count
            actual = snapshot(self.dst, destination_name)
            assert actual == expected, f"{source_name} -> {destination_name} differs"

    def run_core(self) -> None:
        """Initial copy, a re-run adding nothing, a delta (new mail, flag changes, a new
        folder); exact after each pass."""
        first = self.copy("initial")
        self.assert_done(first)
        held = sum(len(m) for p, m in self.corpus.items() if "/".join(p) not in self.refused)
        assert first.totals()["copied"] == held, first.summary_lines()
        self.assert_exact(first)
        again = self.copy("initial")
        self.assert_done(again)
        assert again.totals()["copied"] == 0, again.summary_lines()

        self.src.select_folder("INBOX")
        uids = self.src.search("ALL")
        before = self.src.get_flags(uids)
        self.src.add_flags(uids[:2], self._storable("\\Seen", "2025"))
        self.src.remove_flags(uids[4:6], ["\\Flagged"])
        changed = sum(1 for uid, flags in self.src.get_flags(uids).items() if flags != before[uid])
        seed_folder(self.src, "INBOX", [(make_message(self.seed + 900), (), WHEN)])
        seed_folder(self.src, native(self.src, ("日本語",)),
                    [(make_message(self.seed + 901), self._storable("0007"), WHEN)])  # fmt: skip
        later = native(self.src, ("Later", "Sub"))
        self.src.create_folder(native(self.src, ("Later",)))
        self.src.create_folder(later)
        seed_folder(self.src, later, [(make_message(self.seed + 902), ("\\Seen",), WHEN)])
        delta = self.copy("delta")
        self.assert_done(delta)
        totals = delta.totals()
        assert totals["copied"] == 3 and totals["flags_updated"] == changed, delta.summary_lines()
        self.assert_exact(delta)
        assert "Later/Sub" in {f.source for f in delta.folders}

    def sent_mapping(self) -> str | None:
        """The source folder copied into the destination's ``\\Sent`` folder (created with
        that attribute when the destination had none: CREATE-SPECIAL-USE)."""
        sent = [name for attrs, _, name in self.dst.list_folders() if b"\\Sent" in attrs]
        if not sent:
            return None  # a destination without special-use
        assert len(sent) == 1, sent
        (source,) = [f.source for f in self.results[0].folders
                     if native(self.dst, tuple(f.destination.split("/"))) == sent[0]]  # fmt: skip
        return source
