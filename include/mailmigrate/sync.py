"""The copy engine: one pass (initial or delta) over one account, folder by folder.

Read top-down:

1. :func:`copy_account` opens both mailboxes (the other lanes' connections log in meanwhile),
   lists both sides at once, maps the folders (``folders.map_folders``), creates and subscribes
   the destination folders, reads every folder's state on both sides in one round trip each,
   then runs every folder through a :class:`~mailmigrate.folder_pass.FolderPass` on
   ``parallel_folders`` lanes (:mod:`mailmigrate.lanes`; a lane is one source and one
   destination connection). An unchanged folder costs no command of its own.
2. The :class:`~mailmigrate.folder_pass.FolderPass` decides what to copy. With a sync token from
   the previous pass it asks the source only for what changed (new messages, flag changes,
   removals). Without one (first pass, lost state, UIDVALIDITY changed) it compares both folders
   by message identity as multisets, so whatever is already on the destination is never copied
   twice.
3. :class:`~mailmigrate.pipeline.CopyPipeline` copies: a reader thread fetches growing batches
   ahead (bounded by bytes, the next FETCH sent before the previous answer is read) while the
   caller streams each message into its batch's APPEND as it arrives, several APPENDs under
   way at once; each batch is recorded in the state in one transaction once the destination
   confirmed it.
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

from mailmigrate import labels
from mailmigrate.connections import Endpoint
from mailmigrate.errors import AuthenticationFailed, MailboxError
from mailmigrate.folders import FolderMapping, FolderPlan, folder_name, map_folders
from mailmigrate.lanes import (
    Connecting,
    Lane,
    both,
    close_all,
    connect_pair,
    run_lanes,
    with_reconnects,
)
from mailmigrate.mailbox import open_mailbox
from mailmigrate.mailbox.base import Folder, Mailbox
from mailmigrate.plan import Account, Plan
from mailmigrate.results import AccountResult, FolderResult, PreflightResult, human_bytes
from mailmigrate.state import AccountState, default_state_dir, mailbox_identity

log = logging.getLogger("mailmigrate.sync")

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
            Connecting(open_pair(account, source, destination), say, retry_delays, logged_in)
            for _ in range(plan.copy.parallel_folders - 1)
        ]
        try:
            with_reconnects(lambda: connect_pair(src, dst), say, "connecting", retry_delays)
            logged_in.set()
            folder_plan, refused, pending = _plan_pass(plan, src, dst, state, say)
            result.folders.extend(refused.values())
            work: queue.Queue[FolderMapping] = queue.Queue()
            for mapping in _largest_first(pending, src, state):
                work.put(mapping)
            say(f"{phase} pass over {work.qsize()} folders")
            lanes = max(1, min(plan.copy.parallel_folders, work.qsize()))
            lane = Lane(plan, state, result, say, retry_delays, folder_plan)
            run_lanes(lane, (src, dst), ahead[: lanes - 1], work)
            result.verify_seconds = time.monotonic() - lane.checks_started
            result.notes += labels.owner_notes(folder_plan, result)
        finally:
            for pair in ahead:
                pair.cancel()  # unless it has started
            logged_in.set()
            close_all([src, dst, *(m for pair in ahead for m in pair.close_later())])
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
    wanted = []
    for mapping in folder_plan.mappings:
        target = existing.get(mapping.destination)
        subscribe = mapping.source.subscribed and not (target and target.subscribed)
        if target is None:
            say(f"creating folder {folder_name(mapping.destination)}")
        if target is None or subscribe:
            wanted.append((mapping.destination, mapping.create_special_use, target is None,
                           subscribe))  # fmt: skip
    failed = dst.prepare_folders(wanted)  # all at once where the protocol allows
    refused: dict[tuple[str, ...], FolderResult] = {}
    for mapping in folder_plan.mappings:
        step, exc = failed.get(mapping.destination, (None, None))
        if exc is None:
            continue
        if step == "subscribe":  # only the subscription failed: the folder is there
            say(f"folder {folder_name(mapping.destination)} not subscribed: {exc}")
            continue
        folder = FolderResult(source=folder_name(mapping.source.path),
                              destination=folder_name(mapping.destination), renamed=mapping.renamed)  # fmt: skip
        folder.error = str(exc)
        say(f"folder {folder.source} failed: {exc}")
        refused[mapping.source.path] = folder
    return refused
