"""``python -m bench.run [--quick] [--out DIR]``: the whole benchmark in one run.

Starts a legacy-layout source and a modern-layout destination Dovecot, seeds a corpus, then:
head-to-head rounds of the engine and mbsync (initial copy, unchanged delta, delta after 1% new
messages and 1% flag changes), the scale run (many small accounts one at a time against all at
once), the memory run (one large message among many small ones), the links run (both tools
over shaped links: latency, bandwidth caps; :mod:`bench.links`) and the plan scale (plans of
thousands of accounts: parse, a test migration, a large run, the grid; :mod:`bench.plan_scale`). Writes ``results.json``,
``results.md`` and ``throughput.png`` to ``--out`` (default ``bench/results/``).

The mail stores live on tmpfs (``/dev/shm``) by default: on this machine's shared disk each new
file costs about a millisecond of kernel time in ext4's inode allocator, which swamped both tools
(see bench/README.md). ``--store DIR`` puts them elsewhere.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import links, plan_scale, report
from bench.corpus import CorpusSpec, build_corpus, seed_source
from bench.memory import run_memory
from bench.rounds import run_round
from bench.scale import run_scale
from bench.servers import BenchServers
from bench.tools import warm_up

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Settings:
    """How big each part of a run is."""

    messages: int
    megabytes: int
    max_message_mb: int
    rounds: int
    scale_accounts: int
    scale_messages: int
    scale_dag: bool
    scale_dag_parallel: int
    memory_large_mb: int
    memory_small: int


FULL = Settings(6000, 115, 8, 5, 20, 300, True, 4, 25, 3000)
QUICK = Settings(300, 6, 1, 1, 3, 40, False, 4, 5, 200)


def _default_store() -> str | None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 3 * 1024**3:
        return str(shm)
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run in under a minute")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    parser.add_argument("--rounds", type=int, help="head-to-head rounds (default 5, quick 1)")
    parser.add_argument("--store", help="directory for the servers' mail (default /dev/shm)")
    parser.add_argument("--skip", action="append", default=[], choices=("scale", "memory", "dag", "links", "plan"),
                        help="leave a part out (repeatable)")  # fmt: skip
    parser.add_argument("--profile", nargs="?", const="cprofile", choices=("cprofile", "py-spy"),
                        help="profile the first engine initial copy into --out: cProfile (engine-initial.prof) or "
                             "py-spy, sampling every thread (engine-initial.svg, a flame graph); its figures are then "
                             "slowed by the profiler")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    rounds = args.rounds or settings.rounds
    store = args.store or _default_store()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    say = _printer(started)
    spec = CorpusSpec(
        messages=settings.messages,
        total_bytes=settings.megabytes * 1024 * 1024,
        max_size=settings.max_message_mb * 1024 * 1024,
    )
    warm_up()
    corpus = build_corpus(spec)
    say(f"corpus: {corpus.count} messages, {corpus.size / 1024 / 1024:.1f} MB")
    workdir = Path(tempfile.mkdtemp(prefix="mailmigrate-bench-work-"))
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "settings": asdict(settings),
        "store": store or tempfile.gettempdir(),
        "machine": _machine(),
    }
    try:
        with BenchServers(store) as servers:
            source = servers.account(servers.source, "bench@example.com")
            client = servers.client(servers.source, source)
            seeding = time.monotonic()
            seed_source(client, corpus)
            client.logout()
            say(f"seeded the source in {time.monotonic() - seeding:.1f} s")
            per_round_raw = []
            for number in range(1, rounds + 1):
                suffix = ".svg" if args.profile == "py-spy" else ".prof"
                profile = out / f"engine-initial{suffix}" if args.profile and number == 1 else None
                per_round_raw.append(
                    run_round(number, servers, source, corpus, workdir, say=say, profile=profile)
                )
            sizes = corpus.sizes()
            results["corpus"] = {
                "messages": corpus.count,
                "megabytes": corpus.size / 1024 / 1024,
                "folders": len(corpus.folders),
                "per_folder": {name: len(m) for name, m in corpus.folders.items()},
                "median_kb": sizes[len(sizes) // 2] / 1024,
                "largest_kb": sizes[-1] / 1024,
                "over_100kb": sum(1 for s in sizes if s > 100_000),
            }
            per_round = [report.round_figures(r, corpus.count, corpus.size) for r in per_round_raw]
            results["rounds"] = [
                {**raw.to_dict(), "figures": figures}
                for raw, figures in zip(per_round_raw, per_round, strict=True)
            ]
            results["rounds_count"] = rounds
            results["summary"] = report.summarize(per_round)
            if "scale" not in args.skip:
                results["scale"] = run_scale(
                    servers, workdir, accounts=settings.scale_accounts,
                    messages=settings.scale_messages,
                    dag=settings.scale_dag and "dag" not in args.skip,
                    dag_parallel=settings.scale_dag_parallel, say=say,
                )  # fmt: skip
            if "memory" not in args.skip:
                results["memory"] = run_memory(
                    servers, workdir, large_mb=settings.memory_large_mb,
                    small=settings.memory_small, say=say,
                )  # fmt: skip
            if "links" not in args.skip:
                results["links"] = links.run_links(
                    servers, workdir, quick=args.quick, rounds=1 if args.quick else 3, say=say
                )
                results["links"]["targets"] = links.targets(results["links"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if "plan" not in args.skip:  # plans of thousands of accounts (bench/plan_scale.py)
        plan_args = ["--out", str(out)]
        if args.quick:  # the parse of a 2,000-account plan only
            plan_args += ["--accounts", "2000", "--skip", "folder", "--skip", "runs"]
        results["plan_scale"] = plan_scale.main(plan_args)
        say("plan scale: done")
    results["targets"] = report.targets(
        results["summary"], results.get("scale"), results.get("memory")
    )
    results["seconds"] = time.monotonic() - started
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report.write_results(out, results, per_round)
    say(f"done in {results['seconds']:.0f} s; results in {out}")
    print(report.markdown(results))
    engine_ok = results["summary"]["engine"]["all_ok"] and results["summary"]["engine"]["all_exact"]
    return 0 if engine_ok else 1


def _printer(started: float):
    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    return say


def _machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in load],
    }


if __name__ == "__main__":
    sys.exit(main())
