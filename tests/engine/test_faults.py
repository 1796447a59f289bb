"""Faults a migration meets over days against servers we do not control, and what survives them.

- Connection faults: a proxy of our own (``harness.proxy``) drops connections at seeded points,
  stalls them past the engine's socket timeout and cuts them inside literals, on both sides at
  once, through a 2,000-message copy. The engine reconnects by itself; when it gives up the pass
  raises and the test runs it again, as the task's retries would.
- Server faults: the destination Dovecot killed and restarted mid-copy, the source restarted
  mid-delta.

(Refusals: ``test_refusals.py``.)

Every run ends with the destination identical to the source (multiset of bytes, flags and
dates per folder): no message lost, none doubled.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from harness.corpus import make_message, snapshot
from harness.engine_helpers import endpoints, make_plan, seed_account
from harness.figures import record
from harness.proxy import CuttingProxy

from mailmigrate.connections import Endpoint
from mailmigrate.errors import AuthenticationFailed, MailboxError
from mailmigrate.plan import Account, Plan
from mailmigrate.sync import copy_account

LEGACY_TO_MODERN = {
    "INBOX": "INBOX",
    "INBOX.Sent": "Sent",
    "INBOX.Archive.2023": "Archive/2023",
    "INBOX.Lists": "Lists",
}
FAST_RETRIES = (0.05, 0.1, 0.2)
WHEN = datetime(2024, 1, 15, 8, 0, 0, tzinfo=UTC)


def _mail(seed: int, count: int, *, low: int = 600, high: int = 2_500):
    """``count`` small messages from a seed, with a few twins and messages without Message-ID."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        raw = make_message(seed * 100_000 + i, size=rng.randint(low, high),
                           message_id=i % 50 != 7)  # fmt: skip
        flags = rng.choice([(), ("\\Seen",), ("\\Seen", "\\Answered"), ("$Forwarded",)])
        out.append((raw, flags, WHEN + timedelta(minutes=i)))
        if i % 100 == 3:
            out.append((raw, flags, WHEN + timedelta(minutes=i)))  # a duplicate stays doubled
    return out


def assert_same_folders(src_client, dst_client, pairs: dict[str, str]) -> None:
    """Each destination folder holds exactly its source folder's messages; on a difference,
    say how many were lost and how many doubled."""
    for source_name, destination_name in pairs.items():
        expected = snapshot(src_client, source_name)
        actual = snapshot(dst_client, destination_name)
        lost, doubled = expected - actual, actual - expected
        assert not lost and not doubled, (
            f"{source_name} -> {destination_name}: {sum(lost.values())} lost, "
            f"{sum(doubled.values())} extra: {sorted(lost)[:3]} / {sorted(doubled)[:3]}"
        )


def _proxied(endpoint: Endpoint, proxy: CuttingProxy, **extra: object) -> Endpoint:
    return replace(endpoint, port=proxy.port, extra={**endpoint.extra, **extra})


class _ReadyForDelta(NamedTuple):
    src: Any  # the source account's IMAP client
    account: Account
    plan: Plan
    source: Endpoint  # through src_proxy
    destination: Endpoint  # through dst_proxy
    new_bytes: int  # the size of the mail delivered after the initial copy
    src_proxy: CuttingProxy
    dst_proxy: CuttingProxy


def _copied_then_new_mail(
    source_server, destination_server, new_account, tmp_path, first, later, batch_messages
) -> _ReadyForDelta:
    """An account seeded with ``first`` (folder -> messages), copied by an initial pass into a
    new destination account, then given ``later`` on the source: what a delta has to carry.
    Both sides are reached through (unarmed) proxies from the start: the sync state belongs to
    the endpoints it was written through, so the delta must use the same ones."""
    user, password = new_account(source_server)
    src = source_server.client(user, password)
    seed_account(src, first)
    dst_user, dst_password = new_account(destination_server)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account], batch_messages=batch_messages, parallel_folders=2)
    src_proxy = CuttingProxy(source_server.host, source_server.port)
    dst_proxy = CuttingProxy(destination_server.host, destination_server.port)
    source, destination = endpoints(source_server, destination_server)
    source, destination = _proxied(source, src_proxy), _proxied(destination, dst_proxy)
    assert copy_account(plan, account, source, destination, "initial").ok
    seed_account(src, later)
    new_bytes = sum(len(raw) for m in later.values() for raw, _, _ in m)
    return _ReadyForDelta(src, account, plan, source, destination, new_bytes, src_proxy, dst_proxy)


