"""The benchmark corpus: a seeded mailbox with a realistic size spread, and its 1% change.

Sizes: most messages a few KB to tens of KB (log-normal around 6.5 KB), about 1% with attachments
from 100 KB to several MB (log-uniform). The attachment tail is scaled so the corpus hits its
byte target exactly; the same seed always gives the same bytes, flags and dates.
"""

from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.corpus import make_message, seed_folder  # noqa: E402

BASE_DATE = datetime(2022, 1, 3, 8, 0, 0, tzinfo=UTC)
# Share of the messages per folder, in the source's (legacy) names.
FOLDER_SHARES = {
    "INBOX": 0.40,
    "INBOX.Sent": 0.20,
    "INBOX.Archive": 0.20,
    "INBOX.Projects": 0.10,
    "INBOX.Lists": 0.075,
    "INBOX.Trash": 0.025,
}
# Where each source folder lands on the modern destination (both tools map them the same way).
DESTINATION_NAMES = {name: name.removeprefix("INBOX.") for name in FOLDER_SHARES}
TAIL_SHARE = 0.01
# mbsync 1.4 carries only system flags, so the corpus uses only those (no keywords).
FLAG_CHOICES = [
    ((), 0.12),
    (("\\Seen",), 0.68),
    (("\\Seen", "\\Answered"), 0.12),
    (("\\Seen", "\\Flagged"), 0.05),
    (("\\Flagged",), 0.03),
]


@dataclass
class CorpusSpec:
    """What to generate.

    :param messages: message count over all folders.
    :param total_bytes: the corpus size the attachment tail is scaled to.
    :param max_size: the largest message.
    """

    messages: int = 6000
    total_bytes: int = 115 * 1024 * 1024
    max_size: int = 8 * 1024 * 1024
    seed: int = 7


@dataclass
class Corpus:
    """Generated messages per source folder: ``(raw, flags, internaldate)`` tuples."""

    folders: dict[str, list[tuple[bytes, tuple[str, ...], datetime]]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(m) for m in self.folders.values())

    @property
    def size(self) -> int:
        return sum(len(raw) for m in self.folders.values() for raw, _, _ in m)

    def sizes(self) -> list[int]:
        return sorted(len(raw) for m in self.folders.values() for raw, _, _ in m)


def message_sizes(spec: CorpusSpec) -> list[int]:
    """Deterministic sizes: a log-normal body, a log-uniform attachment tail scaled to the target."""
    rng = random.Random(spec.seed)
    tail = max(1, round(spec.messages * TAIL_SHARE))
    body = [
        int(min(200_000, max(900, rng.lognormvariate(math.log(6500), 0.85))))
        for _ in range(spec.messages - tail)
    ]
    low, high = math.log(100_000), math.log(spec.max_size)
    raw_tail = [math.exp(rng.uniform(low, high)) for _ in range(tail)]
    wanted = max(0, spec.total_bytes - sum(body))
    scale = wanted / sum(raw_tail)
    tail_sizes = [int(min(spec.max_size, max(50_000, s * scale))) for s in raw_tail]
    sizes = body + tail_sizes
    rng.shuffle(sizes)
    return sizes


def _flags(rng: random.Random) -> tuple[str, ...]:
    pick = rng.random()
    for flags, share in FLAG_CHOICES:
        if pick < share:
            return flags
        pick -= share
    return ()


def build_corpus(spec: CorpusSpec) -> Corpus:
    """The corpus of ``spec``: the same bytes for the same spec."""
    rng = random.Random(spec.seed + 1)
    sizes = message_sizes(spec)
    corpus = Corpus()
    start = 0
    names = list(FOLDER_SHARES)
    for index, name in enumerate(names):
        last = index == len(names) - 1
        count = len(sizes) - start if last else round(spec.messages * FOLDER_SHARES[name])
        messages = []
        for number in range(start, start + count):
            raw = make_message(
                spec.seed * 10_000 + number,
                size=sizes[number],
                message_id=rng.random() > 0.01,  # a few drafts and oddities without one
            )
            when = BASE_DATE + timedelta(minutes=37 * number)
            messages.append((raw, _flags(rng), when))
        corpus.folders[name] = messages
        start += count
    return corpus


def seed_source(client, corpus: Corpus) -> None:
    """Append the corpus to the (logged-in, empty) source account."""
    for name, messages in corpus.folders.items():
        seed_folder(client, name, messages)


@dataclass
class Change:
    """A 1% change applied to the source, and what it takes to undo it."""

    appended: dict[str, list[int]] = field(default_factory=dict)  # folder -> new UIDs
    flags: dict[str, dict[int, tuple]] = field(default_factory=dict)  # folder -> uid -> old flags
    new_messages: int = 0
    flag_changes: int = 0


def apply_change(client, corpus: Corpus, round_number: int, share: float = 0.01) -> Change:
    """Append ``share`` new messages and change the flags of ``share`` messages, per folder."""
    rng = random.Random(round_number * 7919)
    change = Change()
    for name, messages in corpus.folders.items():
        count = max(1, round(len(messages) * share))
        info = client.select_folder(name)
        uidnext = int(info[b"UIDNEXT"])
        fresh = [
            (
                make_message(
                    900_000 + round_number * 1000 + i, size=rng.choice((3000, 9000, 24000))
                ),
                ("\\Seen",) if i % 2 else (),
                BASE_DATE + timedelta(days=900, minutes=i),
            )
            for i in range(count)
        ]
        seed_folder(client, name, fresh)
        client.select_folder(name)
        uids = client.search("ALL")
        change.appended[name] = [uid for uid in uids if uid >= uidnext]
        old = [uid for uid in uids if uid < uidnext]
        targets = rng.sample(old, min(count, len(old)))
        before = client.get_flags(targets)
        change.flags[name] = {uid: tuple(before.get(uid, ())) for uid in targets}
        for uid in targets:
            flags = {f.decode() if isinstance(f, bytes) else f for f in before.get(uid, ())}
            if "\\Flagged" in flags:
                client.remove_flags([uid], ["\\Flagged"], silent=True)
            else:
                client.add_flags([uid], ["\\Flagged", "\\Seen"], silent=True)
        change.new_messages += len(fresh)
        change.flag_changes += len(targets)
    client.unselect_folder()
    return change


def undo_change(client, change: Change) -> None:
    """Expunge the appended messages and restore the changed flags."""
    for name, uids in change.appended.items():
        client.select_folder(name)
        if uids:
            client.add_flags(uids, ["\\Deleted"], silent=True)
            client.uid_expunge(uids)
        for uid, flags in change.flags.get(name, {}).items():
            client.set_flags([uid], [f for f in flags if f not in (b"\\Recent", "\\Recent")],
                             silent=True)  # fmt: skip
    client.unselect_folder()
