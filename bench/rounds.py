"""The head-to-head rounds: the engine and mbsync copy the same source into fresh accounts.

One round, in alternating tool order (round 1 engine first, round 2 mbsync first, ...):

1. initial copy by each tool into its own fresh destination account;
2. a delta on the unchanged source (engine ``--phase delta``, mbsync run again);
3. 1% new messages and 1% flag changes on the source, then a delta by each tool;
4. both destinations compared with the source (bytes, flags, INTERNALDATE as multisets);
5. the change undone and the destination accounts deleted, so every round starts alike.
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.corpus import DESTINATION_NAMES, Corpus, apply_change, undo_change
from bench.servers import BenchServers, server_cpu_seconds
from bench.tools import Login, Run, run_engine, run_mbsync

TOOLS = ("engine", "mbsync")
STEPS = ("initial", "unchanged", "changed")


@dataclass
class Round:
    number: int
    order: tuple[str, ...]
    runs: dict[str, dict[str, Run]] = field(default_factory=dict)  # tool -> step -> run
    exact: dict[str, bool] = field(default_factory=dict)
    differences: dict[str, list[str]] = field(default_factory=dict)
    change: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.number,
            "order": list(self.order),
            "runs": {
                t: {s: r.to_dict() for s, r in steps.items()} for t, steps in self.runs.items()
            },
            "exact": self.exact,
            "differences": self.differences,
            "change": self.change,
        }


def _snapshot(servers: BenchServers, server, login: Login, names: list[str]) -> dict[str, Counter]:
    from harness.corpus import snapshot

    client = server.client(login.user, login.password)
    try:
        return {name: snapshot(client, name) for name in names}
    finally:
        client.logout()


def _compare(expected: dict[str, Counter], actual: dict[str, Counter]) -> list[str]:
    """What differs between source and destination snapshots, per source folder."""
    problems = []
    for source_name, want in expected.items():
        have = actual.get(DESTINATION_NAMES[source_name], Counter())
        if have != want:
            missing = sum((want - have).values())
            extra = sum((have - want).values())
            detail = _difference_kind(want - have, have - want)
            problems.append(f"{source_name}: {missing} missing or different, {extra} extra{detail}")
    return problems


def _difference_kind(missing: Counter, extra: Counter) -> str:
    """Say whether differing messages differ only in flags or dates (same bytes)."""
    missing_bytes = {key[0] for key in missing}
    extra_bytes = {key[0] for key in extra}
    same_bytes = missing_bytes & extra_bytes
    if not same_bytes:
        return ""
    flags = sum(1 for m in missing for e in extra if m[0] == e[0] and m[1] != e[1] and m[2] == e[2])
    dates = sum(1 for m in missing for e in extra if m[0] == e[0] and m[2] != e[2])
    return f" ({flags} differ in flags only, {dates} in INTERNALDATE)"


def _measured(servers: BenchServers, action) -> Run:
    before = server_cpu_seconds(servers.source) + server_cpu_seconds(servers.destination)
    run = action()
    after = server_cpu_seconds(servers.source) + server_cpu_seconds(servers.destination)
    run.server_cpu_seconds = round(after - before, 3)
    return run


def run_round(
    number: int,
    servers: BenchServers,
    source: Login,
    corpus: Corpus,
    workdir: Path,
    *,
    verify: bool = True,
    engine_options: dict[str, Any] | None = None,
    profile: Path | None = None,
    say=print,
) -> Round:
    """One round of both tools (see the module docstring).

    :param profile: write a cProfile of the engine's initial copy there.
    """
    order = TOOLS if number % 2 == 1 else tuple(reversed(TOOLS))
    result = Round(number, order)
    logins = {
        tool: servers.account(servers.destination, f"{tool}-r{number}@example.com")
        for tool in TOOLS
    }
    source_names = list(corpus.folders)
    excluded = _destination_only(servers, logins["mbsync"], set(DESTINATION_NAMES.values()))

    def run(tool: str, step: str) -> Run:
        directory = workdir / f"round{number}-{tool}"
        if tool == "engine":
            phase = "initial" if step == "initial" else "delta"
            action = lambda: run_engine(  # noqa: E731
                directory, source, logins[tool], phase, step, copy=engine_options,
                profile=profile if step == "initial" else None,
            )  # fmt: skip
        else:
            action = lambda: run_mbsync(directory, source, logins[tool], step, excluded)  # noqa: E731
        measured = _measured(servers, action)
        result.runs.setdefault(tool, {})[step] = measured
        say(f"  round {number} {tool:6} {step:9} {_line(measured)}")
        return measured

    for step in ("initial", "unchanged"):
        for tool in order:
            run(tool, step)
    client = servers.client(servers.source, source)
    try:
        change = apply_change(client, corpus, number)
        result.change = {"new_messages": change.new_messages, "flag_changes": change.flag_changes}
        for tool in order:
            run(tool, "changed")
        if verify:
            expected = _snapshot(servers, servers.source, source, source_names)
            # mbsync's copies differ the same way every round (X-TUID): checked in round 1 only.
            for tool in TOOLS if number == 1 else ("engine",):
                names = [DESTINATION_NAMES[n] for n in source_names]
                actual = _snapshot(servers, servers.destination, logins[tool], names)
                problems = _compare(expected, actual)
                if problems and tool == "mbsync":
                    problems.append(_x_tuid_note(servers, logins[tool]))
                result.exact[tool] = not problems
                result.differences[tool] = problems
                say(f"  round {number} {tool:6} copy exact: {problems or 'yes'}")
        undo_change(client, change)
    finally:
        client.logout()
    for login in logins.values():
        _delete_mail(servers, login)
    return result


def _x_tuid_note(servers: BenchServers, login: Login) -> str:
    """How many destination INBOX messages carry an ``X-TUID`` header (mbsync adds one to every
    message it copies, so its copies are not byte-identical)."""
    client = servers.client(servers.destination, login)
    try:
        client.select_folder("INBOX", readonly=True)
        fetched = client.fetch(client.search("ALL"), ["BODY.PEEK[HEADER.FIELDS (X-TUID)]"])
        tagged = sum(1 for d in fetched.values() if b"X-TUID" in next(iter(
            v for k, v in d.items() if k.startswith(b"BODY[")), b""))  # fmt: skip
        return f"INBOX: {tagged} of {len(fetched)} messages carry an X-TUID header mbsync added"
    finally:
        client.logout()


def _destination_only(servers: BenchServers, login: Login, wanted: set[str]) -> tuple[str, ...]:
    """Folders a fresh destination account has that the source lacks (mbsync must skip them)."""
    client = servers.client(servers.destination, login)
    try:
        names = [name for _, _, name in client.list_folders()]
    finally:
        client.logout()
    return tuple(sorted(n for n in names if n not in wanted and n != "INBOX"))


def _delete_mail(servers: BenchServers, login: Login) -> None:
    local, domain = login.user.split("@")
    shutil.rmtree(servers.destination.root / "mail" / domain / local, ignore_errors=True)


def _line(run: Run) -> str:
    text = f"{run.seconds:6.2f} s  rss {run.peak_rss_mb:5.0f} MB  cpu {run.cpu_seconds or 0:5.2f} s"
    if run.server_cpu_seconds is not None:
        text += f"  server cpu {run.server_cpu_seconds:5.2f} s"
    if run.verify_seconds:
        text += f"  of which verification {run.verify_seconds:5.2f} s"
    if run.exit_code:
        text += f"  EXIT {run.exit_code}: {run.output_tail.strip()[-300:]}"
    return text
