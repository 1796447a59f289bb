"""Label-based sources (Gmail, Google Workspace): one copy per real folder, not one per label view.

Gmail shows labels as IMAP folders: ``\\All`` ("All Mail") holds every message except Spam and
Trash, each label is a folder holding the same messages again, and ``\\Flagged`` (Starred),
``\\Important`` and ``Chats`` are views. Copied folder by folder, every message would land once
per view on top of once per label.

Invariant (the default mapping, plan ``folders: {labels: archive}``): the views are never copied;
the real folders (INBOX, labels, Sent, Drafts, Spam, Trash) are copied as on any server; and a
message of ``\\All`` is selected for the destination's archive folder exactly when no copied
folder holds it (the archived messages), so every message lands once per real folder holding it
and an archived one lands once. "Holds" is decided

- by the message's ``X-GM-LABELS`` (one ``X-GM-MSGID`` per message) where the server offers
  ``X-GM-EXT-1``: a label names a copied folder, or it does not;
- else by identity (:mod:`mailmigrate.identity`: Message-ID and size, or a header hash), counted
  as multisets: as many copies of an identity stay out of the archive as the copied folder that
  holds most of them has (Spam and Trash are not counted: Gmail keeps their messages out of
  ``\\All``).

The selection is made again on every pass in which anything deciding it changed (a message
archived or labelled since lands where the mapping puts it now; its earlier copy is removed only when the plan propagates deletions, as for
any message moved between folders). :func:`source_listing` is the one place that says which
source messages a mapping copies, for the pass, the comparison and the verification alike.
Plan ``folders: {labels: as_folders}`` copies every folder as it is.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from mailmigrate.folder_pass import FolderPass
from mailmigrate.folders import INBOX_PATH, FolderMapping, FolderPlan, Path, folder_name
from mailmigrate.mailbox.base import Folder, FolderStats, Listing, Mailbox, MessageInfo, Ref
from mailmigrate.results import AccountResult, FolderResult
from mailmigrate.state import Entry

VIEW_USES = ("\\All", "\\Flagged", "\\Important")
VIEW_NAMES = ("Chats",)  # Gmail's [Gmail]/Chats carries no special-use attribute
NOT_IN_ALL = ("\\Trash", "\\Junk")  # Gmail keeps Spam and Trash out of All Mail
# Gmail's system labels -> the special use of the folder that shows them.
SYSTEM_LABELS = {"\\Inbox": None, "\\Sent": "\\Sent", "\\Draft": "\\Drafts",
                 "\\Trash": "\\Trash", "\\Spam": "\\Junk"}  # fmt: skip


@dataclass(frozen=True)
class LabelLayout:
    """A label-based source as its folder list and capabilities show it.

    :param all_folder: the ``\\All`` folder, ``None`` when Gmail's settings hide it from IMAP.
    :param views: folders that show other folders' messages again (``\\All`` included).
    :param by_labels: the server answers ``X-GM-LABELS`` and ``X-GM-MSGID``.
    :param mode: the plan's ``folders.labels``: ``archive`` (default) or ``as_folders``.
    """

    all_folder: Folder | None
    views: tuple[Folder, ...]
    by_labels: bool
    mode: str = "archive"

    @property
    def maps_labels(self) -> bool:
        """Whether the label mapping applies (``as_folders`` copies every folder as it is)."""
        return self.mode == "archive"

    def describe(self) -> str:
        """One line for ``mailmigrate test``: what kind of source, and how it is mapped."""
        kind = "Gmail, X-GM-EXT-1" if self.by_labels else "an \\All folder, as on Gmail"
        if not self.maps_labels:
            return (
                f"label-based source ({kind}); plan folders.labels: as_folders copies every "
                "folder as it is, views included"
            )
        how = "X-GM-LABELS" if self.by_labels else "folder membership (Message-ID and size)"
        return f"label-based source ({kind}): views skipped, archived messages found by {how}"


def detect(src: Mailbox, folders: list[Folder], mode: str = "archive") -> LabelLayout | None:
    """The source's label layout, ``None`` for a folder-based source."""
    by_labels = src.labels_offered()
    all_folder = next((f for f in folders if f.special_use == "\\All" and f.selectable), None)
    if not by_labels and all_folder is None:
        return None
    gmail_roots = {f.path[:-1] for f in folders if f.special_use in VIEW_USES and len(f.path) > 1}
    views = tuple(
        f
        for f in folders
        if f.special_use in VIEW_USES or (f.path[:-1] in gmail_roots and f.path[-1] in VIEW_NAMES)
    )
    return LabelLayout(all_folder, views, by_labels, mode)


