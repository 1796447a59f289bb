"""The lanes of one account's pass: a lane is one source and one destination connection
working through the folder queue; :func:`run_lanes` runs them, then the checks after the pass.

Connections are opened ahead (:class:`Connecting`: the other lanes log in while the first lists
and plans), closed all at once (:func:`close_all`), and every folder pass and check is retried
with back-off after a lost connection (:func:`with_reconnects`).
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from mailmigrate import labels
from mailmigrate.errors import AuthenticationFailed, MailboxError
from mailmigrate.folders import FolderPlan, folder_name
from mailmigrate.mailbox.base import Mailbox
from mailmigrate.plan import Plan
from mailmigrate.results import AccountResult, FolderResult
from mailmigrate.state import AccountState
from mailmigrate.verify import Expectation, listed_at_once, settle

A = TypeVar("A")
B = TypeVar("B")


def both(first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
    """``(first(), second())``, the second on another thread (each on its own connection, so
    their round trips overlap). The first error is raised, after both have ended."""
    outcome: list = []

    def run_second() -> None:
        try:
            outcome.append(second())
        except BaseException as exc:  # raised below, in the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=run_second, daemon=True)
    thread.start()
    try:
        result = first()
    finally:
        thread.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return result, outcome[0]


@dataclass
class Lane:
    """What every folder pass of one account shares."""

    plan: Plan
    state: AccountState
    result: AccountResult
    say: Callable[[str], None]
    retry_delays: Sequence[float]
    folder_plan: FolderPlan | None = None
    expected: queue.Queue[Expectation] = field(default_factory=queue.Queue)  # one per folder
    checks_started: float = 0.0


class Connecting:
    """A lane's connection pair, logging in on a thread of its own as soon as ``start`` is set
    (unless cancelled before); :meth:`ready` waits for it."""

    def __init__(self, pair: tuple[Mailbox, Mailbox], say, retry_delays: Sequence[float],
                 start: threading.Event) -> None:  # fmt: skip
        self.pair = pair
        self._failed: list[BaseException] = []
        self._lock = threading.Lock()
        self._cancelled = self._started = self._finished = self._dropped = False
        self._thread = threading.Thread(target=self._connect, args=(say, retry_delays, start),
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def _connect(self, say, retry_delays: Sequence[float], start: threading.Event) -> None:
        start.wait()
        with self._lock:
            if self._cancelled:
                return
            self._started = True
        try:
            with_reconnects(lambda: connect_pair(*self.pair), say, "connecting", retry_delays)
        except BaseException as exc:  # raised by ready(), in the lane's thread
            self._failed.append(exc)
        with self._lock:
            self._finished = True
            dropped = self._dropped and not self._failed
        if dropped:  # the pass ended while this pair logged in: nobody else closes it
            close_all(self.pair)

    def cancel(self) -> None:
        """Never log in, unless the login has started already."""
        with self._lock:
            self._cancelled = not self._started

    def ready(self) -> tuple[Mailbox, Mailbox]:
        self._thread.join()
        if self._failed:
            raise self._failed[0]
        return self.pair

    def ready_if_needed(self, work: queue.Queue) -> tuple[Mailbox, Mailbox] | None:
        """The pair once logged in, or ``None`` as soon as ``work`` is empty while the login
        is still under way (the other lanes took every folder: nothing to wait for)."""
        while self._thread.is_alive():
            if work.empty():
                return None
            self._thread.join(0.005)
        return self.ready()

    def close_later(self) -> tuple[Mailbox, ...]:
        """The pair to close (for :func:`close_all`), once no login is under way any more; a
        pair still logging in is not waited for: its own thread closes it when it is in."""
        with self._lock:
            if self._started and not self._finished:
                self._dropped = True
                return ()
        self._thread.join()
        return self.pair


def close_all(mailboxes: Sequence[Mailbox]) -> None:
    """Log out of every mailbox at once (each logout waits a round trip for the server)."""
    threads = [threading.Thread(target=m.close, daemon=True) for m in mailboxes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def run_lanes(lane_ctx: Lane, first_pair, ahead: list[Connecting], work):
    """The folder passes on the first pair and the pairs connected ahead (one lane each); then,
    once every lane's copies are done (so that a destination dropping earlier mail while later
    mail arrives is caught), the checks of :mod:`mailmigrate.verify` on the same lanes.
    The pairs are closed by the caller."""
    errors: list[BaseException] = []

    share = [1]  # checks per lane, asked together

    def start_checks() -> None:
        lane_ctx.checks_started = time.monotonic()
        share[0] = max(1, math.ceil(lane_ctx.expected.qsize() / (len(ahead) + 1)))

    copied = threading.Barrier(len(ahead) + 1, action=start_checks)

    def lane(connecting: Connecting | None) -> None:
        try:
            if connecting is None:
                src, dst = first_pair
            else:
                pair = connecting.ready_if_needed(work)
                if pair is None:  # no folder left for this lane: no copy and no check
                    copied.wait()
                    return
                src, dst = pair
                src.share_states(first_pair[0])
                dst.share_states(first_pair[1])
            while not errors:
                try:
                    mapping = work.get_nowait()
                except queue.Empty:
                    break
                lane_ctx.result.folders.append(_folder_with_retries(lane_ctx, src, dst, mapping))
            copied.wait()
            while not errors:
                mine = _take(lane_ctx.expected, share[0])
                if not mine:
                    return
                _check_with_retries(lane_ctx, src, dst, mine)
        except BaseException as exc:  # surfaced to the caller below
            errors.append(exc)
            copied.abort()  # no lane waits for this one

    threads = [threading.Thread(target=lane, args=(c,), daemon=True) for c in ahead]
    for thread in threads:
        thread.start()
    lane(None)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def connect_pair(src: Mailbox, dst: Mailbox) -> None:
    """Log in on both sides at once (each login is a few round trips); when one side fails,
    the other is logged out again and the failure raised."""
    failed: list[BaseException] = []

    def destination() -> None:
        try:
            dst.connect()
        except BaseException as exc:  # raised below, in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=destination, daemon=True)
    thread.start()
    try:
        src.connect()
    except BaseException:
        thread.join()
        dst.close()
        raise
    thread.join()
    if failed:
        src.close()
        raise failed[0]


def with_reconnects(action, say, what: str, delays: Sequence[float], reconnect=None):
    """Run ``action``; on a retryable error wait with back-off, reconnect and run it again."""
    for attempt, delay in enumerate((*delays, None), start=1):
        try:
            return action()
        except AuthenticationFailed:
            raise
        except MailboxError as exc:
            if not exc.retryable or delay is None:
                raise
            say(f"{what}: {exc}; attempt {attempt} failed, retrying in {delay} s")
            time.sleep(delay)
            if reconnect:
                try:
                    reconnect()
                except MailboxError as again:
                    if not again.retryable:
                        raise
                    say(f"reconnect failed: {again}")


def _take(expected: queue.Queue, most: int) -> list[Expectation]:
    taken = []
    while len(taken) < most:
        try:
            taken.append(expected.get_nowait())
        except queue.Empty:
            break
    return taken


def _check_with_retries(lane: Lane, src, dst, expectations: list[Expectation]) -> None:
    def attempt(check, what):
        return with_reconnects(check, lane.say, what, lane.retry_delays, _reconnect(src, dst))

    listed = listed_at_once(dst, expectations, attempt)
    for expectation in expectations:
        settle(src, dst, expectation, lane.state, lane.say, attempt,
               listed.get(expectation.destination))  # fmt: skip


def _reconnect(src: Mailbox, dst: Mailbox) -> Callable[[], None]:
    def reconnect() -> None:
        src.reconnect()
        dst.reconnect()

    return reconnect


def _folder_with_retries(lane: Lane, src, dst, mapping) -> FolderResult:
    say = lane.say

    def attempt():
        folder_pass = labels.pass_for(lane.folder_plan, mapping)(
            lane.plan, src, dst, mapping, lane.state, lane.result, say
        )
        result = folder_pass.run()
        lane.expected.put(folder_pass.expected)
        return result

    try:
        what = f"folder {folder_name(mapping.source.path)}"
        return with_reconnects(attempt, say, what, lane.retry_delays, _reconnect(src, dst))
    except AuthenticationFailed:
        raise
    except MailboxError as exc:
        if exc.retryable:
            raise  # the servers are gone: let the task retry the account later
        folder = FolderResult(
            source=folder_name(mapping.source.path), destination=folder_name(mapping.destination)
        )
        folder.error = str(exc)
        say(f"folder {folder.source} failed: {exc}")
        return folder
