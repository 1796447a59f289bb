"""The links section: both tools over shaped links (latency, bandwidth caps), against the limit.

``python -m bench.links [--quick] [--rounds N] [--link NAME] [--out DIR]`` runs it alone; ``make
bench`` runs it as part of ``bench.run``. A :class:`~harness.shaper.ShapingProxy` sits in front of
each Dovecot, shaped alike (the link "each side"); the engine and mbsync copy the same seeded
source through both proxies into fresh destination accounts, in alternating order per round:
an initial copy, then a delta with nothing changed.

Beside each figure: the link's physical limit for the corpus, bytes ÷ bandwidth on each side
(both sides carry the corpus once and can be busy at the same time, so the limit is the slower
side's), and the round trips of the unchanged delta as the proxies saw them: commands (tagged
responses) and the client's flights (each time it waited for an answer), per side.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.shaper import ShapingProxy  # noqa: E402

from bench.corpus import DESTINATION_NAMES, CorpusSpec, build_corpus, seed_source  # noqa: E402
from bench.rounds import TOOLS, _compare, _delete_mail, _destination_only, _snapshot  # noqa: E402
from bench.servers import BenchServers  # noqa: E402
from bench.tools import Login, Run, run_engine, run_mbsync, warm_up  # noqa: E402


@dataclass(frozen=True)
class Link:
    """A link each side: round-trip time and a bandwidth cap (each direction) or none.

    :param compress: both servers offer COMPRESS=DEFLATE (both tools use it when offered).
    :param corpus: ``mixed`` (text and attachments, as the main benchmark) or ``text``.
    """

    name: str
    rtt_ms: float
    mbit: float | None = None
    compress: bool = False
    corpus: str = "mixed"

    @property
    def delay(self) -> float:
        return self.rtt_ms / 2000

    def limit_seconds(self, size: int) -> float | None:
        """The shortest time ``size`` bytes can cross this link uncompressed (``None``:
        uncapped)."""
        return size * 8 / (self.mbit * 1e6) if self.mbit else None


LINKS = (
    Link("loopback", 0),
    Link("10 ms", 10),
    Link("40 ms", 40),
    Link("40 ms, 50 Mbit/s", 40, 50),
    Link("100 ms, 20 Mbit/s", 100, 20),
    Link("40 ms, 50 Mbit/s, COMPRESS", 40, 50, compress=True),
    Link("40 ms, 50 Mbit/s, text", 40, 50, corpus="text"),
    Link("40 ms, 50 Mbit/s, text, COMPRESS", 40, 50, compress=True, corpus="text"),
)
QUICK_LINKS = (
    Link("loopback", 0),
    Link("10 ms, 20 Mbit/s", 10, 20),
    Link("10 ms, 20 Mbit/s, COMPRESS", 10, 20, compress=True),
)
SPECS = {
    "mixed": CorpusSpec(messages=2000, total_bytes=40 * 1024 * 1024, max_size=4 * 1024 * 1024),
    # No attachment tail to speak of: the 1% of larger messages shrink to 50 KB each.
    "text": CorpusSpec(messages=2000, total_bytes=0, max_size=4 * 1024 * 1024),
}
QUICK_SPECS = {"mixed": CorpusSpec(messages=60, total_bytes=1024 * 1024, max_size=256 * 1024)}
STEPS = ("initial", "unchanged")


@dataclass
class _Source:
    """A seeded source account and what its folders hold (to check the engine's copies)."""

    servers: BenchServers
    login: Login
    size: int
    messages: int
    folders: int
    expected: dict


def run_links(
    servers: BenchServers,
    workdir: Path,
    *,
    quick: bool = False,
    rounds: int = 3,
    only: tuple[str, ...] = (),
    tools: tuple[str, ...] = TOOLS,
    say=print,
) -> dict[str, Any]:
    """Run every link's rounds; return the figures. Each corpus is seeded once per server pair
    (a second pair, offering compression, is started for the COMPRESS links)."""
    specs = QUICK_SPECS if quick else SPECS
    links = [link for link in (QUICK_LINKS if quick else LINKS) if not only or link.name in only]
    sources: dict[tuple[bool, str], _Source] = {}
    result: dict[str, Any] = {"corpus": {}, "rounds": rounds, "links": []}
    with ExitStack() as stack:
        pairs = {False: servers}

        def source_for(link: Link) -> _Source:
            kind = link.corpus if link.corpus in specs else "mixed"
            key = (link.compress, kind)
            if key not in sources:
                if link.compress not in pairs:
                    pairs[link.compress] = stack.enter_context(
                        BenchServers(servers.store_dir, compression=True)
                    )
                sources[key] = _seed(pairs[link.compress], kind, specs[kind], say)
                found = sources[key]
                result["corpus"][kind] = {"messages": found.messages, "bytes": found.size,
                                          "folders": found.folders}  # fmt: skip
            return sources[key]

        for link in links:
            source = source_for(link)
            runs = [
                _round(source, link, number, workdir, tools, say) for number in range(1, rounds + 1)
            ]
            result["links"].append(_summarize(link, source.size, runs, tools))
    return result


def _seed(servers: BenchServers, kind: str, spec: CorpusSpec, say) -> _Source:
    corpus = build_corpus(spec)
    login = servers.account(servers.source, f"links-{kind}@example.com")
    client = servers.client(servers.source, login)
    try:
        seed_source(client, corpus)
    finally:
        client.logout()
    say(f"links: {kind} corpus, {corpus.count} messages, {corpus.size / 1e6:.1f} MB")
    expected = _snapshot(servers, servers.source, login, list(corpus.folders))
    return _Source(servers, login, corpus.size, corpus.count, len(corpus.folders), expected)


def _round(source: _Source, link: Link, number: int, workdir: Path, tools, say):
    """One round over ``link``: each tool's initial copy, then each tool's unchanged delta."""
    servers, expected = source.servers, source.expected
    order = tools if number % 2 == 1 else tuple(reversed(tools))
    slug = "".join(c for c in link.name.lower() if c.isalnum())
    logins = {
        tool: servers.account(servers.destination, f"{tool}-{slug}-r{number}@example.com")
        for tool in TOOLS
    }
    excluded = "mbsync" in tools and _destination_only(
        servers, logins["mbsync"], set(DESTINATION_NAMES.values())
    )
    shaping = {"delay": link.delay, "mbit_up": link.mbit, "mbit_down": link.mbit}
    measured: dict[str, dict[str, Any]] = {tool: {} for tool in tools}
    with (
        ShapingProxy(servers.source.host, servers.source.port, **shaping) as near_source,
        ShapingProxy(servers.destination.host, servers.destination.port, **shaping) as near_dest,
    ):
        src = replace(source.login, host=near_source.host, port=near_source.port)
        for step in STEPS:
            for tool in order:
                dst = replace(logins[tool], host=near_dest.host, port=near_dest.port)
                directory = workdir / f"links-{slug}-r{number}-{tool}"
                near_source.reset()
                near_dest.reset()
                if tool == "engine":
                    phase = "initial" if step == "initial" else "delta"
                    run = run_engine(directory, src, dst, phase, step)
                else:
                    run = run_mbsync(directory, src, dst, step, excluded)
                measured[tool][step] = {
                    **_figures(run),
                    "source": near_source.reset().to_dict(),
                    "destination": near_dest.reset().to_dict(),
                }
                say(
                    f"  links {link.name:18} r{number} {tool:6} {step:9} {_line(measured[tool][step])}"
                )
    if number == 1 and "engine" in tools:
        names = [DESTINATION_NAMES[n] for n in expected]
        problems = _compare(
            expected, _snapshot(servers, servers.destination, logins["engine"], names)
        )
        measured["engine"]["exact"] = not problems
        measured["engine"]["differences"] = problems
        say(f"  links {link.name:18} engine copy exact: {problems or 'yes'}")
    for login in logins.values():
        _delete_mail(servers, login)
    return measured


def _figures(run: Run) -> dict[str, Any]:
    return {
        "seconds": round(run.seconds, 3),
        "exit_code": run.exit_code,
        "copied": run.copied,
        **({"output_tail": run.output_tail[-600:]} if run.exit_code else {}),
    }


def _line(figures: dict[str, Any]) -> str:
    src, dst = figures["source"], figures["destination"]
    text = (
        f"{figures['seconds']:6.2f} s  source {src['bytes_down'] / 1e6:5.1f} MB down,"
        f" {src['commands']} commands, {src['flights']} flights; destination"
        f" {dst['bytes_up'] / 1e6:5.1f} MB up, {dst['commands']} commands, {dst['flights']} flights"
    )
    if figures["exit_code"]:
        text += f"  EXIT {figures['exit_code']}: {figures.get('output_tail', '')[-300:]}"
    return text


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def _summarize(link: Link, size: int, runs: list[dict[str, Any]], tools) -> dict[str, Any]:
    """Medians per tool and step; the limit; the unchanged delta's round trips (median)."""
    summary: dict[str, Any] = {
        "link": link.name,
        "rtt_ms": link.rtt_ms,
        "mbit": link.mbit,
        "compress": link.compress,
        "corpus": link.corpus,
        "limit_seconds": link.limit_seconds(size),
        "rounds": runs,
    }
    for tool in TOOLS:
        if tool not in tools:
            summary[tool] = {f"{step}_seconds": None for step in STEPS}
            continue
        steps = [r[tool] for r in runs]
        figures: dict[str, Any] = {
            "ok": all(s[step]["exit_code"] == 0 for s in steps for step in STEPS),
            "exact": runs[0][tool].get("exact"),
        }
        for step in STEPS:
            figures[f"{step}_seconds"] = _median([s[step]["seconds"] for s in steps])
            for side in ("source", "destination"):
                for key in ("commands", "flights", "connections"):
                    figures[f"{step}_{side}_{key}"] = _median([s[step][side][key] for s in steps])
            figures[f"{step}_source_mb_down"] = _median(
                [s[step]["source"]["bytes_down"] / 1e6 for s in steps]
            )
            figures[f"{step}_destination_mb_up"] = _median(
                [s[step]["destination"]["bytes_up"] / 1e6 for s in steps]
            )
        summary[tool] = figures
    engine, mbsync = summary["engine"]["initial_seconds"], summary["mbsync"]["initial_seconds"]
    summary["initial_ratio"] = round(mbsync / engine, 2) if engine and mbsync else None
    limit = summary["limit_seconds"]
    summary["engine_share_of_limit"] = round(limit / engine, 3) if limit and engine else None
    return summary


def targets(links: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 21's targets, where their link was measured."""
    by_name = {row["link"]: row for row in links["links"]}
    rows = []
    if capped := by_name.get("40 ms, 50 Mbit/s"):
        rows.append(("initial copy at 40 ms + 50 Mbit/s, share of the link limit",
                     capped["engine_share_of_limit"], 0.85))  # fmt: skip
    if uncapped := by_name.get("40 ms"):
        rows.append(("initial copy at 40 ms, speed vs mbsync (x)", uncapped["initial_ratio"], 4.0))
        rows.append(("unchanged delta at 40 ms, s (at most)",
                     uncapped["engine"]["unchanged_seconds"], 0.5))  # fmt: skip
    return [
        {
            "target": name,
            "value": value,
            "goal": goal,
            "met": None
            if value is None
            else (value <= goal if "at most" in name else value >= goal),
        }
        for name, value, goal in rows
    ]


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _trips(figures: dict[str, Any], compressed: bool) -> str:
    """``commands/flights`` per side; flights only over COMPRESS (the proxy cannot read the
    compressed commands)."""

    def side(name: str) -> str:
        commands = figures.get(f"unchanged_{name}_commands")
        flights = figures.get(f"unchanged_{name}_flights")
        if flights is None:
            return "n/a"
        return f"{flights:.0f}" if compressed else f"{commands:.0f}/{flights:.0f}"

    return f"{side('source')} + {side('destination')}"


def markdown(links: dict[str, Any]) -> str:
    """The links table: medians over the rounds, the limit beside each figure."""
    corpora = "; ".join(
        f"{kind}: {c['messages']} messages, {c['bytes'] / 1e6:.1f} MB in {c['folders']} folders"
        for kind, c in links["corpus"].items()
    )
    lines = [
        f"Links: each side shaped alike; corpus {corpora}; {links['rounds']} alternating rounds, "
        "medians. Limit: corpus bytes ÷ bandwidth, uncompressed (each side carries the corpus "
        "once, both at once). Round trips of the unchanged delta: commands/flights on source + "
        "destination. COMPRESS: both servers offer COMPRESS=DEFLATE (both tools use it).",
        "",
        "| link (each side) | limit | mailmigrate initial | mbsync initial | ratio "
        "| share of limit | mailmigrate unchanged delta | mbsync unchanged delta "
        "| round trips mailmigrate | round trips mbsync |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in links["links"]:
        engine, mbsync = row["engine"], row["mbsync"]
        share = row["engine_share_of_limit"]
        lines.append(
            f"| {row['link']} | {_s(row['limit_seconds']) if row['limit_seconds'] else '—'} "
            f"| {_s(engine['initial_seconds'])} | {_s(mbsync['initial_seconds'])} "
            f"| {row['initial_ratio'] or 'n/a'}× | {f'{share:.0%}' if share else '—'} "
            f"| {_s(engine['unchanged_seconds'])} | {_s(mbsync['unchanged_seconds'])} "
            f"| {_trips(engine, row['compress'])} | {_trips(mbsync, row['compress'])} |"
        )
    rows = targets(links)
    if rows:
        lines += ["", "| target | measured | goal | met |", "|---|---|---|---|"]
        for row in rows:
            value = "n/a" if row["value"] is None else f"{row['value']:.2f}"
            goal = f"{'<=' if 'at most' in row['target'] else '>='} {row['goal']}"
            met = "n/a" if row["met"] is None else ("yes" if row["met"] else "**no**")
            lines.append(f"| {row['target']} | {value} | {goal} | {met} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.links", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a tiny corpus over two links")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--link", action="append", default=[], help="only this link (repeatable)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--tool", action="append", choices=TOOLS, help="only this tool")
    parser.add_argument("--store", help="directory for the servers' mail (default /dev/shm)")
    args = parser.parse_args(argv)
    from bench.run import _default_store

    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    warm_up()
    workdir = Path(tempfile.mkdtemp(prefix="mailmigrate-bench-links-"))
    try:
        with BenchServers(args.store or _default_store()) as servers:
            links = run_links(servers, workdir, quick=args.quick, rounds=args.rounds,
                              only=tuple(args.link), tools=tuple(args.tool or TOOLS),
                              say=say)  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    links["targets"] = targets(links)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "links.json").write_text(json.dumps(links, indent=2) + "\n")
    print(markdown(links))
    ok = "engine" not in (args.tool or TOOLS) or all(
        row["engine"]["ok"] and row["engine"]["exact"] is not False for row in links["links"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
