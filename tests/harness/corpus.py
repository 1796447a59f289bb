"""Test mail: realistic messages from a seed, fast seeding, and exact folder snapshots.

A snapshot is the multiset of ``(sha256 of the raw message, flags without \\Recent, INTERNALDATE in
UTC)`` over a folder; two folders hold an "exact copy" of each other when their snapshots are equal
(see "What copied means" in the design). IMAP INTERNALDATE has one-second resolution, so give
:func:`seed_folder` whole-second dates.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import imapclient

CRLF = "\r\n"
BASE_DATE = datetime(2024, 3, 1, 9, 0, 0, tzinfo=UTC)
MULTIAPPEND_BATCH_BYTES = 8 * 1024 * 1024

Message = tuple[bytes, Sequence[str | bytes], datetime]
SnapshotKey = tuple[str, frozenset[str], datetime]

_FIRST = ["Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hugo", "Ines", "Jonas"]
_LAST = ["Schmidt", "Meyer", "Weber", "Fischer", "Wagner", "Becker", "Hoffmann", "Koch"]
_DOMAINS = ["example.com", "example.org", "example.net", "mail.example.de"]
_TOPICS = [
    "quarterly report",
    "meeting notes",
    "invoice",
    "travel plans",
    "server migration",
    "project kickoff",
    "holiday schedule",
    "contract draft",
    "budget review",
    "newsletter",
]
_WORDS = [
    "the",
    "and",
    "for",
    "with",
    "this",
    "that",
    "from",
    "have",
    "will",
    "your",
    "about",
    "into",
    "please",
    "review",
    "attached",
    "document",
    "schedule",
    "meeting",
    "tomorrow",
    "budget",
    "project",
    "status",
    "update",
    "numbers",
    "team",
    "client",
    "thanks",
    "regards",
    "question",
    "answer",
    "deadline",
    "friday",
    "monday",
    "office",
    "draft",
    "final",
    "version",
]
_EIGHT_BIT_SUBJECTS = ["Grüße aus Köln", "Überweisung für März", "Réunion à 14h", "Año nuevo 🎉"]
_EIGHT_BIT_NAMES = ["Jürgen Müller", "Zoë Øster", "François Lefèvre"]


def _address(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return f"{first} {last}", f"{first.lower()}.{last.lower()}@{rng.choice(_DOMAINS)}"


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(_WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def _filler_lines(rng: random.Random, nbytes: int) -> list[str]:
    """Lines (without CRLF) that take exactly ``nbytes`` bytes once each gets a CRLF (``>= 2``)."""
    lines = []
    while nbytes > 0:
        width = 76 if nbytes > 78 + 3 else nbytes - 2
        words = []
        while sum(len(w) + 1 for w in words) < width:
            words.append(rng.choice(_WORDS))
        lines.append(" ".join(words)[:width].ljust(width, "."))
        nbytes -= width + 2
    return lines


def make_message(
    seed: int,
    *,
    size: int = 2000,
    message_id: bool = True,
    eight_bit_headers: bool = False,
    long_header: bool = False,
    date: datetime | None = None,
) -> bytes:
    """A realistic RFC 5322 message with CRLF line ends, the same bytes for the same arguments.

    The message is exactly ``size`` bytes unless the headers alone are longer. Messages of 4 KiB
    and more, and every fourth seed from 1.5 KB, are ``multipart/mixed`` with a base64 attachment.

    :param seed: selects names, subject, text and attachment content.
    :param message_id: include a ``Message-ID`` header (unique per seed).
    :param eight_bit_headers: raw UTF-8 (unencoded) in the Subject and From display name.
    :param long_header: a folded ``References`` header of ~40 ids and a 900-character
        unfolded ``X-Trace`` line (within RFC 5322's 998 limit).
    :param date: the ``Date`` header; by default one derived from the seed.
    """
    rng = random.Random(seed)
    from_name, from_addr = _address(rng)
    to_name, to_addr = _address(rng)
    if eight_bit_headers:
        from_name = rng.choice(_EIGHT_BIT_NAMES)
        subject = f"{rng.choice(_EIGHT_BIT_SUBJECTS)} #{seed}"
    else:
        subject = f"{rng.choice(_TOPICS).capitalize()} #{seed}"
    date = date or BASE_DATE + timedelta(hours=seed, minutes=rng.randrange(60))
    headers = [
        f'From: "{from_name}" <{from_addr}>',
        f'To: "{to_name}" <{to_addr}>',
        f"Subject: {subject}",
        f"Date: {format_datetime(date)}",
    ]
    if message_id:
        headers.append(f"Message-ID: <{seed}.{rng.getrandbits(48):012x}@{from_addr.split('@')[1]}>")
    if long_header:
        refs = [f"<{seed}.{i}.{rng.getrandbits(40):010x}@example.com>" for i in range(40)]
        headers.append("References: " + (CRLF + " ").join(refs))
        headers.append("X-Trace: " + "".join(rng.choice("abcdef0123456789") for _ in range(900)))
    headers.append("MIME-Version: 1.0")

    text = [f"Hello {to_name.split()[0]},", ""]
    text += [_sentence(rng, rng.randrange(6, 12)) for _ in range(rng.randrange(2, 5))]
    text += ["", "Regards,", from_name]
    multipart = size >= 4096 or (size >= 1500 and seed % 4 == 0)

    def assemble(text_lines: list[str], attachment: bytes) -> str:
        if not multipart:
            head = headers + [
                "Content-Type: text/plain; charset=utf-8",
                "Content-Transfer-Encoding: 8bit",
            ]
            return CRLF.join(head) + CRLF + CRLF + CRLF.join(text_lines) + CRLF
        boundary = f"=_part_{seed}_{len(attachment)}"
        encoded = base64.encodebytes(attachment).decode("ascii").replace("\n", CRLF)
        parts = [
            *headers,
            f'Content-Type: multipart/mixed; boundary="{boundary}"',
            "",
            "This is a multi-part message in MIME format.",
            f"--{boundary}",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
            "",
            *text_lines,
            f"--{boundary}",
            f'Content-Type: application/octet-stream; name="data-{seed}.bin"',
            "Content-Transfer-Encoding: base64",
            f'Content-Disposition: attachment; filename="data-{seed}.bin"',
            "",
        ]
        return CRLF.join(parts) + CRLF + encoded + f"--{boundary}--" + CRLF

    attachment = b""
    if multipart:
        overhead = len(assemble(text, b"").encode())
        raw_len = max(0, (size - overhead - 64) * 57 // 78)
        attachment = rng.randbytes(raw_len)
    message = assemble(text, attachment).encode()
    deficit = size - len(message)
    if deficit == 1:
        text[-1] += "."
    elif deficit >= 2:
        text += _filler_lines(rng, deficit)
    return assemble(text, attachment).encode()


def seed_folder(client: imapclient.IMAPClient, folder: str, messages: Iterable[Message]) -> None:
    """Append messages with their flags and INTERNALDATEs; create the folder if missing.

    Uses MULTIAPPEND in batches of about 8 MiB where the server advertises it, else APPEND.

    :param messages: ``(raw bytes, flags, timezone-aware internal date)`` tuples.
    """
    if not client.folder_exists(folder):
        client.create_folder(folder)
    if not client.has_capability("MULTIAPPEND"):
        for raw, flags, when in messages:
            client.append(folder, raw, flags=tuple(flags), msg_time=when)
        return
    batch: list[dict] = []
    batch_bytes = 0
    for raw, flags, when in messages:
        batch.append({"msg": raw, "flags": tuple(flags), "date": when})
        batch_bytes += len(raw)
        if batch_bytes >= MULTIAPPEND_BATCH_BYTES:
            _multiappend(client, folder, batch)
            batch, batch_bytes = [], 0
    if batch:
        _multiappend(client, folder, batch)


def _multiappend(client: imapclient.IMAPClient, folder: str, batch: list[dict]) -> None:
    typ, data = client.multiappend(folder, batch)
    if typ != "OK":
        raise imapclient.exceptions.IMAPClientError(
            f"MULTIAPPEND of {len(batch)} messages to {folder!r} failed: {typ} {data!r}"
        )


def _as_str(value: str | bytes | int) -> str:
    """A flag as text: imapclient reads a keyword of digits as an int (``2024``), keeping
    leading zeros as bytes (``0123``), so ``str`` gives back the keyword exactly."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def snapshot(
    client: imapclient.IMAPClient, folder: str, *, batch: int = 500
) -> Counter[SnapshotKey]:
    """The multiset of ``(sha256 hex, flags minus \\Recent, INTERNALDATE in UTC)`` of a folder.

    Selects the folder read-only (so ``\\Seen`` is never set by looking) and fetches in batches.
    """
    result: Counter[SnapshotKey] = Counter()
    info = client.select_folder(folder, readonly=True)
    if info.get(b"EXISTS", 0):
        uids = client.search("ALL")
        for start in range(0, len(uids), batch):
            fetched = client.fetch(
                uids[start : start + batch], ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]
            )
            for data in fetched.values():
                flags = frozenset(_as_str(f) for f in data[b"FLAGS"]) - {"\\Recent"}
                when = data[b"INTERNALDATE"].astimezone(UTC)
                result[(hashlib.sha256(data[b"BODY[]"]).hexdigest(), flags, when)] += 1
    if client.has_capability("UNSELECT"):
        client.unselect_folder()
    else:
        client.close_folder()  # read-only: CLOSE expunges nothing
    return result


def folder_snapshot(client: imapclient.IMAPClient) -> dict[str, Counter[SnapshotKey]]:
    """:func:`snapshot` of every selectable folder, keyed by the server's folder name."""
    snapshots = {}
    for flags, _delimiter, name in client.list_folders():
        lowered = {_as_str(f).lower() for f in flags}
        if lowered & {"\\noselect", "\\nonexistent"}:
            continue
        snapshots[name] = snapshot(client, name)
    return snapshots