def mapping_options(layout: LabelLayout | None) -> dict:
    """Keyword arguments of :func:`mailmigrate.folders.map_folders` for the layout."""
    if layout is None or not layout.maps_labels:
        return {}
    archive = layout.all_folder.path if layout.all_folder else None
    roots = {f.path[:-1] for f in layout.views if len(f.path) > 1}
    return {
        "views": [f.path for f in layout.views if f.path != archive],
        "archive_source": archive,
        "label_root": roots.pop() if len(roots) == 1 else None,
    }


def copied_folders(folder_plan: FolderPlan) -> list[FolderMapping]:
    """The mappings whose messages count as held (selectable, not the archive source)."""
    return [
        m
        for m in folder_plan.mappings
        if m.source.selectable and m.source.path != folder_plan.archive_source
    ]


@dataclass
class ArchiveSelection:
    """What the archive mapping copies: the messages of ``\\All`` that no copied folder holds.

    :param listing: the selected messages (the token is always ``None``: the selection is made
        again on every pass, never from a delta of ``\\All`` alone).
    :param total: messages in ``\\All``; :param held: of those, held by a copied folder.
    :param gmail_ids: ``X-GM-MSGID`` of each selected message (label path only).
    :param token: ``\\All``'s sync token, taken before its messages were read.
    """

    listing: Listing
    total: int
    held: int
    by_labels: bool
    gmail_ids: dict[Ref, int] = field(default_factory=dict)
    token: str | None = None


class _LabelFolders:
    """Which labels name a copied folder (labels are few: each is resolved once)."""

    def __init__(self, copied: list[FolderMapping]) -> None:
        self.folders = {m.source.path: m.source for m in copied}
        self.folded = {tuple(part.casefold() for part in p): p for p in self.folders}
        self.known: dict[str, bool] = {}

    def held(self, label: str) -> bool:
        """Whether a copied folder shows ``label`` (views and labels hidden from IMAP: no)."""
        if label not in self.known:
            self.known[label] = self._path(label) is not None
        return self.known[label]

    def _path(self, label: str) -> Path | None:
        if label in SYSTEM_LABELS:
            use = SYSTEM_LABELS[label]
            if use is None:
                return INBOX_PATH if INBOX_PATH in self.folders else None
            return next((p for p, f in self.folders.items() if f.special_use == use), None)
        path = tuple(label.split("/"))  # Gmail writes nested labels with "/"
        if path in self.folders:
            return path
        return self.folded.get(tuple(part.casefold() for part in path))


def select_archived(
    src: Mailbox, folder_plan: FolderPlan, *, identities: bool = True
) -> ArchiveSelection:
    """The messages of the plan's archive source (``\\All``) that no copied folder holds.

    :param identities: ``False`` lets the label path skip reading identities (a copy into an
        empty archive folder matches nothing); the folder path needs them all the same.
    """
    layout, all_path = folder_plan.label_layout, folder_plan.archive_source
    assert layout is not None and all_path is not None
    copied = copied_folders(folder_plan)
    if layout.by_labels:
        listing = src.listing(all_path) if identities else src.listing_without_identities(all_path)
        selection = _by_labels(listing, src.message_labels(all_path), _LabelFolders(copied))
    else:
        listing = src.listing(all_path)
        selection = _by_identity(src, listing, copied)
    selection.token = listing.token
    return selection


def _by_labels(listing: Listing, labels: dict, shown: _LabelFolders) -> ArchiveSelection:
    """Selected: the messages none of whose labels names a copied folder."""
    selected, ids = [], {}
    for info in listing.messages:
        if info.ref not in labels:
            continue  # expunged between the two reads
        gmail_id, names = labels[info.ref]
        if not any(shown.held(name) for name in names):
            selected.append(info)
            ids[info.ref] = gmail_id
    total = len(listing.messages)
    return ArchiveSelection(Listing(selected, None), total, total - len(selected), True, ids)


