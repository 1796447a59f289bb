"""The copy engine: one pass (initial or delta) over one account, folder by folder.

Read top-down:

1. :func:`copy_account` opens both mailboxes, maps the folders (``folders.map_folders``), creates
   and subscribes the destination folders, then runs every folder through a
   :class:`~mailmigrate.folder_pass.FolderPass` on ``parallel_folders`` lanes (a lane is one
   source and one destination connection).
2. The :class:`~mailmigrate.folder_pass.FolderPass` decides what to copy. With a sync token from
   the previous pass it asks the source only for what changed (new messages, flag changes,
   removals). Without one (first pass, lost state, UIDVALIDITY changed) it compares both folders
   by message identity as multisets, so whatever is already on the destination is never copied
   twice.
3. :class:`~mailmigrate.pipeline.CopyPipeline` copies: a reader thread fetches batches (bounded by
   bytes) while the caller appends the previous batch; each appended batch is recorded in the
   state in one transaction.
4. :func:`~mailmigrate.verify.settle` checks, once every folder is done, that every source
   message the pass selected is on the destination (by identity, from listings); a folder that
   lacks any fails the account and loses its sync state.

The state belongs to one source and one destination mailbox (see :mod:`mailmigrate.state`): a
folder whose source or destination is no longer the folder the state was written for is compared
by identity, never trusted.

Every step is safe to kill and re-run: state is written only for messages the destination
confirmed, and messages appended but not yet recorded are found again through the destination's
append mark and matched by identity.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from mailmigrate import labels
from mailmigrate.connections import Endpoint
from mailmigrate.errors import AuthenticationFailed, MailboxError
from mailmigrate.folders import FolderMapping, FolderPlan, folder_name, map_folders
from mailmigrate.mailbox import open_mailbox
from mailmigrate.mailbox.base import Folder, Mailbox
from mailmigrate.plan import Account, Plan
from mailmigrate.results import AccountResult, FolderResult, PreflightResult, human_bytes
from mailmigrate.state import AccountState, default_state_dir, mailbox_identity
from mailmigrate.verify import Expectation, settle

log = logging.getLogger("mailmigrate.sync")
A = TypeVar("A")
B = TypeVar("B")

RETRY_DELAYS = (1, 2, 4, 8, 16, 30, 60)


def open_pair(account: Account, source: Endpoint, destination: Endpoint) -> tuple[Mailbox, Mailbox]:
    """Unconnected source and destination mailboxes of one account."""
    return (
        open_mailbox(source, account.source_user, account.source_password,
                     f"source {account.source_user}"),
        open_mailbox(destination, account.destination_user, account.destination_password,
                     f"destination {account.destination_user}"),
    )  # fmt: skip


def plan_folders(
    plan: Plan,
    src: Mailbox,
    dst: Mailbox,
    state: AccountState | None = None,
    listed: tuple[list[Folder], list[Folder]] | None = None,
) -> FolderPlan:
    """The folder mapping; with a state, folders keep the destinations earlier passes chose.
    A label-based source (Gmail) maps as :mod:`mailmigrate.labels` says.

    :param listed: both sides' folders when the caller has listed them (else both are listed
        here, at once)."""
    folders, destination_folders = listed or both(src.list_folders, dst.list_folders)
    layout = labels.detect(src, folders, plan.folders.labels)
    folder_plan = map_folders(
        folders,
        destination_folders,
        plan.folders,
        destination_separator=dst.separator,
        valid_part=dst.valid_name_part,
        case_sensitive=dst.case_sensitive_names,
        previous=state.destinations() if state else None,
        **labels.mapping_options(layout),
    )
    folder_plan.label_layout = layout
    return folder_plan


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


# -- preflight -------------------------------------------------------------------------------
def preflight(
    plan: Plan, account: Account, source: Endpoint, destination: Endpoint
) -> PreflightResult:
    """The `test` step: log in on both sides, read capabilities, folders, sizes and quota, and
    show the folder mapping that a copy will use."""
    result = PreflightResult(account=account.source_user)
    src, dst = open_pair(account, source, destination)
    connected = []
    for mailbox in (src, dst):
        try:
            mailbox.connect()
            connected.append(mailbox)
        except MailboxError as exc:
            result.problems.append(str(exc))
    try:
        if len(connected) == 2:
            _inspect(plan, src, dst, result)
    finally:
        for mailbox in connected:
            mailbox.close()
    return result


def _inspect(plan: Plan, src: Mailbox, dst: Mailbox, result: PreflightResult) -> None:
    for facts, mailbox in ((result.source, src), (result.destination, dst)):
        facts.update(mailbox.describe())
        quota = mailbox.quota()
        facts["quota_used"] = quota.used if quota else None
        facts["quota_limit"] = quota.limit if quota else None
    folder_plan = plan_folders(plan, src, dst)
    for role, mailbox in (("source", src), ("destination", dst)):
        result.warnings += [f"{role}: {text}" for text in mailbox.fallbacks(role)]
    problems, notes = dst.probe({m.create_special_use for m in folder_plan.mappings
                                 if m.create_special_use},
                                [m.destination for m in folder_plan.mappings])  # fmt: skip
    result.problems += problems
    result.warnings += notes
    archived = None
    if folder_plan.label_layout is not None:
        result.labels, archived = labels.preflight(src, folder_plan, plan.copy.propagate_deletions)
        result.warnings += result.labels.pop("warnings")
    total = largest = 0
    for mapping in folder_plan.mappings:
        stats = mapping.source.selectable and src.folder_stats(mapping.source.path)
        if archived is not None and mapping.source.path == folder_plan.archive_source:
            stats = archived
        messages, size = (stats.messages, stats.size or 0) if stats else (0, 0)
        total += size
        largest = max(largest, (stats.largest or 0) if stats else 0)
        result.folders.append({
            "source": folder_name(mapping.source.path), "destination": folder_name(mapping.destination),
            "messages": messages, "bytes": size, "special_use": mapping.special_use,
            "renamed": mapping.renamed,
        })  # fmt: skip
    for folder in folder_plan.excluded:
        result.warnings.append(f"folder {folder_name(folder.path)} excluded by the plan")
    limit, used = result.destination["quota_limit"], result.destination["quota_used"] or 0
    if limit is not None and used + total > limit:
        result.problems.append(
            f"destination quota too small: {human_bytes(limit - used)} free of "
            f"{human_bytes(limit)}, the source holds {human_bytes(total)}"
        )
    append_limit = dst.append_limit()
    if append_limit is not None and largest > append_limit:
        result.warnings.append(
            f"the largest source message ({human_bytes(largest)}) exceeds the destination's "
            f"APPENDLIMIT ({human_bytes(append_limit)}): such messages will be reported, not copied"
        )


# -- copy ------------------------------------------------------------------------------------
def copy_account(
    plan: Plan,
    account: Account,
    source: Endpoint,
    destination: Endpoint,
    phase: str,
    *,
    state_dir=None,
    progress: Callable[[str], None] | None = None,
    retry_delays: Sequence[float] = RETRY_DELAYS,
) -> AccountResult:
    """One pass over one account. ``phase`` ("initial" or "delta") only labels the pass: both
    copy what is missing and sync flags; the state decides how much has to be read.

    :raises AuthenticationFailed: credentials refused (do not retry).
    :raises MailboxError: the servers stayed unreachable through every reconnect.
    :param retry_delays: back-off in seconds between reconnects after a dropped connection.
    """
    if phase not in ("initial", "delta"):
        raise ValueError(f"phase must be initial or delta, not {phase!r}")
    say = progress or (lambda text: log.info("%s: %s", account.source_user, text))
    result = AccountResult(account=account.source_user, phase=phase)
    started = time.monotonic()
    directory = state_dir or plan.state_dir or default_state_dir()
    with AccountState(directory, plan.name, mailbox_identity(source, account.source_user),
                      mailbox_identity(destination, account.destination_user)) as state:  # fmt: skip
        if state.distrusted:
            say(f"{state.distrusted}: not trusted, every folder is compared by identity")
        src, dst = open_pair(account, source, destination)
        # The other lanes log in while this one lists and plans, once its login worked (a
        # refused password is tried once, not once per lane).
        logged_in = threading.Event()
        ahead = [
            _Connecting(open_pair(account, source, destination), say, retry_delays, logged_in)
            for _ in range(plan.copy.parallel_folders - 1)
        ]
        try:
            _with_reconnects(lambda: _connect_pair(src, dst), say, "connecting", retry_delays)
            logged_in.set()
            folder_plan, refused, pending = _plan_pass(plan, src, dst, state, say)
            result.folders.extend(refused.values())
            work: queue.Queue[FolderMapping] = queue.Queue()
            for mapping in _largest_first(pending, src, state):
                work.put(mapping)
            say(f"{phase} pass over {work.qsize()} folders")
            lanes = max(1, min(plan.copy.parallel_folders, work.qsize()))
            lane = Lane(plan, state, result, say, retry_delays, folder_plan)
            _run_lanes(lane, (src, dst), ahead[: lanes - 1], work)
            result.verify_seconds = time.monotonic() - lane.checks_started
            result.notes += labels.owner_notes(folder_plan, result)
        finally:
            for pair in ahead:
                pair.cancel()  # unless it has started
            logged_in.set()
            _close_all([src, dst, *(m for pair in ahead for m in pair.close_later())])
    order = {folder_name(m.source.path): i for i, m in enumerate(folder_plan.mappings)}
    result.folders.sort(key=lambda f: order.get(f.source, 0))
    result.seconds = time.monotonic() - started
    return result


def _largest_first(
    mappings: list[FolderMapping], src: Mailbox, state: AccountState
) -> list[FolderMapping]:
    """The folders, biggest first, so that the lanes finish together instead of one lane
    copying the last big folder alone. Sizes in bytes when the source told them with the
    folders' state (IMAP: STATUS=SIZE), else message counts from the state when earlier passes
    recorded any, else from the source's cheap message count; the plan's order when neither
    is known."""
    if len(mappings) < 2:
        return mappings
    sizes: dict[tuple[str, ...], int | None] = {
        m.source.path: src.known_size(m.source.path) for m in mappings
    }
    if None in sizes.values():
        sizes = {m.source.path: state.count(m.source.path) for m in mappings}
    if not any(sizes.values()):
        try:
            sizes = {m.source.path: src.message_count(m.source.path) for m in mappings}
        except MailboxError as exc:
            if exc.retryable or isinstance(exc, AuthenticationFailed):
                raise
    return sorted(mappings, key=lambda m: -(sizes[m.source.path] or 0))


def _plan_pass(
    plan: Plan, src: Mailbox, dst: Mailbox, state: AccountState, say
) -> tuple[FolderPlan, dict[tuple[str, ...], FolderResult], list[FolderMapping]]:
    """Map the folders (both sides listed at once), create the missing destination folders,
    and read the state of every folder of the pass on both sides in one round trip each (so an
    unchanged folder costs no command of its own)."""
    listed = both(src.list_folders, dst.list_folders)
    folder_plan = plan_folders(plan, src, dst, state, listed)
    refused = _prepare_destination(folder_plan, dst, say, listed[1])
    pending = [m for m in folder_plan.mappings
               if m.source.selectable and m.source.path not in refused]  # fmt: skip
    try:
        both(lambda: src.read_states([m.source.path for m in pending]),
             lambda: dst.read_states([m.destination for m in pending]))  # fmt: skip
    except MailboxError as exc:
        if exc.retryable or isinstance(exc, AuthenticationFailed):
            raise
        say(f"reading the folders' state at once failed ({exc}): asking folder by folder")
    return folder_plan, refused, pending


def _prepare_destination(
    folder_plan: FolderPlan, dst: Mailbox, say, listed: list[Folder] | None = None
) -> dict[tuple[str, ...], FolderResult]:
    """Create and subscribe the destination folders. A folder the destination refuses to create
    (a name it cannot hold) is reported with the server's reason, keyed by source path; the
    other folders are copied all the same."""
    existing = {f.path: f for f in (dst.list_folders() if listed is None else listed)}
    refused: dict[tuple[str, ...], FolderResult] = {}
    for mapping in folder_plan.mappings:
        target = existing.get(mapping.destination)
        created = target is not None
        try:
            if not created:
                say(f"creating folder {folder_name(mapping.destination)}")
                dst.create_folder(mapping.destination, mapping.create_special_use)
                created = True
            if mapping.source.subscribed and not (target and target.subscribed):
                dst.subscribe(mapping.destination)
        except MailboxError as exc:
            if exc.retryable or isinstance(exc, AuthenticationFailed):
                raise
            if created:  # only the subscription failed: the folder is there
                say(f"folder {folder_name(mapping.destination)} not subscribed: {exc}")
                continue
            folder = FolderResult(source=folder_name(mapping.source.path),
                                  destination=folder_name(mapping.destination), renamed=mapping.renamed)  # fmt: skip
            folder.error = str(exc)
            say(f"folder {folder.source} failed: {exc}")
            refused[mapping.source.path] = folder
    return refused


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


class _Connecting:
    """A lane's connection pair, logging in on a thread of its own as soon as ``start`` is set
    (unless cancelled before); :meth:`ready` waits for it."""

    def __init__(self, pair: tuple[Mailbox, Mailbox], say, retry_delays: Sequence[float],
                 start: threading.Event) -> None:  # fmt: skip
        self.pair = pair
        self._failed: list[BaseException] = []
        self._lock = threading.Lock()
        self._cancelled = self._started = False
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
            _with_reconnects(lambda: _connect_pair(*self.pair), say, "connecting", retry_delays)
        except BaseException as exc:  # raised by ready(), in the lane's thread
            self._failed.append(exc)

    def cancel(self) -> None:
        """Never log in, unless the login has started already."""
        with self._lock:
            self._cancelled = not self._started

    def ready(self) -> tuple[Mailbox, Mailbox]:
        self._thread.join()
        if self._failed:
            raise self._failed[0]
        return self.pair

    def close_later(self) -> tuple[Mailbox, Mailbox]:
        """The pair, once no login is under way any more (for :func:`_close_all`)."""
        self._thread.join()
        return self.pair


def _close_all(mailboxes: Sequence[Mailbox]) -> None:
    """Log out of every mailbox at once (each logout waits a round trip for the server)."""
    threads = [threading.Thread(target=m.close, daemon=True) for m in mailboxes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _run_lanes(lane_ctx: Lane, first_pair, ahead: list[_Connecting], work):
    """The folder passes on the first pair and the pairs connected ahead (one lane each); then,
    once every lane's copies are done (so that a destination dropping earlier mail while later
    mail arrives is caught), the checks of :mod:`mailmigrate.verify` on the same lanes.
    The pairs are closed by the caller."""
    errors: list[BaseException] = []

    def start_checks() -> None:
        lane_ctx.checks_started = time.monotonic()

    copied = threading.Barrier(len(ahead) + 1, action=start_checks)

    def lane(connecting: _Connecting | None) -> None:
        try:
            if connecting is None:
                src, dst = first_pair
            else:
                src, dst = connecting.ready()
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
                try:
                    expectation = lane_ctx.expected.get_nowait()
                except queue.Empty:
                    return
                _check_with_retries(lane_ctx, src, dst, expectation)
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


def _connect_pair(src: Mailbox, dst: Mailbox) -> None:
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


def _with_reconnects(action, say, what: str, delays: Sequence[float], reconnect=None):
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


def _check_with_retries(lane: Lane, src, dst, expectation: Expectation) -> None:
    def attempt(check, what):
        return _with_reconnects(check, lane.say, what, lane.retry_delays, _reconnect(src, dst))

    settle(src, dst, expectation, lane.state, lane.say, attempt)


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
        return _with_reconnects(attempt, say, what, lane.retry_delays, _reconnect(src, dst))
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
