"""The scale run: many small accounts one at a time, then all at once.

Three comparisons, each of one at a time against in parallel done the same way:

- engine processes: the sum of the wall times of single-account CLI processes, against every
  account in its own process, all started together;
- one engine process (the CLI as users run it for a plan): a plan with ``parallel_accounts`` 1
  against the same plan with every account at once;
- Airflow, where usable here: one DAG run of a plan with ``parallel_accounts`` 1 against one with
  4 (see :mod:`bench.dag_scale`).

Speed-up = one-at-a-time wall time / in-parallel wall time.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from bench.corpus import CorpusSpec, build_corpus, seed_source
from bench.servers import BenchServers
from bench.tools import Login, Run, run_engine, write_plan

BYTES_PER_MESSAGE = 115 * 1024 * 1024 // 6000  # the main corpus's average


def seed_accounts(servers: BenchServers, accounts: int, messages: int) -> list[Login]:
    """``accounts`` source accounts of ``messages`` messages each (different seeds)."""
    logins = []
    for number in range(accounts):
        login = servers.account(servers.source, f"scale{number:02d}@example.com")
        spec = CorpusSpec(
            messages=messages,
            total_bytes=messages * BYTES_PER_MESSAGE,
            max_size=2 * 1024 * 1024,
            seed=1000 + number,
        )
        client = servers.client(servers.source, login)
        try:
            seed_source(client, build_corpus(spec))
        finally:
            client.logout()
        logins.append(login)
    return logins


def _destinations(servers: BenchServers, prefix: str, count: int) -> list[Login]:
    return [
        servers.account(servers.destination, f"{prefix}{n:02d}@example.com") for n in range(count)
    ]


def run_scale(
    servers: BenchServers,
    workdir: Path,
    *,
    accounts: int,
    messages: int,
    dag: bool,
    dag_parallel: int = 4,
    say=print,
) -> dict[str, Any]:
    """Seed, then each comparison of one at a time against in parallel; figures and speed-ups."""
    sources = seed_accounts(servers, accounts, messages)
    figures: dict[str, Any] = {
        "accounts": accounts,
        "messages_per_account": messages,
        "variants": [],
    }
    singles: list[Run] = []
    for number, (source, destination) in enumerate(
        zip(sources, _destinations(servers, "single", accounts), strict=True)
    ):
        singles.append(
            run_engine(
                workdir / f"scale-single-{number:02d}", source, destination, "initial", "scale"
            )
        )
    failed = [r for r in singles if r.exit_code or r.copied != messages]
    sequential = sum(r.seconds for r in singles)
    figures["sequential_seconds"] = sequential
    figures["sequential_pass_seconds"] = sum(r.engine_seconds or 0.0 for r in singles)
    figures["single_peak_rss_mb"] = max(r.peak_rss_mb for r in singles)
    figures["sequential_failures"] = len(failed)
    figures["sequential_cpu_seconds"] = sum(r.cpu_seconds or 0.0 for r in singles)
    say(f"  scale one at a time: {accounts} x {messages} messages, sum {sequential:.2f} s")

    parallel = _all_at_once(servers, workdir, sources)
    _compare(parallel, f"sum of {accounts} single-account processes", sequential)
    figures["variants"].append(parallel)
    say(f"  scale all at once ({parallel['name']}): {parallel['seconds']:.2f} s")

    serial, together = (
        _one_process(servers, workdir, sources, n) for n in (1, accounts)
    )  # fmt: skip
    _compare(together, serial["name"], serial["seconds"] if serial["ok"] else None)
    figures["variants"].append(together)
    say(f"  scale one process: {serial['seconds']:.2f} s one at a time, "
        f"{together['seconds']:.2f} s {accounts} at a time")  # fmt: skip
    if dag:
        from bench.dag_scale import run_dag_variants

        runs = run_dag_variants(
            servers, workdir, sources,
            {n: _destinations(servers, f"dag{n}-", accounts) for n in (dag_parallel, 1)},
            messages, say=say,
        )  # fmt: skip
        variant, baseline = runs[dag_parallel], runs[1]
        _compare(variant, baseline["name"], baseline.get("seconds") if baseline["ok"] else None)
        variant["sequential_cli_speedup"] = (
            sequential / variant["seconds"] if variant["ok"] else None
        )
        figures["variants"].append(variant)
    return figures


def _compare(variant: dict[str, Any], baseline: str, baseline_seconds: float | None) -> None:
    """Record the one-at-a-time baseline a parallel variant is compared with."""
    variant["baseline"] = baseline
    variant["baseline_seconds"] = baseline_seconds
    ok = variant.get("ok") and baseline_seconds
    variant["speedup"] = baseline_seconds / variant["seconds"] if ok else None


def _one_process(
    servers: BenchServers, workdir: Path, sources: list[Login], parallel: int
) -> dict[str, Any]:
    """Every account in one ``mailmigrate copy`` of a plan with ``parallel_accounts``."""
    destinations = _destinations(servers, f"process{parallel}-", len(sources))
    directory = workdir / f"scale-process-{parallel}"
    directory.mkdir(parents=True, exist_ok=True)
    write_plan(directory, list(zip(sources, destinations, strict=True)), parallel_accounts=parallel)
    run = run_engine(directory, sources[0], destinations[0], "initial", "scale")
    return {
        "name": f"one engine process, parallel_accounts {parallel}",
        "seconds": run.seconds,
        "ok": run.exit_code == 0,
        "copied": run.copied or 0,
        "cpu_seconds": run.cpu_seconds,
        "peak_rss_mb": run.peak_rss_mb,
    }


def _all_at_once(servers: BenchServers, workdir: Path, sources: list[Login]) -> dict[str, Any]:
    destinations = _destinations(servers, "parallel", len(sources))
    runs: list[Run | None] = [None] * len(sources)

    def copy(number: int) -> None:
        runs[number] = run_engine(
            workdir / f"scale-parallel-{number:02d}",
            sources[number],
            destinations[number],
            "initial",
            "scale",
        )

    threads = [threading.Thread(target=copy, args=(n,)) for n in range(len(sources))]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    done = [r for r in runs if r is not None]
    ok = len(done) == len(sources) and all(r.exit_code == 0 for r in done)
    return {
        "name": f"{len(sources)} engine processes at once",
        "seconds": seconds,
        "ok": ok,
        "copied": sum(r.copied or 0 for r in done),
        "cpu_seconds": sum(r.cpu_seconds or 0.0 for r in done),
        "load_average_after": round(os.getloadavg()[0], 2),
        "peak_rss_mb_each": max((r.peak_rss_mb for r in done), default=None),
    }