def _by_identity(src: Mailbox, listing: Listing, copied: list[FolderMapping]) -> ArchiveSelection:
    """Selected: per identity, the copies beyond what the copied folder holding most has."""
    most: Counter[str] = Counter()
    for mapping in copied:
        if mapping.source.special_use in NOT_IN_ALL:
            continue
        counts = Counter(i.identity for i in src.listing(mapping.source.path).messages)
        for identity, count in counts.items():
            most[identity] = max(most[identity], count)
    selected: list[MessageInfo] = []
    for info in listing.messages:
        if most[info.identity] > 0:
            most[info.identity] -= 1
        else:
            selected.append(info)
    total = len(listing.messages)
    return ArchiveSelection(Listing(selected, None), total, total - len(selected), False)


def source_listing(src: Mailbox, folder_plan: FolderPlan, mapping: FolderMapping) -> Listing:
    """The source messages ``mapping`` copies: the whole folder, or the archive selection."""
    if mapping.source.path == folder_plan.archive_source:
        return select_archived(src, folder_plan).listing
    return src.listing(mapping.source.path)


def preflight(
    src: Mailbox, folder_plan: FolderPlan, propagate_deletions: bool
) -> tuple[dict, FolderStats | None]:
    """What ``mailmigrate test`` shows of a label-based source: the plan it follows with counts
    (a ``lines`` list for people, ``warnings``), and the archive mapping's messages as stats."""
    layout = folder_plan.label_layout
    assert layout is not None
    summary: dict = {"by_labels": layout.by_labels, "mode": layout.mode, "views": [],
                     "archive": None, "warnings": []}  # fmt: skip
    lines = [layout.describe()]
    if not layout.maps_labels:
        summary["lines"] = lines
        return summary, None
    for view in folder_plan.views:
        count = src.message_count(view.path) if view.selectable else 0
        summary["views"].append({"folder": folder_name(view.path), "messages": count})
        lines.append(f"  {folder_name(view.path)}: {count} messages, a view: not copied")
    stats = None
    archive = next(
        (m for m in folder_plan.mappings if m.source.path == folder_plan.archive_source), None
    )
    if archive is None:
        summary["warnings"].append(
            "the source hides All Mail from IMAP (Gmail settings, Labels, 'Show in IMAP'): "
            "archived messages, which are in no label, will not be copied"
        )
    else:
        selection = select_archived(src, folder_plan)
        messages = selection.listing.messages
        sizes = [i.size for i in messages]
        stats = FolderStats(len(sizes), sum(sizes), max(sizes, default=0))
        summary["archive"] = {
            "source": folder_name(archive.source.path),
            "destination": folder_name(archive.destination),
            "all": selection.total, "held": selection.held, "archived": len(messages),
        }  # fmt: skip
        lines.append(
            f"  {folder_name(archive.source.path)}: {selection.total} messages, "
            f"{selection.held} also in copied folders, {len(messages)} archived -> "
            f"{folder_name(archive.destination)} (once each)"
        )
    lines.append("  starred messages keep their \\Flagged flag in every folder")
    if not propagate_deletions:
        summary["warnings"].append(
            "copy.propagate_deletions is off: a message archived or labelled between two passes "
            "is copied to its new place and stays in the old one on the destination (set it to "
            "true to move it, as Gmail did)"
        )
    summary["lines"] = lines
    return summary, stats