def _until_done(plan, account, source, destination, phase, lines, *, limit=80):
    """Run the pass again after every failure, as Airflow's task retries would; return the
    result and how many task retries it took."""
    retries = 0
    while True:
        try:
            result = copy_account(plan, account, source, destination, phase,
                                  retry_delays=FAST_RETRIES, progress=lines.append)  # fmt: skip
            return result, retries
        except MailboxError as exc:
            assert exc.retryable, f"a fault made the pass fail for good: {exc}"
            assert not isinstance(exc, AuthenticationFailed)
            retries += 1
            assert retries < limit, f"no progress after {retries} task retries: {exc}"


# -- connection faults ---------------------------------------------------------------------------


def test_a_2000_message_copy_survives_20_drops_stalls_and_literal_cuts_on_each_side(
    legacy_imap, modern_imap, new_account, tmp_path
):
    user, password = new_account(legacy_imap)
    src = legacy_imap.client(user, password)
    corpus = {
        "INBOX": _mail(1, 1_150),
        "INBOX.Sent": _mail(2, 450),
        "INBOX.Archive.2023": _mail(3, 300),
        "INBOX.Lists": _mail(4, 100),
    }
    seed_account(src, corpus)
    messages = sum(len(m) for m in corpus.values())
    total_bytes = sum(len(raw) for m in corpus.values() for raw, _, _ in m)
    assert messages >= 2_000
    dst_user, dst_password = new_account(modern_imap)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account], batch_messages=100, parallel_folders=2)
    source, destination = endpoints(legacy_imap, modern_imap)
    src_proxy = CuttingProxy(legacy_imap.host, legacy_imap.port)
    dst_proxy = CuttingProxy(modern_imap.host, modern_imap.port)
    try:
        # Both sides carry every message's bytes at least once: faults drawn from the first
        # 85% of that traffic all fire before the copy can be complete.
        span = int(total_bytes * 0.85)
        for seed, proxy in ((11, src_proxy), (12, dst_proxy)):
            proxy.schedule(seed, span, start=2_000, drops=20, stalls=2, literal_cuts=5,
                           stall_seconds=1.5)  # fmt: skip
        lines: list[str] = []
        result, task_retries = _until_done(
            plan, account,
            _proxied(source, src_proxy, timeout=1), _proxied(destination, dst_proxy, timeout=1),
            "initial", lines,
        )  # fmt: skip
        assert result.ok, result.summary_lines()
        for proxy in (src_proxy, dst_proxy):
            assert proxy.pending_faults == 0
            assert proxy.fired == {"drop": 20, "stall": 2, "literal": 5}
    finally:
        src_proxy.close()
        dst_proxy.close()
    assert_same_folders(src, modern_imap.client(dst_user, dst_password), LEGACY_TO_MODERN)
    reconnects = sum("retrying" in line for line in lines)
    assert reconnects > 0
    record("connection faults", drops=40, stalls=4, literal_cuts=10, engine_reconnects=reconnects,
           task_retries=task_retries, messages_verified=messages)  # fmt: skip
    record("survived", copies_identical_after_faults=1)


def test_a_delta_survives_faults_on_both_sides(legacy_imap, modern_imap, new_account, tmp_path):
    src, account, plan, source, destination, new_bytes, src_proxy, dst_proxy = _copied_then_new_mail(
        legacy_imap, modern_imap, new_account, tmp_path,
        {"INBOX": _mail(21, 300), "INBOX.Lists": _mail(22, 100)},
        {"INBOX": _mail(23, 400), "INBOX.Lists": _mail(24, 100)}, batch_messages=40,
    )  # fmt: skip
    src.select_folder("INBOX")
    uids = src.search("ALL")
    src.add_flags(uids[:40], ["\\Flagged"])
    src.remove_flags(uids[40:80], ["\\Seen"])
    try:
        for seed, proxy in ((31, src_proxy), (32, dst_proxy)):
            proxy.schedule(seed, int(new_bytes * 0.8), start=500, drops=8, literal_cuts=2)
        lines: list[str] = []
        result, task_retries = _until_done(
            plan, account, _proxied(source, src_proxy, timeout=2),
            _proxied(destination, dst_proxy, timeout=2), "delta", lines,
        )  # fmt: skip
        assert result.ok, result.summary_lines()
        assert src_proxy.pending_faults == dst_proxy.pending_faults == 0
    finally:
        src_proxy.close()
        dst_proxy.close()
    dst = modern_imap.client(account.destination_user, account.destination_password)
    assert_same_folders(src, dst, {"INBOX": "INBOX", "INBOX.Lists": "Lists"})
    record("connection faults", drops=16, literal_cuts=4, task_retries=task_retries,
           engine_reconnects=sum("retrying" in line for line in lines))  # fmt: skip
    record("survived", deltas_identical_after_faults=1)


