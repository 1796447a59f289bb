"""One pass over one folder pair (:class:`FolderPass`): work out what the destination lacks,
copy it through :class:`~mailmigrate.pipeline.CopyPipeline`, and sync flags (and, when the plan
says so, deletions). Run by the lanes of :func:`mailmigrate.sync.copy_account`.

The folder's sync state is used only when both folders are the ones it was written for (their
:meth:`~mailmigrate.mailbox.base.Mailbox.folder_marker` and the destination path are unchanged);
otherwise it is discarded and the folder is compared by identity. Every pass leaves an
:class:`~mailmigrate.verify.Expectation` of what it selected, checked after the account's pass.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection

from mailmigrate.folders import FolderMapping, folder_name
from mailmigrate.identity import size_of
from mailmigrate.mailbox.base import Listing, Mailbox, MessageInfo, Ref
from mailmigrate.pipeline import CopyPipeline
from mailmigrate.plan import Plan
from mailmigrate.results import AccountResult, FolderResult, MessageFailure, human_bytes
from mailmigrate.state import AccountState, Entry, FolderState
from mailmigrate.verify import Expectation


class _Known(Collection):
    """The state's entries of one folder, read from the state on first use."""

    def __init__(self, state: AccountState, source: tuple[str, ...]) -> None:
        self._state, self._source = state, source
        self._entries: dict[Ref, Entry] | None = None

    @property
    def entries(self) -> dict[Ref, Entry]:
        if self._entries is None:
            self._entries = self._state.entries(self._source)
        return self._entries

    def __contains__(self, ref: object) -> bool:
        return ref in self.entries

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