class ArchivePass(FolderPass):
    """The folder pass of the archive mapping: copies :func:`select_archived`'s messages only.

    Every pass compares the whole selection, unless nothing that decides it changed since the
    last checked pass: the sync token of the archive mapping is a fingerprint (``\\All``'s own
    token, each copied folder's append mark and count) and the append mark of the destination
    folder; when both are as stored, the pass reads nothing more. :attr:`selection` is what the
    run selected (``None`` when it had nothing to do), for reports and verification.
    """

    def __init__(self, *args, folder_plan: FolderPlan, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.folder_plan = folder_plan
        self.selection: ArchiveSelection | None = None
        self._marks: dict[str, str] = {}

    def run(self) -> FolderResult:
        self._marks = {
            folder_name(m.source.path): (
                f"{self.src.append_mark(m.source.path)}/{self.src.message_count(m.source.path)}"
            )
            for m in copied_folders(self.folder_plan)
        }
        saved = self.state.folder(self.source)
        if saved is not None and saved.token is not None:
            if saved.destination == self.destination and self._unchanged(saved.token, saved.mark):
                self.result.source_messages = self.state.count(self.source)
                self.result.destination_messages = self.result.source_messages
                self.expected.finish = (saved.token, saved.mark)
                return self.result
            self.state.finish(self.source, None, saved.mark)  # a fingerprint is no sync token
        return super().run()

    def _unchanged(self, token: str, mark: str | None) -> bool:
        try:
            then = json.loads(token)
        except ValueError:
            return False  # a token of another kind (All Mail copied as a folder before)
        if (
            not isinstance(then, dict)
            or then.get("folders") != self._marks
            or self.dst.append_mark(self.destination) != mark
        ):
            return False
        changes = self.src.changes(self.source, then["all"], ()) if then.get("all") else None
        return changes is not None and changes.empty

    def _source_listing(self, with_identities: bool) -> Listing:
        self.selection = select_archived(self.src, self.folder_plan, identities=with_identities)
        self.say(
            f"{self.result.source}: {self.selection.total} messages, {self.selection.held} in "
            f"copied folders, {len(self.selection.listing.messages)} archived -> "
            f"{folder_name(self.destination)}"
        )
        return self.selection.listing

    def _full_compare(self, known: dict[Ref, Entry]) -> tuple[list[MessageInfo], str | None]:
        """The folder pass's comparison of the selection; then, when the plan propagates
        deletions, the archive copies of messages no longer selected (labelled or deleted since)
        are removed, as any moved message's old copy is. Only copies this migration made (in the
        state) are ever removed."""
        todo, _ = super()._full_compare(known)
        assert self.selection is not None
        token = json.dumps({"all": self.selection.token, "folders": self._marks})
        if self.plan.copy.propagate_deletions:
            selected = {info.ref for info in self.selection.listing.messages}
            kept = {entry.dest_ref for entry in self.state.entries(self.source).values()}
            gone = [
                entry.dest_ref
                for ref, entry in known.items()
                if ref not in selected and entry.dest_ref is not None and entry.dest_ref not in kept
            ]
            if gone:
                self.dst.delete(self.destination, gone)
                self.result.deleted += len(gone)
        return todo, token


def owner_notes(folder_plan: FolderPlan, result: AccountResult) -> list[str]:
    """How a label-based source was mapped, in its owner's words (for the owner report)."""
    layout = folder_plan.label_layout
    if layout is None:
        return []
    if not layout.maps_labels:
        return [
            "Your old mailbox uses Gmail labels. As the migration plan asks, every label and "
            "every Gmail view (All Mail, Starred, Important) was copied as a folder of its own, "
            "so a message is in each of them."
        ]
    notes = [
        "Your old mailbox uses Gmail labels. Each label is now a folder with its messages; a "
        "message with several labels is in each of those folders."
    ]
    source = folder_name(folder_plan.archive_source) if folder_plan.archive_source else None
    archive = next((f for f in result.folders if f.source == source), None)
    if archive is not None:
        count = archive.source_messages
        plural = ("messages", "are") if count != 1 else ("message", "is")
        notes.append(
            f"Your {count:,} archived {plural[0]} (in All Mail, under no label) {plural[1]} in "
            f"{archive.destination}, once each."
        )
    elif layout.all_folder is None:
        notes.append(
            "All Mail is hidden from IMAP in your Gmail settings, so archived messages (under "
            "no label) were not copied."
        )
    notes.append(
        "Starred messages keep their star, shown as a flag. All Mail, Starred, Important and "
        "Chats are views in Gmail, not folders: they were not copied again, and Gmail's "
        "Important marks are not carried over."
    )
    return notes


def pass_for(folder_plan: FolderPlan | None, mapping: FolderMapping):
    """The pass class for a mapping: :class:`ArchivePass` for the archive source, else
    :class:`FolderPass` (both called like ``FolderPass``)."""
    if folder_plan is not None and mapping.source.path == folder_plan.archive_source:
        return lambda *args: ArchivePass(*args, folder_plan=folder_plan)
    return FolderPass
