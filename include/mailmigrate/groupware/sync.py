"""Copy one account's calendars, task lists and address books from one side to another (a DAV
server or Exchange, both seen through :mod:`~mailmigrate.groupware.side`):
:func:`preflight` (collections, counts, mapping) and :func:`copy_groupware` (one pass, initial
or delta). No Airflow here; the DAG layer calls these two.

A pass, per mapped collection:

1. lists the source: everything on an initial pass or without a usable sync token, else the
   changes since the token (RFC 6578 sync-collection); servers without it are listed in full
   and compared by ETag;
2. fetches the source items whose ETag differs from the state's (all of them without state);
3. matches them to destination items by UID (the state's destination href, else the UIDs found
   in the destination collection), compares canonical forms
   (:func:`~mailmigrate.groupware.content.canonical`) and writes only what differs: new items
   with ``If-None-Match: *``, changed ones with ``If-Match`` on the destination's ETag. An item
   changed on the destination since the copy (its ETag moved) is kept and reported, never
   reverted;
4. deletes on the destination what was deleted on the source only when ``propagate_deletions``
   is set (else counts it as kept);
5. stores the new sync token only after every item of the collection was handled.

Invariants: nothing is ever written twice (a re-run, with or without state, finds every item by
UID and equal); no write lets a scheduling server send mail (``Schedule-Reply: F`` always, and
``SCHEDULE-AGENT=CLIENT`` on organizer and attendees for servers announcing
``calendar-auto-schedule``; meetings are not written to a server that the probe of
:mod:`~mailmigrate.groupware.scheduling` finds sending mail despite it); an item's problem is reported with the collection and UID and costs
only that item; a collection's problem costs only that collection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from mailmigrate.errors import ContentError, GroupwareError
from mailmigrate.groupware.content import canonical, components_of, uid_of, without_scheduling
from mailmigrate.groupware.dav import CALENDAR, EXTENSION, Collection, resource_name
from mailmigrate.groupware.mapping import KIND_COMPONENTS, Mapped, map_collections
from mailmigrate.groupware.scheduling import SENDS, is_meeting, probe
from mailmigrate.groupware.side import GroupwareAccount, GroupwareEndpoint
from mailmigrate.groupware.state import GroupwareState, ItemState

log = logging.getLogger(__name__)

KINDS = ("calendars", "contacts", "tasks")
INITIAL, DELTA = "initial", "delta"
GONE = "-deleted-"  # state's source ETag of an item deleted on the source, kept on the destination


@dataclass
class ItemProblem:
    """One item that was not copied (or not deleted), in words an owner understands."""

    collection: str
    uid: str
    reason: str

    def __str__(self) -> str:
        return f"{self.collection}: item {self.uid}: {self.reason}"


@dataclass
class CollectionResult:
    """What one pass did for one source collection."""

    source: str
    destination: str
    kind: str
    components: tuple[str, ...] = ()
    created: bool = False
    renamed: bool = False
    source_items: int = 0
    destination_items: int = 0  # listed in the destination collection after the pass
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    kept_deleted: int = 0
    kept_changed: int = 0
    problems: list[ItemProblem] = field(default_factory=list)


@dataclass
class GroupwareResult:
    """One pass over one account: per collection counts, and every problem."""

    phase: str
    collections: list[CollectionResult] = field(default_factory=list)
    problems: list[ItemProblem] = field(default_factory=list)

    @property
    def all_problems(self) -> list[ItemProblem]:
        return self.problems + [p for c in self.collections for p in c.problems]

    def total(self, counter: str) -> int:
        return sum(getattr(c, counter) for c in self.collections)


@dataclass
class Preflight:
    """Both sides' collections with item counts, and the mapping a copy would use."""

    source: list[tuple[Collection, int]]
    destination: list[tuple[Collection, int]]
    mapping: list[Mapped]

    def lines(self) -> list[str]:
        out = [f"source {c.kind} {c.name!r}: {n} items" for c, n in self.source]
        out += [f"destination {c.kind} {c.name!r}: {n} items" for c, n in self.destination]
        return out + [m.describe() for m in self.mapping]