class FolderPass:
    """One pass over one folder pair: work out what is missing, copy it, sync flags."""

    def __init__(self, plan: Plan, src: Mailbox, dst: Mailbox, mapping: FolderMapping,
                 state: AccountState, account_result: AccountResult, say) -> None:  # fmt: skip
        self.plan, self.src, self.dst, self.state, self.say = plan, src, dst, state, say
        self.source, self.destination = mapping.source.path, mapping.destination
        self.account_result = account_result
        self.result = FolderResult(
            source=folder_name(self.source),
            destination=folder_name(self.destination),
            renamed=mapping.renamed,
        )
        self.expected = Expectation(self.source, self.destination, self.result)

    def run(self) -> FolderResult:
        saved = self._trusted_state()
        known = _Known(self.state, self.source)
        changes = None
        if saved and saved.token:
            changes = self.src.changes(self.source, saved.token, known)
        if changes is None:
            todo, token = self._full_compare(known.entries)
        elif changes.empty:  # the usual delta folder: nothing happened, no entry is read
            todo, token = [], changes.token
            self.result.source_messages = self.state.count(self.source)
        else:
            self.expected.since = saved.mark
            todo, token = self._apply_changes(changes, known.entries, saved.mark), changes.token
        if todo:
            self.say(
                f"{self.result.source}: copying {len(todo)} messages "
                f"({human_bytes(sum(i.size for i in todo))}) to {self.result.destination}"
            )
            pipeline = CopyPipeline(self.src, self.dst, self.source, self.destination,
                                    self.plan.copy, self.state, self.result,
                                    self.account_result.failures, self.say)  # fmt: skip
            pipeline.run(todo)
            self._expect_copied(todo)
        if self.result.failed == 0:  # the state moves on once the check has found it all
            self.expected.finish = (token, self.dst.append_mark(self.destination))
        self.result.destination_messages = self.state.count(self.source)
        return self.result

    def _full_compare(self, known: dict[Ref, Entry]) -> tuple[list[MessageInfo], str | None]:
        """Match both folders by identity (multisets); what the destination lacks is copied."""
        self.result.full_compare = True
        on_destination = self.dst.listing_since(self.destination, None)
        # Into an empty folder nothing can match: identities can wait for the fetched bytes.
        listing = self._source_listing(with_identities=bool(on_destination))
        self._count_source(listing.messages)
        pool: dict[str, list[MessageInfo]] = defaultdict(list)
        for info in on_destination:
            pool[info.identity].append(info)
        todo, matched = [], []
        for info in listing.messages:
            candidates = pool.get(info.identity)
            if candidates:
                twin = candidates.pop(0)
                matched.append((info, twin))
            else:
                todo.append(info)
        self.state.reset_folder(self.source)
        entries = []
        for info, twin in matched:
            previous = known.get(info.ref)
            base = previous.flags if previous and previous.identity == info.identity else None
            self._sync_flags(info.ref, info.identity, twin.ref, base, info.flags, twin.flags)
            entries.append((info.ref, Entry(twin.ref, info.identity, info.flags)))
        self.state.record(self.source, entries)
        self.result.skipped = len(matched)
        self.expected.identities.update(info.identity for info, _ in matched)
        return todo, listing.token

    def _source_listing(self, with_identities: bool) -> Listing:
        """The source messages this pass copies: the whole folder (the archive pass of a
        label-based source selects; see :mod:`mailmigrate.labels`). A listing without a token
        makes the next pass compare in full again."""
        if with_identities:
            return self.src.listing(self.source)
        return self.src.listing_without_identities(self.source)

    def _apply_changes(
        self, changes, known: dict[Ref, Entry], mark: str | None
    ) -> list[MessageInfo]:
        """Apply source-side flag changes and removals; return new messages still to copy."""
        self.result.source_messages = len(known) + len(changes.new) - len(changes.removed)
        self.result.source_bytes = sum(i.size for i in changes.new)
        updated = []
        for ref, flags in changes.flags.items():
            entry = known.get(ref)
            if entry is None or entry.flags == flags:
                continue
            self._sync_flags(ref, entry.identity, entry.dest_ref, entry.flags, flags, None)
            updated.append((ref, Entry(entry.dest_ref, entry.identity, flags)))
        self.state.record(self.source, updated)
        if changes.removed:
            gone = [known[r].dest_ref for r in changes.removed if r in known and known[r].dest_ref]
            if self.plan.copy.propagate_deletions and gone:
                self.dst.delete(self.destination, gone)
                self.result.deleted = len(gone)
            self.state.forget(self.source, changes.removed)
        candidates = [i for i in changes.new if i.ref not in known]
        # Copied by an earlier try of this pass whose check never ran: checked with these.
        self.expected.identities.update(
            known[i.ref].identity for i in changes.new if i.ref in known
        )
        if not candidates:
            return []
        # Messages appended by an interrupted pass but never recorded sit after the mark.
        claimed = {e.dest_ref for e in known.values() if e.dest_ref is not None}
        pool: dict[str, list[MessageInfo]] = defaultdict(list)
        for info in self.dst.listing_since(self.destination, mark):
            if info.ref not in claimed:
                pool[info.identity].append(info)
        todo, entries = [], []
        for info in candidates:
            if pool.get(info.identity):
                twin = pool[info.identity].pop(0)
                entries.append((info.ref, Entry(twin.ref, info.identity, info.flags)))
                self.expected.identities[info.identity] += 1
            else:
                todo.append(info)
        self.state.record(self.source, entries)
        self.result.skipped = len(entries)
        return todo

    def _trusted_state(self) -> FolderState | None:
        """The folder's saved state when both folders are still the ones it describes, else
        ``None`` (the state is discarded). Records the current markers for this pass."""
        markers = (self.src.folder_marker(self.source), self.dst.folder_marker(self.destination))
        saved = self.state.folder(self.source)
        if saved is not None:
            why = None
            if saved.destination != self.destination:
                why = f"its destination was {folder_name(saved.destination)}"
            elif saved.markers[0] != markers[0]:
                why = f"the source folder changed identity ({saved.markers[0]} -> {markers[0]})"
            elif saved.markers[1] != markers[1]:
                why = (f"the destination folder {self.result.destination} is not the one the "
                       f"state knows ({saved.markers[1]} -> {markers[1]})")  # fmt: skip
            if why:
                self.say(f"{self.result.source}: {why}: its sync state is discarded, both "
                         "sides are compared by identity")  # fmt: skip
                self.state.reset_folder(self.source)
                saved = None
        self.state.begin_folder(self.source, self.destination, markers)
        return saved

    def _expect_copied(self, todo: list[MessageInfo]) -> None:
        """Add the messages this pass copied (recorded in the state, with the identity of the
        bytes it read) to what the check after the pass expects. A selected message neither
        copied nor refused is left for the check to ask the source about."""
        refused = {f.ref for f in self.account_result.failures if f.folder == self.result.source}
        recorded = self.state.entries(self.source, [info.ref for info in todo])
        for info in todo:
            entry = recorded.get(info.ref)
            if entry is not None:
                self.expected.identities[entry.identity] += 1
            elif str(info.ref) not in refused:
                self.expected.unaccounted.append(info.ref)

    def _sync_flags(self, ref, identity: str, dest_ref, base, now: frozenset[str],
                    dest_flags) -> None:  # fmt: skip
        """Carry the source message ``ref``'s flag change (``base`` -> ``now``) to its copy,
        leaving flags the destination user changed alone (without a base: add what is
        missing). Flags the destination does not store are reported for the message, as in a
        copy ("copied, not identical")."""
        if dest_ref is None:
            return
        if base is None:
            add, remove = now - (dest_flags or frozenset()), frozenset()
        else:
            add, remove = now - base, base - now
        if add or remove:
            note = self.dst.set_flags(self.destination, dest_ref, add, remove)
            self.result.flags_updated += 1
            if note:
                ref = str(ref)
                self.result.notices[:] = [n for n in self.result.notices if n.ref != ref]
                self.result.notices.append(MessageFailure(self.result.source, ref,
                                                          size_of(identity), note,
                                                          "copied, not identical"))  # fmt: skip

    def _count_source(self, messages: list[MessageInfo]) -> None:
        self.result.source_messages = len(messages)
        self.result.source_bytes = sum(i.size for i in messages)
