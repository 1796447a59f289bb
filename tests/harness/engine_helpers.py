"""Shared pieces of the engine tests: plans over the test servers, a rich corpus, comparisons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from harness.corpus import make_message, seed_folder, snapshot
from mailmigrate.connections import endpoint_from_dict
from mailmigrate.plan import Account, CopyOptions, FolderRules, Plan


def make_plan(tmp_path: Path, accounts: list[Account], **copy: object) -> Plan:
    return Plan(
        path=tmp_path / "plan.yaml",
        name="t",
        source_connection="src",
        destination_connection="dst",
        accounts=tuple(accounts),
        folders=FolderRules(),
        copy=CopyOptions(**copy),
        state_dir=tmp_path / "state",
    )


def endpoints(source_server, destination_server, **extra):
    return (
        endpoint_from_dict("src", source_server.connection("src", **extra)),
        endpoint_from_dict("dst", destination_server.connection("dst", **extra)),
    )


def rich_corpus(seed: int = 0, *, big: int = 0) -> list[tuple[bytes, tuple[str, ...], datetime]]:
    """Messages that exercise fidelity: no Message-ID, duplicates, 8-bit and very long headers,
    \\Deleted but not expunged, keywords, odd time zones, and optionally one large message."""
    base = datetime(2023, 5, 4, 10, 30, 0, tzinfo=UTC)
    zones = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
    flag_sets = [
        (),
        ("\\Seen",),
        ("\\Seen", "\\Answered"),
        ("\\Flagged",),
        ("\\Seen", "$Forwarded", "Work"),
        ("\\Draft",),
        ("\\Deleted", "\\Seen"),
        ("$Label1", "\\Seen", "\\Flagged"),
    ]
    out = []
    for i in range(30):
        raw = make_message(seed * 1000 + i, size=800 + (i * 977) % 30000)
        when = (base + timedelta(hours=i)).astimezone(zones[i % 3])
        out.append((raw, flag_sets[i % len(flag_sets)], when))
    no_id_a = make_message(seed * 1000 + 100, message_id=False, size=1500)
    no_id_b = make_message(seed * 1000 + 101, message_id=False, size=1500)
    twice = make_message(seed * 1000 + 102, size=3000)
    out += [
        (no_id_a, ("\\Seen",), base),
        (no_id_b, (), base + timedelta(minutes=1)),
        (twice, ("\\Seen",), base + timedelta(days=1)),
        (twice, ("\\Seen",), base + timedelta(days=1)),
        (make_message(seed * 1000 + 103, eight_bit_headers=True), ("Wichtig",), base),
        (make_message(seed * 1000 + 104, long_header=True, size=9000), (), base),
    ]
    if big:
        out.append((make_message(seed * 1000 + 105, size=big), ("\\Seen",), base))
    return out


def seed_account(client, folders: dict[str, list]) -> None:
    for name, messages in folders.items():
        seed_folder(client, name, messages)


def assert_same_folders(src_client, dst_client, pairs: dict[str, str]) -> None:
    """Every source folder's snapshot (bytes, flags, dates as a multiset) equals its copy's."""
    for source_name, destination_name in pairs.items():
        expected = snapshot(src_client, source_name)
        actual = snapshot(dst_client, destination_name)
        assert actual == expected, f"{source_name} -> {destination_name} differs"