def _kinds(kinds) -> set[str]:
    selected = set(kinds)
    unknown = selected - set(KINDS)
    if unknown:
        raise ValueError(f"unknown groupware kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    return selected


def preflight(source: GroupwareEndpoint, destination: GroupwareEndpoint, kinds=KINDS) -> Preflight:
    """Log in on both sides, list collections with item counts and the mapping."""
    selected = _kinds(kinds)
    sides = []
    for endpoint in (source, destination):
        account = endpoint.open()
        try:
            collections = account.collections()
            sides.append([(c, len(account.listing(c).etags)) for c in collections])
        finally:
            account.close()
    mapping = map_collections([c for c, _ in sides[0]], [c for c, _ in sides[1]], selected)
    return Preflight(sides[0], sides[1], mapping)


def copy_groupware(source: GroupwareEndpoint, destination: GroupwareEndpoint, *, plan: str, state_dir: Path,
                   phase: str = INITIAL, kinds=KINDS,
                   propagate_deletions: bool = False) -> GroupwareResult:  # fmt: skip
    """One pass (``phase`` ``initial`` or ``delta``) for one account; see the module docstring.

    Raises :class:`~mailmigrate.errors.GroupwareError` only when a side cannot be reached or
    listed at all; everything narrower ends up in the result's problems."""
    if phase not in (INITIAL, DELTA):
        raise ValueError(f"phase must be {INITIAL!r} or {DELTA!r}, not {phase!r}")
    selected = _kinds(kinds)
    result = GroupwareResult(phase)
    state = GroupwareState(state_dir, plan, source.identity(), destination.identity())
    src, dst = source.open(), destination.open()
    try:
        dst.discover()
        sources, destinations = src.collections(), dst.collections()
        verdicts: dict[str, str] = {}
        known = {}
        for collection in sources:
            earlier = state.collection(collection.href)
            if earlier:
                known[collection.href] = earlier[0]
        for mapped in map_collections(sources, destinations, selected, known):
            outcome = CollectionResult(mapped.source.name, mapped.name, mapped.source.kind,
                                       mapped.source.components,
                                       renamed=mapped.renamed)  # fmt: skip
            result.collections.append(outcome)
            try:
                _CollectionPass(src, dst, state, mapped, outcome, selected,
                                propagate_deletions, verdicts).run()  # fmt: skip
            except GroupwareError as exc:
                outcome.problems.append(ItemProblem(mapped.source.name, "-", str(exc)))
    finally:
        src.close()
        dst.close()
        state.close()
    for outcome in result.collections:
        log.info("%s %r -> %r: %d items, %d added, %d updated, %d unchanged, %d deleted, "
                 "%d problems", outcome.kind, outcome.source, outcome.destination,
                 outcome.source_items, outcome.added, outcome.updated, outcome.unchanged,
                 outcome.deleted, len(outcome.problems))  # fmt: skip
    return result


class _CollectionPass:
    def __init__(self, src: GroupwareAccount, dst: GroupwareAccount, state: GroupwareState, mapped: Mapped,
                 outcome: CollectionResult, kinds: set[str], propagate_deletions: bool,
                 verdicts: dict[str, str]) -> None:  # fmt: skip
        self.src, self.dst, self.state, self.mapped = src, dst, state, mapped
        self.outcome, self.propagate_deletions = outcome, propagate_deletions
        self.components = set().union(*(KIND_COMPONENTS[k] for k in kinds))
        self.written: list[str] = []
        self.verdicts = verdicts

    def problem(self, uid: str, reason: str, href: str | None = None) -> None:
        """Report an item; with ``href``, remember it as failed so the next pass, a delta
        included, tries it again."""
        self.outcome.problems.append(ItemProblem(self.mapped.source.name, uid, reason))
        if href is not None:
            self.state.set_item(href, ItemState(self.mapped.source.href, uid, None, "", None))

    def run(self) -> None:
        source = self.mapped.source
        destination = self.mapped.destination
        if destination is None:
            home = self.dst.home(source.kind)
            if home is None:
                raise GroupwareError(f"the destination offers no {source.kind} home")
            created = Collection(source.kind, "", self.mapped.name, source.color,
                                 source.components)  # fmt: skip
            destination = self.dst.create(created, f"{home.rstrip('/')}/{self.mapped.path_name}/")
            self.outcome.created = True
        earlier = self.state.collection(source.href)
        token = earlier[1] if earlier and earlier[0] == destination.href else None
        same = earlier is not None and earlier[0] == destination.href
        copied = self.state.items(source.href) if same else {}
        listing = self.src.listing(source, token)
        dest_listing = self.dst.listing(destination)
        dest_etags = dest_listing.etags
        if listing.complete:
            removed = set(copied) - set(listing.etags)
        else:
            gone = {h for h, item in copied.items() if item.source_etag == GONE}
            removed = (listing.removed | gone) - set(listing.etags) & set(copied)
        # new or changed on the source, and what an earlier pass failed to copy; an item the
        # owner deleted on the destination stays deleted until it changes on the source
        changed = [
            h
            for h, etag in listing.etags.items()
            if h not in copied or copied[h].source_etag != etag or etag is None
        ]
        changed += [h for h, item in copied.items()
                    if not item.destination and h not in listing.etags and h not in removed]  # fmt: skip
        fetched = self.src.fetch(source, changed) if changed else {}
        by_uid = self._destination_uids(destination, dest_etags, copied, bool(fetched))
        for href in changed:
            if href not in fetched:
                continue  # deleted on the source in between: the next pass sees it
            content, etag = fetched[href]
            if isinstance(content, ContentError):  # a side that could not render the item
                self.problem(href.rsplit("/", 1)[-1], f"not copied: {content}", href)
                continue
            self._item(destination, href, content, etag or listing.etags.get(href),
                       copied.get(href), dest_etags, by_uid)  # fmt: skip
        listed = dest_etags
        if self.written:
            listed = self.dst.listing(destination).etags
            for href, item in self.state.items(source.href).items():
                if href in self.written:
                    item.destination_etag = listed.get(item.destination)
                    self.state.set_item(href, item)
        deleted = self.outcome.deleted
        for href in removed:
            self._removed(href, copied[href], dest_etags)
        self.outcome.destination_items = len(listed) - (self.outcome.deleted - deleted)
        self.outcome.source_items = (len(listing.etags) if listing.complete
                                     else len(copied) + sum(h not in copied for h in changed)
                                     - len(removed))  # fmt: skip
        self.state.set_collection(source.href, destination.href, listing.token)

    def _destination_uids(self, destination: Collection, dest_etags: dict, copied: dict,
                          needed: bool) -> dict[str, tuple[str, str, str | None]]:  # fmt: skip
        """UID -> (href, content, ETag) of destination items the state does not know."""
        known = {item.destination for item in copied.values()}
        unknown = [h for h in dest_etags if h not in known]
        if not needed or not unknown:
            return {}
        found = {}
        for href, (content, etag) in self.dst.fetch(destination, unknown).items():
            if isinstance(content, ContentError):
                continue
            try:
                uid = uid_of(content)
            except ContentError:
                continue
            if uid:
                found[uid] = (href, content, etag)
        return found

    def _item(self, destination: Collection, href: str, content: str, etag: str | None,
              earlier: ItemState | None, dest_etags: dict, by_uid: dict) -> None:  # fmt: skip
        try:
            uid = uid_of(content)
            comps = components_of(content)
        except ContentError as exc:
            self.problem(href.rsplit("/", 1)[-1], f"not copied: {exc}", href)
            return
        if not uid:
            self.problem(href.rsplit("/", 1)[-1], "not copied: the item has no UID", href)
            return
        if not comps & self.components:
            return  # a task in a mixed calendar when only calendars move, or the reverse
        kind = self.mapped.source.kind
        target, target_etag, current = None, None, None
        if earlier is not None and earlier.destination in dest_etags:
            target, target_etag = earlier.destination, dest_etags[earlier.destination]
            if earlier.destination_etag and target_etag != earlier.destination_etag:
                self.outcome.kept_changed += 1
                self.problem(uid, "changed on both sides since the last copy: the destination's "
                                  "version was kept")  # fmt: skip
                return
        elif uid in by_uid:
            target, current, target_etag = by_uid[uid]
        if target is not None and current is None:
            current = self.dst.fetch(destination, [target]).get(target, (None, None))[0]
        try:
            if current is not None and canonical(current) == canonical(content):
                self.outcome.unchanged += 1
                self._record(href, uid, etag, destination, target, target_etag)
                return
        except ContentError:
            pass  # an unparseable destination copy is replaced
        meeting = kind == CALENDAR and self.dst.schedules and is_meeting(content)
        if meeting and self._scheduling(destination) == SENDS:
            self.problem(uid, "not copied: the destination server would email its attendees "
                              "(it ignores SCHEDULE-AGENT=CLIENT); turn off its outbound "
                              "invitations and run the copy again", href)  # fmt: skip
            return
        body = without_scheduling(content) if kind == CALENDAR and self.dst.schedules else content
        if target is None:
            target = f"{destination.href}{resource_name(uid)}{EXTENSION[kind]}"
        try:
            self.dst.put(kind, target, body, target_etag if current is not None else None)
        except GroupwareError as exc:
            self.problem(uid, f"not copied: {exc}", href)
            return
        # a server may store something else than what was PUT (Xandikos adds SCHEDULE-STATUS)
        # and still answer an ETag: the ETag kept is the one listed after the pass
        self.written.append(href)
        if current is None:
            self.outcome.added += 1
        else:
            self.outcome.updated += 1
        self._record(href, uid, etag, destination, target, None)

    def _scheduling(self, destination: Collection) -> str:
        """The destination server's verdict from :func:`probe`, once per pass."""
        if "verdict" not in self.verdicts:
            self.verdicts["verdict"] = probe(self.dst, destination)
            log.info("destination %s: scheduling probe: %s", self.dst.endpoint.user,
                     self.verdicts["verdict"])  # fmt: skip
        return self.verdicts["verdict"]

    def _record(self, href, uid, etag, destination, target, target_etag) -> None:
        self.state.set_item(href, ItemState(self.mapped.source.href, uid, etag, target,
                                            target_etag))  # fmt: skip

    def _removed(self, href: str, earlier: ItemState, dest_etags: dict) -> None:
        if not earlier.destination:  # it had failed to copy: nothing to keep or delete
            self.state.forget_item(href)
            return
        if not self.propagate_deletions:
            self.outcome.kept_deleted += 1
            earlier.source_etag = GONE  # remembered for a later pass that propagates deletions
            self.state.set_item(href, earlier)
            return
        if earlier.destination in dest_etags:
            try:
                self.dst.delete(earlier.destination, dest_etags[earlier.destination])
            except GroupwareError as exc:
                self.problem(earlier.uid, f"deleted on the source, not on the destination: {exc}")
                return
            self.outcome.deleted += 1
        self.state.forget_item(href)
