"""The memory run: a mailbox with one large message among many small ones; peak RSS of a copy."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from harness.corpus import make_message, seed_folder

from bench.corpus import BASE_DATE
from bench.servers import BenchServers
from bench.tools import run_engine, run_mbsync


def run_memory(
    servers: BenchServers, workdir: Path, *, large_mb: int, small: int, say=print
) -> dict[str, Any]:
    """Seed ``small`` messages of a few KB plus one of ``large_mb`` MB (in the middle of INBOX,
    so it meets full batches on both sides) and copy the account with both tools."""
    source = servers.account(servers.source, "memory@example.com")
    client = servers.client(servers.source, source)
    try:
        half = small // 2
        messages = [
            (make_message(500_000 + i, size=2_000 + (i * 7919) % 30_000), ("\\Seen",),
             BASE_DATE + timedelta(minutes=i))
            for i in range(small)
        ]  # fmt: skip
        large = make_message(499_999, size=large_mb * 1024 * 1024)
        messages.insert(half, (large, (), BASE_DATE))
        seed_folder(client, "INBOX", messages[: len(messages) // 2])
        seed_folder(client, "INBOX.Archive", messages[len(messages) // 2 :])
    finally:
        client.logout()
    figures: dict[str, Any] = {
        "messages": small + 1,
        "large_message_mb": len(large) / 1024 / 1024,
        "megabytes": sum(len(m[0]) for m in messages) / 1024 / 1024,
    }
    for tool in ("engine", "mbsync"):
        login = servers.account(servers.destination, f"memory-{tool}@example.com")
        directory = workdir / f"memory-{tool}"
        if tool == "engine":
            run = run_engine(directory, source, login, "initial", "memory")
        else:
            run = run_mbsync(
                directory, source, login, "memory", ("Drafts", "Junk", "Sent", "Trash")
            )
        figures[tool] = {
            "peak_rss_mb": run.peak_rss_mb,
            "seconds": run.seconds,
            "exit_code": run.exit_code,
            "copied": run.copied,
        }
        if run.exit_code:
            figures[tool]["error"] = run.output_tail[-500:]
        say(f"  memory {tool:6} peak RSS {run.peak_rss_mb:5.0f} MB, {run.seconds:.2f} s")
    return figures
