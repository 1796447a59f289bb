"""The check after a copy pass: is every source message the pass selected on the destination?

Each folder pass leaves an :class:`Expectation`: the identities (as a multiset) of the source
messages it selected and found or put on the destination, and the destination mark they all sit
at or after. Once every folder of the account is done, :func:`settle` lists each destination
folder from that mark (the account's folder lanes share the checks; each lane lists its folders
together where the adapter can, :func:`listed_at_once`) with the listing the owner report uses
(sizes, Message-IDs, header hashes; no message body is read) and counts what is not there.
Checking after the whole account, not per folder, also catches a destination that drops earlier
folders' mail while later ones are appended (a "trash" plugin making room under quota, a
server-side rule).

Invariants: a folder's sync token and append mark move on only once its check found everything
(so a pass whose check never ran, or failed, is checked again by the next one); a folder with
missing messages fails the account and its sync state is discarded, so the next pass (a retry)
compares both sides by identity instead of trusting the state that claimed the messages were
there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from mailmigrate.errors import AuthenticationFailed, MailboxError
from mailmigrate.mailbox.base import Mailbox, MessageInfo, Ref
from mailmigrate.results import FolderResult
from mailmigrate.state import AccountState


@dataclass
class Expectation:
    """What one folder pass selected and left on the destination, to be checked afterwards.

    :param since: the destination mark every expected message sits at or after (``None``: the
        whole folder is listed).
    :param identities: identities of the selected messages found or put on the destination.
    :param unaccounted: selected messages neither copied nor refused: gone from the source
        meanwhile, or missing; the source is asked which.
    :param finish: the sync token and append mark to store once the check passes (``None``: the
        pass had failures and keeps the old ones).
    """

    source: tuple[str, ...]
    destination: tuple[str, ...]
    result: FolderResult
    since: str | None = None
    identities: Counter[str] = field(default_factory=Counter)
    unaccounted: list[Ref] = field(default_factory=list)
    finish: tuple[str | None, str | None] | None = None


def shortfall(expected: Counter[str], present: Iterable[MessageInfo]) -> int:
    """How many of the ``expected`` identities (a multiset) ``present`` lacks."""
    return sum((expected - Counter(info.identity for info in present)).values())


def listed_at_once(
    dst: Mailbox, expectations: Sequence[Expectation], attempt: Callable
) -> dict[tuple[str, ...], list[MessageInfo]]:
    """The destination listings of several folders' checks, asked together where the adapter
    can (:meth:`~mailmigrate.mailbox.base.Mailbox.listings_since`); a folder left out, or all
    of them when that failed, is listed by its own check."""
    wanted = [(e.destination, e.since) for e in expectations if e.identities]
    if len(wanted) < 2:
        return {}
    try:
        return attempt(lambda: dst.listings_since(wanted), "verifying folders")
    except AuthenticationFailed:
        raise
    except MailboxError as exc:
        if exc.retryable:
            raise
        return {}


def verify_folder(
    src: Mailbox, dst: Mailbox, expectation: Expectation, listed: list[MessageInfo] | None = None
) -> int:
    """The number of selected messages of one folder that the destination lacks (``listed``:
    the destination's listing since the expectation's mark, when read already)."""
    missing = 0
    if expectation.identities:
        if listed is None:
            listed = dst.listing_since(expectation.destination, expectation.since)
        missing = shortfall(expectation.identities, listed)
    if expectation.unaccounted:
        on_source = src.listing_without_identities(expectation.source).messages
        still = {info.ref for info in on_source}
        missing += sum(1 for ref in expectation.unaccounted if ref in still)
    return missing


def settle(
    src: Mailbox,
    dst: Mailbox,
    expectation: Expectation,
    state: AccountState,
    say: Callable[[str], None],
    attempt: Callable[[Callable[[], int], str], int],
    listed: list[MessageInfo] | None = None,
) -> None:
    """Check one folder's expectation: note missing messages in its result and discard the
    folder's state when any are missing, else let the folder's state move on.

    :param attempt: runs the check with the engine's reconnects (``attempt(check, what)``); a
        non-retryable error is recorded as the folder's error.
    :param listed: the destination's listing, when :func:`listed_at_once` read it.
    """
    result = expectation.result
    if not (expectation.identities or expectation.unaccounted):
        _finish(state, expectation)
        return
    try:
        missing = attempt(
            lambda: verify_folder(src, dst, expectation, listed),
            f"verifying folder {result.source}",
        )
    except AuthenticationFailed:
        raise
    except MailboxError as exc:
        if exc.retryable:
            raise
        result.error = f"the copy could not be verified: {exc}"
        state.reset_folder(expectation.source)
        say(f"folder {result.source}: {result.error}")
        return
    result.missing = missing
    if not missing:
        _finish(state, expectation)
        return
    state.reset_folder(expectation.source)
    say(
        f"folder {result.source}: {missing} of the messages this pass selected are "
        f"not on the destination ({result.destination}); its sync state is discarded "
        "so that the next pass compares both sides again"
    )


def _finish(state: AccountState, expectation: Expectation) -> None:
    if expectation.finish is not None:
        state.finish(expectation.source, *expectation.finish)