# -- server faults -------------------------------------------------------------------------------


class _DuringStall(threading.Thread):
    """Holds the traffic through ``proxy`` once ``offset`` bytes have passed and runs
    ``action`` (a server kill or restart) meanwhile: the fault lands mid-pass, however fast
    the pass is."""

    def __init__(self, proxy: CuttingProxy, offset: int, action, hold: float = 3.0) -> None:
        super().__init__(daemon=True)
        self.proxy, self.action = proxy, action
        proxy.schedule(seed=0, span=1, start=offset, stalls=1, stall_seconds=hold)
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 60
            while not self.proxy.fired["stall"]:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.005)
            self.action()
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()


def _kill_and_restart(server, proxy: CuttingProxy, down_for: float):
    def action() -> None:
        server.kill()
        proxy.cut()  # what the dead server had sent the proxy dies with it
        time.sleep(down_for)
        server.start()

    return action


def _restart(server, proxy: CuttingProxy):
    def action() -> None:
        server.restart()
        proxy.cut()  # no connection outlives a restart

    return action


def test_destination_killed_and_restarted_mid_copy(
    legacy_imap, private_imap, new_account, tmp_path
):
    destination_server = private_imap("modern")
    user, password = new_account(legacy_imap)
    src = legacy_imap.client(user, password)
    corpus = {"INBOX": _mail(41, 700), "INBOX.Sent": _mail(42, 200)}
    seed_account(src, corpus)
    total_bytes = sum(len(raw) for m in corpus.values() for raw, _, _ in m)
    dst_user, dst_password = new_account(destination_server)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account], batch_messages=50, parallel_folders=2)
    source, destination = endpoints(legacy_imap, destination_server)
    proxy = CuttingProxy(destination_server.host, destination_server.port)
    try:
        killer = _DuringStall(
            proxy, total_bytes // 2, _kill_and_restart(destination_server, proxy, 0.5)
        )
        killer.start()
        lines: list[str] = []
        result, task_retries = _until_done(plan, account, source, _proxied(destination, proxy),
                                           "initial", lines)  # fmt: skip
        killer.join(timeout=30)
        assert killer.done.is_set() and killer.error is None, killer.error
        assert result.ok, result.summary_lines()
    finally:
        proxy.close()
    dst = destination_server.client(dst_user, dst_password)
    assert_same_folders(src, dst, {"INBOX": "INBOX", "INBOX.Sent": "Sent"})
    reconnects = sum("retrying" in line for line in lines)
    assert reconnects + task_retries > 0  # the kill hit the copy
    record("server faults", destination_kills=1, task_retries=task_retries,
           engine_reconnects=reconnects)  # fmt: skip
    record("survived", copies_identical_after_server_kill=1)


def test_source_restarted_mid_delta(private_imap, modern_imap, new_account, tmp_path):
    source_server = private_imap("legacy")
    src, account, plan, source, destination, new_bytes, proxy, dst_proxy = _copied_then_new_mail(
        source_server, modern_imap, new_account, tmp_path,
        {"INBOX": _mail(51, 300), "INBOX.Lists": _mail(52, 60)},
        {"INBOX": _mail(53, 500), "INBOX.Lists": _mail(54, 80)}, batch_messages=30,
    )  # fmt: skip
    src.select_folder("INBOX")
    src.add_flags(src.search("ALL")[:25], ["\\Answered"])
    src.logout()
    try:
        restarter = _DuringStall(proxy, new_bytes // 2, _restart(source_server, proxy))
        restarter.start()
        lines: list[str] = []
        result, task_retries = _until_done(plan, account, source, destination, "delta", lines)
        restarter.join(timeout=30)
        assert restarter.done.is_set() and restarter.error is None, restarter.error
        assert result.ok, result.summary_lines()
    finally:
        proxy.close()
        dst_proxy.close()
    src = source_server.client(account.source_user, account.source_password)
    dst = modern_imap.client(account.destination_user, account.destination_password)
    assert_same_folders(src, dst, {"INBOX": "INBOX", "INBOX.Lists": "Lists"})
    reconnects = sum("retrying" in line for line in lines)
    assert reconnects + task_retries > 0  # the restart hit the delta
    record("server faults", source_restarts=1, task_retries=task_retries,
           engine_reconnects=reconnects)  # fmt: skip
    record("survived", deltas_identical_after_server_restart=1)
