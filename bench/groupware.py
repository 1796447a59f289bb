"""Groupware throughput: one account's 5,000-event calendar and 2,000-contact address book copied
between the test harness's DAV servers (Radicale, Xandikos from PyPI, on loopback) with
:func:`mailmigrate.groupware.sync.copy_groupware`, as the DAG's copy tasks call it.

::

    .venv/bin/python -m bench.groupware                      # Radicale -> Xandikos, full size
    .venv/bin/python -m bench.groupware --events 500 --contacts 200 --direction xandikos-radicale

The source is written straight into Radicale's file store (one ``.ics``/``.vcf`` per item, as
Radicale itself stores them), so seeding takes seconds instead of 7,000 PUTs; a Xandikos source
is seeded by PUT. Per kind, in this order, each figure the wall time around the call: the
initial copy (items/s), a delta with nothing changed, a re-run without the state (every item
matched by UID, nothing written). The figures are printed and written as JSON to
``bench/results/groupware.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.radicale import RadicaleServer  # noqa: E402
from harness.xandikos import XandikosServer  # noqa: E402

from mailmigrate.groupware.dav import ADDRESSBOOK, CALENDAR, Collection, DavAccount  # noqa: E402
from mailmigrate.groupware.sync import copy_groupware  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "groupware.json"


def event(n: int) -> str:
    """One event: every seventh weekly recurring, every fifth with three attendees."""
    start = datetime(2025, 1, 6, 8, tzinfo=UTC) + timedelta(hours=7 * n)
    stamp = f"{start:%Y%m%dT%H%M%SZ}"
    end = f"{start + timedelta(hours=1):%Y%m%dT%H%M%SZ}"
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//mailmigrate bench//EN", "BEGIN:VEVENT",
             f"UID:bench-event-{n}@bench", f"DTSTAMP:{stamp}", f"DTSTART:{stamp}",
             f"DTEND:{end}", f"SUMMARY:Bench event {n}", f"DESCRIPTION:{'agenda ' * 20}",
             "LOCATION:Room 4"]  # fmt: skip
    if n % 7 == 0:
        lines.append("RRULE:FREQ=WEEKLY;COUNT=10")
    if n % 5 == 0:
        lines.append("ORGANIZER;CN=Owner:mailto:owner@bench.invalid")
        lines += [f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:a{i}@bench.invalid" for i in range(3)]
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return "\r\n".join(lines) + "\r\n"


def contact(n: int) -> str:
    lines = ["BEGIN:VCARD", "VERSION:3.0", f"UID:bench-contact-{n}@bench", f"FN:Contact {n}",
             f"N:{n};Contact;;;", f"EMAIL;TYPE=WORK:c{n}@bench.invalid",
             f"EMAIL;TYPE=HOME:c{n}@home.invalid", f"TEL;TYPE=CELL:+49 30 {n:07d}",
             f"ADR;TYPE=WORK:;;Street {n};Berlin;;10115;Germany", "END:VCARD"]  # fmt: skip
    return "\r\n".join(lines) + "\r\n"


def seed_radicale(server: RadicaleServer, user: str, events: int, contacts: int) -> None:
    """Write the collections into Radicale's file store (its own layout: a folder per
    collection with ``.Radicale.props``, a file per item)."""
    home = server.root / "collections" / "collection-root" / user
    for name, tag, props, items in (
        ("calendar", "VCALENDAR", {"C:supported-calendar-component-set": "VEVENT",
                                   "D:displayname": "Calendar"}, [event(n) for n in range(events)]),
        ("contacts", "VADDRESSBOOK", {"D:displayname": "Contacts"},
         [contact(n) for n in range(contacts)]),
    ):  # fmt: skip
        folder = home / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".Radicale.props").write_text(json.dumps({"tag": tag, **props}))
        suffix = ".ics" if tag == "VCALENDAR" else ".vcf"
        for n, text in enumerate(items):
            (folder / f"item-{n}{suffix}").write_text(text, newline="")


def seed_by_put(endpoint, events: int, contacts: int) -> None:
    account = DavAccount(endpoint)
    try:
        existing = {c.kind: c for c in account.collections()}
        for kind, items, suffix in ((CALENDAR, [event(n) for n in range(events)], ".ics"),
                                    (ADDRESSBOOK, [contact(n) for n in range(contacts)], ".vcf")):  # fmt: skip
            collection = existing.get(kind) or account.create(
                Collection(kind, "", kind, None, ("VEVENT",) if kind == CALENDAR else ()),
                f"{account.home(kind).rstrip('/')}/{kind}/",
            )
            for n, text in enumerate(items):
                account.put(kind, f"{collection.href}item-{n}{suffix}", text, None)
    finally:
        account.close()


def _warm(endpoint) -> None:
    account = DavAccount(endpoint, timeout=1800)
    try:
        for collection in account.collections():
            account.listing(collection)
    finally:
        account.close()


def timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def run(events: int, contacts: int, direction: str) -> dict:
    servers = {"radicale": RadicaleServer(), "xandikos": XandikosServer()}
    source_name, destination_name = direction.split("-")
    for server in servers.values():
        server.start()
    figures: dict = {"direction": f"{source_name} -> {destination_name}", "events": events,
                     "contacts": contacts}  # fmt: skip
    try:
        source = servers[source_name].add_user("owner")
        destination = servers[destination_name].add_user("owner")
        if source_name == "radicale":
            DavAccount(source).collections()  # Radicale makes the principal on first login
            seed_radicale(servers["radicale"], "owner", events, contacts)
            # Radicale parses every item of a collection it has not cached yet on the first
            # request (minutes for 5,000 events on a busy machine): warmed up outside the
            # figures, as a server in service has its cache
            warm, _ = timed(lambda: _warm(source))
            figures["radicale_cache_seconds"] = round(warm, 1)
        else:
            seed_seconds, _ = timed(lambda: seed_by_put(source, events, contacts))
            figures["seed_seconds"] = round(seed_seconds, 1)
        with tempfile.TemporaryDirectory() as state:
            for kind, count in (("calendars", events), ("contacts", contacts)):
                args = {"plan": "bench", "state_dir": Path(state), "kinds": (kind,)}
                initial, result = timed(lambda: copy_groupware(source, destination, **args))  # noqa: B023
                problems = result.all_problems
                assert not problems, [str(p) for p in problems[:5]]
                assert result.total("added") == count, (kind, result.total("added"))
                delta, _ = timed(lambda: copy_groupware(source, destination, phase="delta",
                                                        **args))  # noqa: B023  # fmt: skip
                args["state_dir"] = Path(state) / "lost"
                rerun, again = timed(lambda: copy_groupware(source, destination, **args))  # noqa: B023
                assert again.total("added") == again.total("updated") == 0
                figures[kind] = {"items": count, "initial_seconds": round(initial, 1),
                                 "items_per_second": round(count / initial, 1),
                                 "delta_unchanged_seconds": round(delta, 2),
                                 "rerun_without_state_seconds": round(rerun, 1)}  # fmt: skip
                print(kind, json.dumps(figures[kind]), flush=True)
    finally:
        for server in servers.values():
            server.stop()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.groupware", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--contacts", type=int, default=2000)
    parser.add_argument("--direction", default="radicale-xandikos",
                        choices=["radicale-xandikos", "xandikos-radicale"])  # fmt: skip
    args = parser.parse_args(argv)
    figures = run(args.events, args.contacts, args.direction)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
